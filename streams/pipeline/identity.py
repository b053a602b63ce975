"""Identity: an `identify` links an anonymous visitor to a lead and merges its history.

The anonymous id becomes an alias of the lead (later events with it are
credited to the lead), and the history it gathered before is merged into the
lead once, decay included.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

from leadpulse.schemas import BehaviorEvent, StageTransition
from leadpulse.scoring import LeadState, ScoringModel, apply, evaluate, merge
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.pipeline.outbox import Outbox, make_commit
from leadpulse.streams.pipeline.records import Decided, Report
from leadpulse.streams.store import Commit, LeadStore, Snapshot, decode_state

log = logging.getLogger(__name__)

MAX_COMMIT_ATTEMPTS = 50
"""Version races only happen between a partition's owner, the sweeper and
identity redirects; fifty lost races in a row means something is broken."""

Apply = Callable[[Sequence[BehaviorEvent]], Awaitable[Report]]
Load = Callable[[Snapshot, bool], LeadState]
Reject = Callable[[Sequence[BehaviorEvent], str, str], None]
"""Dead-letter events that can never be applied: (events, reason, lead)."""


class Identity:
    """Merges anonymous histories into leads; plain events go back to `apply`."""

    def __init__(
        self,
        store: LeadStore,
        outbox: Outbox,
        model: ScoringModel,
        *,
        apply_events: Apply,
        load: Load,
        reject: Reject,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.model = model
        self.apply_events = apply_events
        self.load = load
        self.reject = reject

    async def link(self, links: Sequence[BehaviorEvent]) -> Report:
        """identify(anonymous -> lead): merge the anonymous history, then apply.

        `links` involve pairwise different leads and anonymous ids (see
        `rounds`), so they are independent and go through the store together.
        """
        report = Report()
        links, plain, later = await self._resolve_links(links)
        if plain:
            report.add(await self.apply_events(plain))
        report.add(await self._merge_links(links))
        if later:
            report.add(await self.link(later))
        return report

    async def _merge_links(self, links: Sequence[BehaviorEvent]) -> Report:
        """Merge each link's anonymous history into its lead (leads pairwise distinct)."""
        report = Report()
        if not links:
            return report
        detached = await self.store.detach([(anonymous_of(e), lead_of(e)) for e in links])
        pending = {lead_of(e): (e, blob) for e, blob in zip(links, detached, strict=True)}
        for _ in range(MAX_COMMIT_ATTEMPTS):
            snaps = await self.store.snapshot(
                {lead: [e.event_id, *merge_markers(e, blob)] for lead, (e, blob) in pending.items()}
            )
            commits: list[Commit] = []
            decided: Decided = {}
            outboxes: dict[str, dict[str, bytes]] = {}
            for lead, (event, blob) in pending.items():
                snap = snaps[lead]
                try:
                    state = self.load(snap, True)
                except CorruptStateError as error:
                    # the visitor's history stays detached (until its TTL) for a repair
                    self.reject([event], error.reason, lead)
                    continue
                outboxes[lead] = dict(snap.outbox)
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
                    report.duplicates += 1
                if ids:
                    commits.append(
                        make_commit(
                            snap, state, ids, transitions, decided=decided, model=self.model
                        )
                    )
            lost = await self.store.commit(commits)
            for commit in commits:
                if commit.subject in lost:
                    del outboxes[commit.subject]
                    continue
                outboxes[commit.subject].update(commit.outbox)
                report.scored += int(pending[commit.subject][0].event_id in commit.event_ids)
            await self.outbox.publish(outboxes, report, decided)
            await self.store.forget_detached([anonymous_of(pending[lead][0]) for lead in outboxes])
            pending = {lead: item for lead, item in pending.items() if lead in lost}
            if not pending:
                return report
        raise RuntimeError(f"gave up merging into {sorted(pending)}")

    async def _resolve_links(
        self, links: Sequence[BehaviorEvent]
    ) -> tuple[list[BehaviorEvent], list[BehaviorEvent], list[BehaviorEvent]]:
        """Point links at the lead an already-merged lead id now lives in.

        identify(lead=B, ...) after B was itself merged into A links to A; a
        link whose anonymous id turns out to be that lead is a plain identify
        (traits only). Returns (links to merge now, events to apply, links for
        a later round).
        """
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
