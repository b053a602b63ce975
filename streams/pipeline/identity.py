"""Identity: an `identify` links an anonymous visitor to a lead and merges its history.

The anonymous id becomes an alias of the lead (later events with it are
credited to the lead), and the history it gathered before is merged into the
lead once, decay included.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence

from leadpulse.schemas import BehaviorEvent, StageTransition
from leadpulse.scoring import LeadState, ScoringModel, apply, evaluate, merge
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.pipeline.outbox import make_commit
from leadpulse.streams.pipeline.plan import Plan, Reject
from leadpulse.streams.pipeline.states import load_state
from leadpulse.streams.store import LeadStore, Snapshot, decode_state

log = logging.getLogger(__name__)

Detached = dict[str, tuple[BehaviorEvent, bytes | None]]
"""Lead -> (the link merging into it, the anonymous history detached for it, if any)."""


class Identity:
    """Resolves identity links and decides their merges; it holds only the store.

    The processor runs a round: `resolve` the links, apply the plain events,
    `detach` the histories, `decide` the merges on fresh snapshots, commit and
    publish them, then `forget` the merged histories.
    """

    def __init__(self, store: LeadStore, model: ScoringModel) -> None:
        self.store = store
        self.model = model

    async def resolve(
        self, links: Sequence[BehaviorEvent]
    ) -> tuple[list[BehaviorEvent], list[BehaviorEvent], list[BehaviorEvent]]:
        """Point links at the lead an already-merged lead id now lives in.

        identify(lead=B, ...) after B was itself merged into A links to A; a
        link whose anonymous id turns out to be that lead is a plain identify
        (traits only). Returns (links to merge now, events to apply, links for
        a later round). Only merges move aliases, so this may run before the
        round's plain events are applied.
        """
        if not links:
            return [], [], []
        snaps = await self.store.snapshot({lead_of(e): () for e in links})
        merges: list[BehaviorEvent] = []
        plain: list[BehaviorEvent] = []
        for event in links:
            target = snaps[lead_of(event)].alias
            if target is None:
                merges.append(event)
                continue
            moved = event.model_copy(update={"lead_id": target})
            (plain if moved.anonymous_id == target else merges).append(moved)
        first: dict[str, BehaviorEvent] = {}
        for event in merges:
            first.setdefault(lead_of(event), event)
        # two links that now meet in one lead go one at a time, in arrival order
        later = [e for e in merges if first[lead_of(e)] is not e]
        return list(first.values()), plain, later

    async def detach(self, links: Sequence[BehaviorEvent]) -> Detached:
        """Make each link's anonymous id an alias of its lead; returns the histories.

        `links` involve pairwise different leads and anonymous ids (see
        `rounds` and `resolve`), so they go through the store together.
        """
        detached = await self.store.detach([(anonymous_of(e), lead_of(e)) for e in links])
        return {lead_of(e): (e, blob) for e, blob in zip(links, detached, strict=True)}

    def wanted(self, pending: Detached) -> dict[str, list[str]]:
        """The snapshot request of a merge round: each link's id and its merge markers."""
        return {lead: [e.event_id, *merge_markers(e, blob)] for lead, (e, blob) in pending.items()}

    def decide(self, pending: Detached, snaps: Mapping[str, Snapshot]) -> Plan:
        """Merge each history into its lead's state, then apply the link itself.

        Every lead readable here has its outbox carried (published with the
        merge); an unreadable one is rejected and its visitor's history stays
        detached (until its TTL) for a repair.
        """
        plan = Plan()
        for lead, (event, blob) in pending.items():
            snap = snaps[lead]
            try:
                state = load_state(snap, True)
            except CorruptStateError as error:
                plan.rejects.append(Reject(event, error.reason, lead))
                continue
            plan.carried[lead] = snap.outbox
            ids: list[str] = []
            transitions: list[StageTransition] = []
            markers = merge_markers(event, blob)
            if blob is not None and not snap.seen.intersection(markers):
                # a recycle the lead was due before the merge must not be hidden by it
                state, caused = evaluate(state, event.occurred_at, self.model)
                transitions.extend(caused)
                # merge runs no lifecycle: the identify event applied next decides moves
                history = _readable(blob, anonymous_of(event))
                if history is not None:
                    state = merge(state, history, self.model)
                ids.append(markers[0])
            if event.event_id not in snap.seen:
                state, caused = apply(state, event, self.model)
                transitions.extend(caused)
                ids.append(event.event_id)
            else:
                plan.duplicates += 1
            if ids:
                commit = make_commit(
                    snap, state, ids, transitions, decided=plan.decided, model=self.model
                )
                plan.add(commit, scored=int(event.event_id in ids))
        return plan

    async def forget(self, pending: Detached, merged: Iterable[str]) -> None:
        """Drop the detached histories of the `merged` leads (their merge is committed)."""
        await self.store.forget_detached([anonymous_of(pending[lead][0]) for lead in merged])


def rounds(
    events: Iterable[BehaviorEvent],
) -> list[tuple[list[BehaviorEvent], list[BehaviorEvent]]]:
    """Split a batch into rounds of (events to apply, then identity links).

    Each subject sees its events and links in arrival order: an event goes to
    the first round after the last link that involved its subject, a link to
    the first round after every earlier event and link of its lead and its
    anonymous id. So the links of one round involve different ids and can be
    merged together, and a batch takes as many rounds as its longest chain of
    links on shared ids (usually one), not one per link.
    """
    level: dict[str, int] = {}
    result: list[tuple[list[BehaviorEvent], list[BehaviorEvent]]] = [([], [])]
    for event in events:
        if event.links_identity:
            lead, anonymous = lead_of(event), anonymous_of(event)
            at = max(level.get(lead, 0), level.get(anonymous, 0))
            level[lead] = level[anonymous] = at + 1
            if at + 1 == len(result):
                result.append(([], []))
            result[at][1].append(event)
        else:
            result[level.get(event.subject, 0)][0].append(event)
    return result


def _readable(blob: bytes, anonymous_id: str) -> LeadState | None:
    """A detached visitor's history, or None (logged) if this release cannot read it."""
    try:
        return decode_state(blob, subject=anonymous_id)
    except CorruptStateError as error:
        log.warning("history of %s cannot be read, not merged: %s", anonymous_id, error.reason)
        return None


def lead_of(event: BehaviorEvent) -> str:
    assert event.lead_id is not None
    return event.lead_id


def anonymous_of(event: BehaviorEvent) -> str:
    assert event.anonymous_id is not None
    return event.anonymous_id


def merge_markers(link: BehaviorEvent, history: bytes | None) -> tuple[str, ...]:
    """The ids a merge of this history is recorded under: the one to write first.

    The marker names the detached history itself (a digest of its blob), so a
    redo of the merge after a crash, or another identify of the same visitor
    while it is still detached, finds it recorded; while a visitor that came
    back after its alias expired brings a new history, which merges too. The
    previous release recorded ``merge:<anonymous id>``: still honoured.
    """
    anonymous = anonymous_of(link)
    if history is None:
        return (f"merge:{anonymous}",)
    digest = hashlib.blake2b(history, digest_size=12).hexdigest()
    return (f"merge:{anonymous}:{digest}", f"merge:{anonymous}")
