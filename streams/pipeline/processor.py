"""The scoring pipeline without Kafka: decode, apply, persist, publish.

The Faust agent hands batches of raw records to `Processor.process`; tests
hand them over directly. Every step that can fail half-way is safe to redo:
commits are compare-and-set and idempotent per event id, decided messages
sit in a per-lead outbox until Kafka acknowledged them (`outbox`), and the
transition ids are deterministic, so a redo republishes the same ids.
Identity links are merged by `identity`, decay-only moves found by `sweeper`;
what can never be processed is dead-lettered (`letters`) and the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime

from leadpulse.schemas import BehaviorEvent, DecodeError, StageTransition, decode_event, limits
from leadpulse.scoring import (
    LeadState,
    ScoringModel,
    apply_many,
    new_lead,
    next_recycle_at,
)
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.kafka.publisher import Publisher
from leadpulse.streams.observability.health import Health
from leadpulse.streams.pipeline.identity import MAX_COMMIT_ATTEMPTS, Identity, rounds
from leadpulse.streams.pipeline.letters import MAX_MESSAGE, DeadLetters
from leadpulse.streams.pipeline.outbox import Outbox, make_commit
from leadpulse.streams.pipeline.records import Decided, Record, Report, Topics
from leadpulse.streams.pipeline.sweeper import Sweeper
from leadpulse.streams.store import Commit, LeadStore, Snapshot, decode_state

log = logging.getLogger(__name__)


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
        health: Health | None = None,
        max_message: int = MAX_MESSAGE,
        max_future_skew: float = 300.0,
        dead_lettered: Callable[[str, int], None] | None = None,
    ) -> None:
        """`dead_lettered(kind, n)` counts dead letters by reason class (metrics)."""
        self.store = store
        self.publisher = publisher
        self.model = model
        self.topics = topics or Topics()
        self.clock = clock
        self.health = health or Health(clock=clock)
        self.max_future_skew = max_future_skew  # seconds past the record time before a clamp
        self.letters = DeadLetters(
            publisher,
            self.topics.dlq,
            clock,
            self.health,
            max_message=max_message,
            counted=dead_lettered,
        )
        self.outbox = Outbox(store, publisher, self.topics, self.letters)
        self.identity = Identity(
            store, self.outbox, model, apply_events=self._apply, load=self.load, reject=self.reject
        )
        self.sweeper = Sweeper(store, self.outbox, model, limit=sweep_limit)
        self._origin: dict[tuple[str, str], Record] = {}
        """(subject, event id) of each event of the current batch -> the record it came from.

        Keyed by value, not id(): a credited copy may be freed and its id()
        reused by another event while the batch is still being scored."""

    # -- events ---------------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> Report:
        """Score a batch; what can never be scored goes to the DLQ; returns once published."""
        report = Report()
        wall = self.clock()
        events: list[BehaviorEvent] = []
        self._origin.clear()
        try:
            for record in records:
                try:
                    latest = _latest(record.timestamp, wall, self.max_future_skew)
                    event = decode_event(record.value or b"", latest=latest)
                except DecodeError as error:
                    self.letters.record(record, error)
                    continue
                self._origin[(event.subject, event.event_id)] = record
                events.append(event)
                # the watermark follows the record time too: a clamped event time may
                # still lie up to the skew past the backlog it was written with
                at = event.occurred_at.timestamp()
                if record.timestamp is not None and record.timestamp >= _EARLIEST:
                    at = min(at, record.timestamp)
                if at > report.event_times.get(record.partition, at - 1):
                    report.event_times[record.partition] = at
            for segment, links in rounds(events):
                report.add(await self._apply(segment))
                if links:
                    report.add(await self.identity.link(links))
            report.dead_lettered += await self.letters.flush()
            if report.transitions:
                report.record_times = _record_times(report.transitions, events, self._origin)
        except BaseException:
            self.letters.discard()  # a retry queues them again
            raise
        finally:
            self._origin.clear()
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
                    # an unreadable state's new events were dead-lettered: nothing to restore
                    if snap.state is not None:
                        with suppress(CorruptStateError):
                            replayed[subject] = self.load(snap, known=False)
                    continue
                try:
                    state = self.load(snap, any(e.lead_id is not None for e in fresh))
                except CorruptStateError as error:
                    self.reject(fresh, error.reason, subject)
                    continue
                before = state
                state, caused = apply_many(state, fresh, self.model)
                ids = [e.event_id for e in fresh]
                commits.append(
                    make_commit(
                        snap,
                        state,
                        ids,
                        caused,
                        decided=decided,
                        model=self.model,
                        at_decision=self._states_at_decision(before, fresh, caused),
                    )
                )
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
            await self.outbox.publish(outboxes, report, decided)
            pending = {s: evs for s, evs in pending.items() if s in lost}
        raise RuntimeError(f"gave up after {MAX_COMMIT_ATTEMPTS} lost races on {sorted(pending)}")

    def _follow_aliases(
        self,
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
                    if (e.subject, e.event_id) in self._origin:
                        self._origin[(copy.subject, copy.event_id)] = self._origin[
                            (e.subject, e.event_id)
                        ]
                    result.setdefault(alias, []).append(copy)
                targets.add(alias)
        for target in targets:
            result[target].sort(key=lambda e: arrival[id(e)])
        return result, targets

    def _states_at_decision(
        self,
        before: LeadState,
        events: Sequence[BehaviorEvent],
        caused: Sequence[StageTransition],
    ) -> dict[str, LeadState] | None:
        """The lead as of each handoff's causing event, not of the batch's last one.

        A handoff's profile and account come from it. Otherwise a trait or an
        account a later event of the same batch brings would ride along, and
        the same handoff would carry another profile when the batch is cut
        elsewhere (a replay after a crash). Handoffs are rare: the fold is
        redone only up to their event.
        """
        states: dict[str, LeadState] = {}
        for t in caused:
            if not t.is_handoff or t.event_id is None:
                continue
            upto = next((n for n, e in enumerate(events) if e.event_id == t.event_id), None)
            if upto is None or upto == len(events) - 1:
                continue  # the last event's state is the one committed
            states[t.transition_id], _ = apply_many(before, events[: upto + 1], self.model)
        return states or None

    def reject(self, events: Iterable[BehaviorEvent], reason: str, lead: str) -> None:
        """Dead-letter a lead's events that can never be applied (sent with the batch)."""
        for event in events:
            record = self._origin.get((event.subject, event.event_id))
            self.letters.event(event, reason, lead_id=lead, record=record)

    async def dead_letter_records(
        self, records: Sequence[Record], reason: str, *, kind: str
    ) -> Report:
        """Send whole records to the DLQ with one reason (records that can never be scored)."""
        for record in records:
            self.letters.record(record, reason, kind=kind)
        return Report(dead_lettered=await self.letters.flush())

    # -- time and restarts ------------------------------------------------------------

    async def sweep(
        self, now: float | None = None, *, shards: Collection[int] | None = None
    ) -> Report:
        """Recycle leads of `shards` (default all) that decay took below recycle by `now`.

        The worker passes its partitions and the lowest watermark as `now`.
        """
        at = self.clock() if now is None else now
        return await self.sweeper.sweep(at, self._shards(shards))

    async def replay_outboxes(self, shards: Collection[int] | None = None) -> Report:
        """Publish what a previous run decided for `shards` (default all) but did not send."""
        return await self.outbox.replay(self._shards(shards))

    def _shards(self, shards: Collection[int] | None) -> Collection[int]:
        return range(self.store.partitions) if shards is None else shards

    # -- helpers --------------------------------------------------------------------

    def load(self, snap: Snapshot, known: bool) -> LeadState:
        """The snapshot's state (a new lead if none); known=True makes it a known lead."""
        if snap.state is None:
            return new_lead(snap.subject, anonymous=not known)
        try:
            state = decode_state(snap.state)
        except CorruptStateError as error:
            raise CorruptStateError(
                f"stored state of {snap.subject!r} cannot be decoded: {error.reason}",
                subject=snap.subject,
            ) from error
        except ValueError as error:
            raise CorruptStateError(
                f"stored state of {snap.subject!r} cannot be decoded: {error}",
                subject=snap.subject,
            ) from error
        if known and state.anonymous:
            state = state.model_copy(update={"anonymous": False})
        return state


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


