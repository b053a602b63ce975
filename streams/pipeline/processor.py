"""The scoring pipeline without Kafka: one batch, one visible sequence of steps.

The Faust agent hands batches of raw records to `Processor.process`; tests
hand them over directly. A batch goes:

1. decode: records become events; what does not decode is queued for the
   DLQ at once, so a bad record costs only itself.
2. identity: the batch's `identify` links are resolved to the lead an
   already-merged id lives in (`Identity.resolve`). It comes before apply
   because a link that turns out to name its own lead is a plain event and
   is applied with the others.
3. apply: each lead's events are folded onto its stored state (`scoring`,
   pure), after following the aliases of merged visitors. A state this
   release cannot read rejects its lead's events (to the DLQ), not the batch.
4. commit: each lead's new state, its applied event ids and the messages it
   decided (its outbox) are one compare-and-set write; a lead whose write lost
   a race is read and applied again.
5. publish: the outboxes go to Kafka and leave Redis once acknowledged; what
   the broker refuses for good is dead-lettered first.
6. progress: `Runtime.score` records the batch's next offsets once `process`
   returned, not `process` itself: the record is fenced by partition
   ownership and retried on its own, and a batch split to isolate a failing
   record (`Runtime`'s bisect) is recorded once, after all its parts.

The merges the links decided (`Identity.decide`) get their own commit and
publish after step 5: a visitor's own events must be committed before its
history is detached. A batch takes a round per link of its longest chain of
links on shared ids (`rounds`), usually one. The queued letters are flushed
last.

Every step that can fail half-way is safe to redo: commits are idempotent per
event id, decided messages sit in the outbox until Kafka acknowledged them,
and transition ids are deterministic, so a redo republishes the same ids. The
parts hold only what they need (the store, the publisher, the model) and
return what they decided; the processor composes them and runs the commit
and publish steps for batches, merges, sweeps and outbox replays alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime

from leadpulse.schemas import BehaviorEvent, DecodeError, StageTransition, decode_event, limits
from leadpulse.scoring import LeadState, ScoringModel, apply_many, next_recycle_at
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.kafka.publisher import Publisher
from leadpulse.streams.observability.health import Health
from leadpulse.streams.pipeline.identity import Identity, rounds
from leadpulse.streams.pipeline.letters import MAX_MESSAGE, DeadLetters
from leadpulse.streams.pipeline.outbox import Outbox, make_commit
from leadpulse.streams.pipeline.plan import MAX_COMMIT_ATTEMPTS, Plan, Reject
from leadpulse.streams.pipeline.records import Decided, Record, Report, Topics
from leadpulse.streams.pipeline.states import load_state
from leadpulse.streams.pipeline.sweeper import Sweeper
from leadpulse.streams.store import LeadStore, Snapshot

log = logging.getLogger(__name__)

Origin = dict[tuple[str, str], Record]
"""(subject, event id) of each event of the current batch -> the record it came from.

