"""The scoring pipeline without Kafka: decode, apply, persist, publish.

The Faust agent hands batches of raw records to `Processor.process`; tests
hand them over directly. Every step that can fail half-way is safe to redo:
commits are compare-and-set and idempotent per event id, decided messages
sit in a per-lead outbox until Kafka acknowledged them, and the transition
ids are deterministic, so a redo republishes the same ids.
"""

from __future__ import annotations

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
from scoring import LeadState, ScoringModel, apply, evaluate, merge, new_lead, next_recycle_at
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
        segment: list[BehaviorEvent] = []
        for event in events:
            if event.links_identity:
                report.add(await self._apply(segment))
                segment = []
                report.add(await self._link(event))
            else:
                segment.append(event)
        report.add(await self._apply(segment))
        return report

    async def _apply(self, events: Sequence[BehaviorEvent]) -> Report:
        report = Report()
        pending = _group(events)
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if not pending:
                return report
            snaps = await self.store.snapshot(_ids(pending))
            pending, targets = self._follow_aliases(pending, snaps, report)
            if targets:
                # the targets' seen sets must be asked about the redirected ids too
                snaps.update(await self.store.snapshot({s: _ids(pending)[s] for s in targets}))
            commits: list[Commit] = []
            for subject, subject_events in pending.items():
                snap = snaps[subject]
                fresh = [e for e in subject_events if e.event_id not in snap.seen]
                report.duplicates += len(subject_events) - len(fresh)
                if not fresh:
                    continue
                state = self._load(snap, known=any(e.lead_id is not None for e in fresh))
                transitions: list[StageTransition] = []
                for event in fresh:
                    state, caused = apply(state, event, self.model)
                    transitions.extend(caused)
                commits.append(self._commit(snap, state, [e.event_id for e in fresh], transitions))
            lost = await self.store.commit(commits)
            # publish what this round decided plus anything an earlier run left pending
            outboxes = {s: dict(snap.outbox) for s, snap in snaps.items() if s not in lost}
            for c in commits:
                if c.subject not in lost:
                    report.scored += len(c.event_ids)
                    outboxes.setdefault(c.subject, {}).update(c.outbox)
            await self._publish_outboxes(outboxes, report)
            pending = {s: evs for s, evs in pending.items() if s in lost}
        raise RuntimeError(f"gave up after {MAX_COMMIT_ATTEMPTS} lost races on {sorted(pending)}")

    @staticmethod
    def _follow_aliases(
        pending: dict[str, list[BehaviorEvent]],
        snaps: Mapping[str, Snapshot],
        report: Report,
    ) -> tuple[dict[str, list[BehaviorEvent]], set[str]]:
        """Credit events of merged anonymous ids to their lead, once."""
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
                credited = [e.model_copy(update={"lead_id": alias}) for e in fresh]
                result.setdefault(alias, []).extend(credited)
                targets.add(alias)
        return result, targets

    async def _link(self, event: BehaviorEvent) -> Report:
        """identify(anonymous -> lead): merge the anonymous history, then apply."""
        assert event.lead_id is not None
        assert event.anonymous_id is not None
        report = Report()
        lead, anonymous = event.lead_id, event.anonymous_id
        marker = f"merge:{anonymous}"
        detached = await self.store.detach(anonymous, lead)
        for _ in range(MAX_COMMIT_ATTEMPTS):
            snap = (await self.store.snapshot({lead: [event.event_id, marker]}))[lead]
            state = self._load(snap, known=True)
            ids: list[str] = []
            transitions: list[StageTransition] = []
            if detached is not None and marker not in snap.seen:
                # a recycle the lead was due before the merge must not be hidden by it
                state, caused = evaluate(state, event.occurred_at, self.model)
                transitions.extend(caused)
                # merge runs no lifecycle: the identify event applied next decides moves
                state = merge(state, decode_state(detached), self.model)
                ids.append(marker)
            if event.event_id not in snap.seen:
                state, caused = apply(state, event, self.model)
                transitions.extend(caused)
                ids.append(event.event_id)
            else:
                report.duplicates += 1
            outboxes: dict[str, Mapping[str, bytes]] = {lead: snap.outbox}
            if ids:
                commit = self._commit(snap, state, ids, transitions)
                if await self.store.commit([commit]):
                    continue
                outboxes[lead] = {**snap.outbox, **commit.outbox}
                report.scored += int(event.event_id in ids)
            await self._publish_outboxes(outboxes, report)
            await self.store.forget_detached(anonymous)
            return report
        raise RuntimeError(f"gave up merging {anonymous} into {lead}")

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
        for snap in snaps.values():
            if snap.state is None:
                continue
            state, caused = evaluate(decode_state(snap.state), at, self.model)
            commits.append(self._commit(snap, state, (), caused))
        lost = await self.store.commit(commits)
        # a lost race means another worker or the lead's own partition updated it
        await self._publish_outboxes(
            {c.subject: c.outbox for c in commits if c.subject not in lost}, report
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
    ) -> Commit:
        outbox: dict[str, bytes] = {}
        first_seq = state.transition_seq - len(transitions)
        for n, t in enumerate(transitions, start=first_seq + 1):
            outbox[f"{TRANSITION_PREFIX}{n:010d}"] = encode(t)
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
        self, outboxes: Mapping[str, Mapping[str, bytes]], report: Report
    ) -> None:
        """Send, wait for the broker's acks, then forget; a failure keeps the outbox."""
        messages: list[Outgoing] = []
        transitions: list[StageTransition] = []
        sent: dict[str, list[str]] = {}
        for subject, box in outboxes.items():
            for message_id, blob in sorted(box.items(), key=_publish_order):
                if message_id.startswith(HANDOFF_PREFIX):
                    messages.append(Outgoing(self.topics.handoffs, subject, blob))
                else:
                    messages.append(Outgoing(self.topics.transitions, subject, blob))
                    transitions.append(decode_transition(blob))
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


def _group(events: Iterable[BehaviorEvent]) -> dict[str, list[BehaviorEvent]]:
    """Events per subject in arrival order, each event id once."""
    grouped: dict[str, list[BehaviorEvent]] = {}
    seen: set[tuple[str, str]] = set()
    for event in events:
        marker = (event.subject, event.event_id)
        if marker in seen:
            continue
        seen.add(marker)
        grouped.setdefault(event.subject, []).append(event)
    return grouped


def _ids(pending: Mapping[str, Sequence[BehaviorEvent]]) -> dict[str, list[str]]:
    return {subject: [e.event_id for e in evs] for subject, evs in pending.items()}