def _record_times(
    transitions: Iterable[StageTransition],
    events: Iterable[BehaviorEvent],
    origin: Mapping[tuple[str, str], Record],
) -> dict[str, float]:
    """The Kafka record time of each transition's causing event, by transition id."""
    wanted: dict[str, list[str]] = {}
    for t in transitions:
        if t.event_id is not None:
            wanted.setdefault(t.event_id, []).append(t.transition_id)
    times: dict[str, float] = {}
    for event in events:
        caused = wanted.get(event.event_id)
        record = origin.get((event.subject, event.event_id)) if caused else None
        if record is not None and record.timestamp is not None and record.timestamp >= _EARLIEST:
            times.update(dict.fromkeys(caused or (), record.timestamp))
    return times


def _ids(pending: Mapping[str, Sequence[BehaviorEvent]]) -> dict[str, list[str]]:
    return {subject: [e.event_id for e in evs] for subject, evs in pending.items()}


_EARLIEST = datetime(limits.MIN_EVENT_YEAR, 1, 1, tzinfo=UTC).timestamp()


def _latest(timestamp: float | None, now: float, skew: float) -> datetime:
    """The latest event time a record allows: its timestamp plus the skew.

    A missing or implausible timestamp (Kafka's -1, before MIN_EVENT_YEAR, out
    of range) bounds by the wall clock instead, and so does one later than it.
    """
    # a producer whose clock runs fast must not lift the bound past the wall clock either
    stamp = min(timestamp, now) if timestamp is not None and timestamp >= _EARLIEST else now
    try:
        return datetime.fromtimestamp(stamp + skew, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.fromtimestamp(now + skew, UTC)
