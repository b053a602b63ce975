"""The scoring pipeline without Kafka: decode, apply, persist, publish.

The Faust agent hands batches of raw records to `Processor.process`; tests
hand them over directly. Every step that can fail half-way is safe to redo:
commits are compare-and-set and idempotent per event id, decided messages
sit in a per-lead outbox until Kafka acknowledged them, and the transition
ids are deterministic, so a redo republishes the same ids.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from schemas import (
    BehaviorEvent,
    DecodeError,
    Handoff,
    StageTransition,
    dead_letter,
    decode_event,
    decode_transition,
    encode,
)
from scoring import (
    LeadState,
    ScoringModel,
    apply,
    apply_many,
    evaluate,
    merge,
    new_lead,
    next_recycle_at,
)
from streams.store import Commit, LeadStore, Snapshot

log = logging.getLogger(__name__)

TRANSITION_PREFIX = "t:"
HANDOFF_PREFIX = "h:"
"""Outbox ids are prefix + the lead's transition sequence number, so a lead's
messages are published in the order they were decided."""
MAX_COMMIT_ATTEMPTS = 50
"""Version races only happen between a partition's owner, the sweeper and
identity redirects; fifty lost races in a row means something is broken."""


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as received, enough to score it or dead-letter it."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: str
    value: bytes


class Publisher(Protocol):
    """Sends messages and returns only when the broker acknowledged all of them."""

    async def publish(self, messages: Sequence[Outgoing]) -> None: ...


@dataclass(frozen=True, slots=True)
class Topics:
    handoffs: str = "leadpulse.handoffs"
    transitions: str = "leadpulse.transitions"
    dlq: str = "leadpulse.events.dlq"


@dataclass
class Report:
    """What one call did; the CLI and metrics read it."""

    scored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    transitions: list[StageTransition] = field(default_factory=list)
    """Transitions published by this call (including ones an earlier run decided)."""
    published: int = 0

    def add(self, other: Report) -> None:
        self.scored += other.scored
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.transitions.extend(other.transitions)
        self.published += other.published


def encode_state(state: LeadState) -> bytes:
    return state.model_dump_json().encode()


def decode_state(blob: bytes) -> LeadState:
    return LeadState.model_validate_json(blob)


Decided = dict[tuple[str, str], StageTransition]
"""(subject, outbox message id) -> the transition a commit put there, this run."""


class Processor:
    """Applies batches of events to lead states held in a LeadStore."""

    def __init__(
        self,
        store: LeadStore,
        publisher: Publisher,
        model: ScoringModel,
        *,
        topics: Topics | None = None,
        clock: Callable[[], float],
        sweep_limit: int = 1000,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.model = model
        self.topics = topics or Topics()
        self.clock = clock
        self.sweep_limit = sweep_limit

    # -- events ---------------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> Report:
        """Score a batch; bad records go to the DLQ; returns after all is published."""
        report = Report()
        now = datetime.fromtimestamp(self.clock(), UTC)
        events: list[BehaviorEvent] = []
        letters: list[Outgoing] = []
        for record in records:
            try:
                events.append(decode_event(record.value or b"", now=now))
            except DecodeError as error:
                letter = dead_letter(
                    record.value,
                    error,
                    key=record.key,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    failed_at=now,
                )
                key = letter.key or ""
                letters.append(Outgoing(self.topics.dlq, key, encode(letter)))
        if letters:
            await self.publisher.publish(letters)
            report.dead_lettered = len(letters)
        for segment, links in _rounds(events):
            report.add(await self._apply(segment))
            if links:
                report.add(await self._link(links))
        return report

    async def _apply(self, events: Sequence[BehaviorEvent]) -> Report:
        report = Report()
        pending, repeated = _group(events)
        report.duplicates += repeated
        arrival = {id(e): i for i, e in enumerate(events)}
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if not pending:
                return report
            snaps = await self.store.snapshot(_ids(pending))
            pending, targets = self._follow_aliases(pending, snaps, report, arrival)
            if targets:
                # the targets' seen sets must be asked about the redirected ids too
                asked = _ids(pending)
                snaps.update(await self.store.snapshot({s: asked[s] for s in targets}))
            commits: list[Commit] = []
            decided: Decided = {}
            replayed: dict[str, LeadState] = {}
            for subject, subject_events in pending.items():
                snap = snaps[subject]
                fresh = [e for e in subject_events if e.event_id not in snap.seen]
                report.duplicates += len(subject_events) - len(fresh)
                if not fresh:
                    if snap.state is not None:
                        replayed[subject] = decode_state(snap.state)
                    continue
                state = self._load(snap, known=any(e.lead_id is not None for e in fresh))
                state, caused = apply_many(state, fresh, self.model)
                ids = [e.event_id for e in fresh]
                commits.append(self._commit(snap, state, ids, caused, decided))
            if replayed:
                # only re-delivered events: a crash may have come between the commit and
                # the due-index write (separate steps, other cluster slots), so restore it
                await self.store.index_due(
                    {s: next_recycle_at(state, self.model) for s, state in replayed.items()}
                )
            lost = await self.store.commit(commits)
            # publish what this round decided plus anything an earlier run left pending
            outboxes = {
                s: dict(snap.outbox) for s, snap in snaps.items() if snap.outbox and s not in lost
            }
            for c in commits:
                if c.subject not in lost:
                    report.scored += len(c.event_ids)
                    if c.outbox:
                        outboxes.setdefault(c.subject, {}).update(c.outbox)
            await self._publish_outboxes(outboxes, report, decided)
            pending = {s: evs for s, evs in pending.items() if s in lost}
        raise RuntimeError(f"gave up after {MAX_COMMIT_ATTEMPTS} lost races on {sorted(pending)}")

    @staticmethod
    def _follow_aliases(
        pending: dict[str, list[BehaviorEvent]],
        snaps: Mapping[str, Snapshot],
        report: Report,
        arrival: dict[int, int],
    ) -> tuple[dict[str, list[BehaviorEvent]], set[str]]:
        """Credit events of merged anonymous ids to their lead, once.

        A lead then gets its own and its aliases' events in arrival order
        (`arrival` maps an event's id() to its place in the batch; credited
        copies are added to it).
        """
        result: dict[str, list[BehaviorEvent]] = {}
        targets: set[str] = set()
        for subject, subject_events in pending.items():
            alias = snaps[subject].alias
            if alias is None:
                result.setdefault(subject, []).extend(subject_events)
                continue
            fresh = [e for e in subject_events if e.event_id not in snaps[subject].seen]
            report.duplicates += len(subject_events) - len(fresh)
            if fresh:
                for e in fresh:
                    copy = e.model_copy(update={"lead_id": alias})
                    arrival[id(copy)] = arrival[id(e)]
                    result.setdefault(alias, []).append(copy)
                targets.add(alias)
        for target in targets:
            result[target].sort(key=lambda e: arrival[id(e)])
        return result, targets

    async def _link(self, links: Sequence[BehaviorEvent]) -> Report:
        """identify(anonymous -> lead): merge the anonymous history, then apply.

        `links` involve pairwise different leads and anonymous ids (see
        `_rounds`), so they are independent and go through the store together.
        """
        report = Report()
        links, plain, later = await self._resolve_links(links)
        if plain:
            report.add(await self._apply(plain))
        report.add(await self._merge_links(links))
        if later:
            report.add(await self._link(later))
        return report

    async def _merge_links(self, links: Sequence[BehaviorEvent]) -> Report:
        """Merge each link's anonymous history into its lead (leads pairwise distinct)."""
        report = Report()
        if not links:
            return report
        detached = await asyncio.gather(
            *(self.store.detach(_anonymous(e), _lead(e)) for e in links)
        )
        pending = {_lead(e): (e, blob) for e, blob in zip(links, detached, strict=True)}
        for _ in range(MAX_COMMIT_ATTEMPTS):
            snaps = await self.store.snapshot(
                {lead: [e.event_id, _marker(e)] for lead, (e, _) in pending.items()}
            )
            commits: list[Commit] = []
            decided: Decided = {}
            outboxes: dict[str, Mapping[str, bytes]] = {}
            for lead, (event, blob) in pending.items():
                snap = snaps[lead]
                outboxes[lead] = snap.outbox
                state = self._load(snap, known=True)
                ids: list[str] = []
                transitions: list[StageTransition] = []
                marker = _marker(event)
                if blob is not None and marker not in snap.seen:
                    # a recycle the lead was due before the merge must not be hidden by it
                    state, caused = evaluate(state, event.occurred_at, self.model)
                    transitions.extend(caused)
                    # merge runs no lifecycle: the identify event applied next decides moves
                    state = merge(state, decode_state(blob), self.model)
                    ids.append(marker)
                if event.event_id not in snap.seen:
                    state, caused = apply(state, event, self.model)
                    transitions.extend(caused)
                    ids.append(event.event_id)
                else:
                    report.duplicates += 1
                if ids:
                    commits.append(self._commit(snap, state, ids, transitions, decided))
            lost = await self.store.commit(commits)
            for commit in commits:
                if commit.subject in lost:
                    del outboxes[commit.subject]
                    continue
                outboxes[commit.subject] = {**outboxes[commit.subject], **commit.outbox}
                report.scored += int(pending[commit.subject][0].event_id in commit.event_ids)
            await self._publish_outboxes(outboxes, report, decided)
            await asyncio.gather(
                *(self.store.forget_detached(_anonymous(pending[lead][0])) for lead in outboxes)
            )
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
        snaps = await self.store.snapshot({_lead(e): () for e in links})
        merges: list[BehaviorEvent] = []
        plain: list[BehaviorEvent] = []
        for event in links:
            target = snaps[_lead(event)].alias
            if target is None:
                merges.append(event)
                continue
            moved = event.model_copy(update={"lead_id": target})
            (plain if moved.anonymous_id == target else merges).append(moved)
        first: dict[str, BehaviorEvent] = {}
        for event in merges:
            first.setdefault(_lead(event), event)
        # two links that now meet in one lead go one at a time, in arrival order
        later = [e for e in merges if first[_lead(e)] is not e]
        return list(first.values()), plain, later

    # -- time -----------------------------------------------------------------------

    async def sweep(self, now: float | None = None) -> Report:
        """Recycle leads that decay alone took below the threshold by `now`."""
        report = Report()
        at = self.clock() if now is None else now
        due = await self.store.due(at, self.sweep_limit)
        if not due:
            return report
        snaps = await self.store.snapshot(dict.fromkeys(due, ()))
        commits = []
        decided: Decided = {}
        for snap in snaps.values():
            if snap.state is None:
                continue
            # the index entry is the crossing an earlier commit computed: a hint
            state, caused = evaluate(
                decode_state(snap.state), at, self.model, hint=due[snap.subject]
            )
            commits.append(self._commit(snap, state, (), caused, decided))
        lost = await self.store.commit(commits)
        # a lost race means another worker or the lead's own partition updated it
        await self._publish_outboxes(
            {c.subject: c.outbox for c in commits if c.subject not in lost}, report, decided
        )
        return report

    async def replay_outboxes(self) -> Report:
        """Publish what a previous run decided but could not confirm as sent."""
        report = Report()
        async for subject, box in self.store.pending_outboxes():
            await self._publish_outboxes({subject: box}, report)
        return report

    # -- helpers --------------------------------------------------------------------

    def _load(self, snap: Snapshot, *, known: bool) -> LeadState:
        if snap.state is None:
            return new_lead(snap.subject, anonymous=not known)
        state = decode_state(snap.state)
        if known and state.anonymous:
            state = state.model_copy(update={"anonymous": False})
        return state

    def _commit(
        self,
        snap: Snapshot,
        state: LeadState,
        event_ids: Iterable[str],
        transitions: Sequence[StageTransition],
        decided: Decided,
    ) -> Commit:
        """The commit of `state`; its transitions are also noted in `decided`."""
        outbox: dict[str, bytes] = {}
        first_seq = state.transition_seq - len(transitions)
        for n, t in enumerate(transitions, start=first_seq + 1):
            message_id = f"{TRANSITION_PREFIX}{n:010d}"
            outbox[message_id] = encode(t)
            decided[snap.subject, message_id] = t
            if t.is_handoff:
                handoff = Handoff.from_transition(t, profile=dict(state.traits))
                outbox[f"{HANDOFF_PREFIX}{n:010d}"] = encode(handoff)
        return Commit(
            subject=snap.subject,
            expected_version=snap.version,
            state=encode_state(state),
            event_ids=list(event_ids),
            outbox=outbox,
            due_at=next_recycle_at(state, self.model),
        )

    async def _publish_outboxes(
        self,
        outboxes: Mapping[str, Mapping[str, bytes]],
        report: Report,
        decided: Decided | None = None,
    ) -> None:
        """Send, wait for the broker's acks, then forget; a failure keeps the outbox.

        Transitions this run decided come from `decided`; only ones an earlier
        run left in an outbox are decoded again.
        """
        known = decided or {}
        messages: list[Outgoing] = []
        transitions: list[StageTransition] = []
        sent: dict[str, list[str]] = {}
        for subject, box in outboxes.items():
            if not box:
                continue
            for message_id, blob in sorted(box.items(), key=_publish_order):
                if message_id.startswith(HANDOFF_PREFIX):
                    messages.append(Outgoing(self.topics.handoffs, subject, blob))
                else:
                    messages.append(Outgoing(self.topics.transitions, subject, blob))
                    made = known.get((subject, message_id))
                    transitions.append(made if made is not None else decode_transition(blob))
                sent.setdefault(subject, []).append(message_id)
        if not messages:
            return
        await self.publisher.publish(messages)
        await self.store.clear_outbox(sent)
        report.published += len(messages)
        report.transitions.extend(transitions)