Keyed by value, not id(): a credited copy may be freed and its id() reused by
another event while the batch is still being scored."""


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
        self.outbox = Outbox(store, publisher, self.topics)
        self.identity = Identity(store, model)
        self.sweeper = Sweeper(store, model, limit=sweep_limit)

    # -- a batch --------------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> Report:
        """Score a batch; what can never be scored goes to the DLQ; returns once published."""
        report = Report()
        try:
            events, origin = self._decode(records, report)
            for round_events, round_links in rounds(events):
                todo, links = round_events, round_links
                while todo or links:  # links resolved into one lead go one per pass
                    merges, plain, links = await self.identity.resolve(links)
                    report.add(await self._score([*todo, *plain] if plain else todo, origin))
                    report.add(await self._merge(merges, origin))
                    todo = []
            report.dead_lettered += await self.letters.flush()
            if report.transitions:
                report.record_times = _record_times(report.transitions, events, origin)
        except BaseException:
            self.letters.discard()  # a retry queues them again
            raise
        return report

    def _decode(
        self, records: Sequence[Record], report: Report
    ) -> tuple[list[BehaviorEvent], Origin]:
        """decode: the batch's events and where each came from; bad records go to the DLQ.

        Notes each partition's latest event time in `report` for the watermarks.
        """
        wall = self.clock()
        events: list[BehaviorEvent] = []
        origin: Origin = {}
        for record in records:
            try:
                latest = _latest(record.timestamp, wall, self.max_future_skew)
                event = decode_event(record.value or b"", latest=latest)
            except DecodeError as error:
                self.letters.record(record, error)
                continue
            origin[(event.subject, event.event_id)] = record
            events.append(event)
            # the watermark follows the record time too: a clamped event time may
            # still lie up to the skew past the backlog it was written with
            at = event.occurred_at.timestamp()
            if record.timestamp is not None and record.timestamp >= _EARLIEST:
                at = min(at, record.timestamp)
            if at > report.event_times.get(record.partition, at - 1):
                report.event_times[record.partition] = at
        return events, origin

    async def _score(self, events: Sequence[BehaviorEvent], origin: Origin) -> Report:
        """apply -> commit -> publish for plain events, redone for leads that lost a race."""
        report = Report()
        pending, report.duplicates = _group(events)
        arrival = {id(e): i for i, e in enumerate(events)}
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if not pending:
                return report
            pending, snaps = await self._load(pending, origin, arrival, report)
            plan = self._apply(pending, snaps)
            self._reject(plan.rejects, origin)
            lost = await self._commit(plan, report)
            await self._publish(plan.outboxes(lost), plan.decided, report)
            pending = {s: evs for s, evs in pending.items() if s in lost}
        raise RuntimeError(f"gave up after {MAX_COMMIT_ATTEMPTS} lost races on {sorted(pending)}")

    async def _merge(self, links: Sequence[BehaviorEvent], origin: Origin) -> Report:
        """identity merges -> commit -> publish, redone for leads that lost a race."""
        report = Report()
        if not links:
            return report
        pending = await self.identity.detach(links)
        for _ in range(MAX_COMMIT_ATTEMPTS):
            snaps = await self.store.snapshot(self.identity.wanted(pending))
            plan = self.identity.decide(pending, snaps)
            self._reject(plan.rejects, origin)
            lost = await self._commit(plan, report)
            await self._publish(plan.outboxes(lost), plan.decided, report)
            await self.identity.forget(pending, [lead for lead in plan.carried if lead not in lost])
            pending = {lead: item for lead, item in pending.items() if lead in lost}
            if not pending:
                return report
        raise RuntimeError(f"gave up merging into {sorted(pending)}")

    async def _load(
        self,
        pending: dict[str, list[BehaviorEvent]],
        origin: Origin,
        arrival: dict[int, int],
        report: Report,
    ) -> tuple[dict[str, list[BehaviorEvent]], dict[str, Snapshot]]:
        """The snapshots of the pending leads, events of merged visitors credited to their lead."""
        snaps = await self.store.snapshot(_ids(pending))
        pending, targets = _follow_aliases(pending, snaps, origin, arrival, report)
        if targets:
            # the targets' seen sets must be asked about the redirected ids too
            asked = _ids(pending)
            snaps.update(await self.store.snapshot({s: asked[s] for s in targets}))
        return pending, snaps

    def _apply(
        self, pending: Mapping[str, Sequence[BehaviorEvent]], snaps: Mapping[str, Snapshot]
    ) -> Plan:
        """apply: each lead's fresh events folded onto its state, as commits (no I/O)."""
        plan = Plan()
        for subject, subject_events in pending.items():
            snap = snaps[subject]
            fresh = [e for e in subject_events if e.event_id not in snap.seen]
            plan.duplicates += len(subject_events) - len(fresh)
            if not fresh:
                # only re-delivered events: a crash may have come between the commit and
                # the due-index write (separate steps, other cluster slots), so restore it;
                # an unreadable state's new events were dead-lettered: nothing to restore
                if snap.state is not None:
                    with suppress(CorruptStateError):
                        state = load_state(snap, known=False)
                        plan.due[subject] = next_recycle_at(state, self.model)
                continue
            try:
                state = load_state(snap, any(e.lead_id is not None for e in fresh))
            except CorruptStateError as error:
                plan.rejects.extend(Reject(e, error.reason, subject) for e in fresh)
                continue
            before = state
            state, caused = apply_many(state, fresh, self.model)
            commit = make_commit(
                snap,
                state,
                [e.event_id for e in fresh],
                caused,
                decided=plan.decided,
                model=self.model,
                at_decision=self._states_at_decision(before, fresh, caused),
            )
            plan.add(commit, scored=len(fresh))
        # published with this round's messages: anything an earlier run left pending
        plan.carried = {s: snap.outbox for s, snap in snaps.items() if snap.outbox}
        return plan

    def _reject(self, rejects: Iterable[Reject], origin: Origin) -> None:
        """Queue a letter for each event that can never be applied (sent with the batch)."""
        for event, reason, lead in rejects:
            record = origin.get((event.subject, event.event_id))
            self.letters.event(event, reason, lead_id=lead, record=record)

    async def _commit(self, plan: Plan, report: Report) -> set[str]:
        """commit: each lead's state and outbox in one compare-and-set; returns who lost."""
        report.duplicates += plan.duplicates
        if plan.due:
            await self.store.index_due(plan.due)
        lost = await self.store.commit(plan.commits)
        report.scored += sum(n for s, n in plan.scored.items() if s not in lost)
        return lost

    async def _publish(
        self,
        outboxes: Mapping[str, Mapping[str, bytes]],
        decided: Decided | None,
        report: Report,
    ) -> None:
        """publish: send, wait for the broker's acks, then forget; a failure keeps the outbox.

        A message the broker refuses for what it is (too large) can never be
        sent: it is dead-lettered, then leaves the outbox, so it cannot stall
        the lead or the partition.
        """
        sent = await self.outbox.send(outboxes, decided)
        if sent is None:
            return
        if sent.refused:
            for subject, message_id, message, reason in sent.refused:
                self.letters.message(subject, message_id, message, reason)
            report.dead_lettered += await self.letters.flush()
        await self.outbox.clear(sent)
        report.published += sent.published
        report.transitions.extend(sent.transitions)

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
        The sweeper decides; the commit and publish are the batch's own steps.
        """
        at = self.clock() if now is None else now
        swept, plan = await self.sweeper.plan(at, self._shards(shards))
        report = Report(swept=swept)
        if not swept:
            return report
        lost = await self._commit(plan, report)
        await self._publish(plan.outboxes(lost), plan.decided, report)
        return report

    async def replay_outboxes(self, shards: Collection[int] | None = None) -> Report:
        """Publish what a previous run decided for `shards` (default all) but did not send."""
        report = Report()
        async for subject, box in self.store.pending_outboxes(self._shards(shards)):
            await self._publish({subject: box}, None, report)
        return report

    def _shards(self, shards: Collection[int] | None) -> Collection[int]:
        return range(self.store.partitions) if shards is None else shards


def _follow_aliases(
    pending: dict[str, list[BehaviorEvent]],
    snaps: Mapping[str, Snapshot],
    origin: Origin,
    arrival: dict[int, int],
    report: Report,
) -> tuple[dict[str, list[BehaviorEvent]], set[str]]:
    """Credit events of merged anonymous ids to their lead, once.

    A lead then gets its own and its aliases' events in arrival order
    (`arrival` maps an event's id() to its place in the batch); credited
    copies are added to `arrival` and `origin`.
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
                if (e.subject, e.event_id) in origin:
                    origin[(copy.subject, copy.event_id)] = origin[(e.subject, e.event_id)]
                result.setdefault(alias, []).append(copy)
            targets.add(alias)
    for target in targets:
        result[target].sort(key=lambda e: arrival[id(e)])
    return result, targets


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