def _publish_order(item: tuple[str, bytes]) -> tuple[str, bool]:
    """Decision order; a transition before the handoff it caused."""
    message_id = item[0]
    return (message_id[len(HANDOFF_PREFIX) :], message_id.startswith(HANDOFF_PREFIX))


def _group(events: Iterable[BehaviorEvent]) -> tuple[dict[str, list[BehaviorEvent]], int]:
    """Events per subject in arrival order, each event id once; and how many repeats."""
    grouped: dict[str, list[BehaviorEvent]] = {}
    seen: set[tuple[str, str]] = set()
    repeated = 0
    for event in events:
        marker = (event.subject, event.event_id)
        if marker in seen:
            repeated += 1
            continue
        seen.add(marker)
        grouped.setdefault(event.subject, []).append(event)
    return grouped, repeated


def _rounds(
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
    rounds: list[tuple[list[BehaviorEvent], list[BehaviorEvent]]] = [([], [])]
    for event in events:
        if event.links_identity:
            lead, anonymous = _lead(event), _anonymous(event)
            at = max(level.get(lead, 0), level.get(anonymous, 0))
            level[lead] = level[anonymous] = at + 1
            if at + 1 == len(rounds):
                rounds.append(([], []))
            rounds[at][1].append(event)
        else:
            rounds[level.get(event.subject, 0)][0].append(event)
    return rounds


def _lead(event: BehaviorEvent) -> str:
    assert event.lead_id is not None
    return event.lead_id


def _anonymous(event: BehaviorEvent) -> str:
    assert event.anonymous_id is not None
    return event.anonymous_id


def _marker(link: BehaviorEvent) -> str:
    """The id a merge of this link's anonymous history is recorded under."""
    return f"merge:{_anonymous(link)}"


def _ids(pending: Mapping[str, Sequence[BehaviorEvent]]) -> dict[str, list[str]]:
    return {subject: [e.event_id for e in evs] for subject, evs in pending.items()}
