"""One model over a recorded history, in memory: the worker's own pipeline, nothing written.

`Replayer` is the worker's `Processor` over a `MemoryLeadStore` and a
`Discarding` publisher (it counts what the worker would have sent, keeps
nothing). Batches go in per partition, in offset order, as the worker's
agent takes them; the identity merges, the sales feedback and the decay
sweeps are the processor's own steps. `Replayer.sweep` evaluates due leads
at the lowest partition watermark, as the worker's sweeper does
(`streams.pipeline.watermarks`), and `Replayer.finish` sweeps once more at
"now", so recycles due by now are counted.

What a run decides is collected as it is published (`Report.transitions`):
handoffs with their time and reasons, MQLs, recycles, and the outcome sales
gave each handoff (accepted, rejected, qualified to SQL, disqualified) as
this run applied the feedback events. `replay_models` feeds the same batches
to several replayers in lockstep, so for every handoff the others' rule
contributions at that moment can be read (the "why" of a gained or lost
handoff).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from leadpulse.schemas import BehaviorEvent, Stage, StageTransition
from leadpulse.schemas.feedback import FEEDBACK_EVENTS, SALES_ACCEPTED, SALES_REJECTED
from leadpulse.scoring import LeadState, ScoringModel, contributions, engagement
from leadpulse.streams.kafka.publisher import Outgoing, Publisher
from leadpulse.streams.pipeline.processor import Origin, Processor
from leadpulse.streams.pipeline.records import Record, Report, Topics
from leadpulse.streams.store import ANONYMOUS_TTL, LeadStore, MemoryLeadStore, decode_state

OUTCOMES = ("accepted", "rejected", "sql", "disqualified")
"""What sales can have done with a handoff, in the order the reports show them."""
SWEEP_EVERY = 64
"""Batches between the sweeps during a replay (recycles are dated at their crossing,
so the sweep's timing changes no transition of events in time order)."""
MAX_SWEEP_ROUNDS = 100_000
"""A sweep at one bound is repeated while a shard had more due leads than one take."""


class Discarding:
    """A `Publisher` that acknowledges everything and keeps only counts per topic."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        for message in messages:
            self.sent[message.topic] += 1


@dataclass(frozen=True, slots=True)
class HandoffMade:
    """One MQL->SAL crossing of a run."""

    handoff_id: str
    lead_id: str
    at: float
    """Epoch seconds of the crossing (event time)."""
    engagement: float
    grade: str
    reasons: dict[str, float] = field(default_factory=dict)
    """The run's own top rule contributions at the crossing (the transition's reasons)."""


@dataclass
class RunResult:
    """What one model decided over the history; `streams.replay.compare` compares two."""

    model_version: str
    events: int = 0
    """Records replayed (decodable or not)."""
    handoffs: list[HandoffMade] = field(default_factory=list)
    mqls: int = 0
    recycles: int = 0
    """MQL/SAL -> NURTURE moves by falling below recycle (decay or negative points),
    not by a sales rejection."""
    stages: dict[str, int] = field(default_factory=dict)
    """Known leads per stage at the end (anonymous visitors are not leads)."""
    lead_stages: dict[str, str] = field(default_factory=dict)
    """Known lead -> its stage at the end."""
    outcomes: dict[str, set[str]] = field(default_factory=lambda: {k: set() for k in OUTCOMES})
    """Outcome -> ids of the handoffs sales gave it (feedback as this run applied it)."""
    first_touch: dict[str, float] = field(default_factory=dict)
    """Known lead -> its earliest event time, its merged visitors' events included."""
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    """Handoff id -> rule -> contribution at the crossing: for the run's own handoffs its
    top reasons at that moment, for another run's the lead's parts under this model as
    of the end of the batch that made it (later events of that batch included)."""
    dead_lettered: int = 0


class Replayer:
    """One model's worker pipeline over an in-memory store; fed batches, then finished."""

    def __init__(
        self,
        model: ScoringModel,
        *,
        partitions: int,
        topics: Topics | None = None,
        anonymous_ttl: float | None = ANONYMOUS_TTL,
        known_ttl: float | None = None,
        max_future_skew: float = 300.0,
        sweep_limit: int = 1000,
        clock: Callable[[], float] = time.time,
        store: LeadStore | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.model = model
        self.memory = MemoryLeadStore(
            partitions=partitions, anonymous_ttl=anonymous_ttl, known_ttl=known_ttl, clock=clock
        )
        self.store: LeadStore = self.memory if store is None else store
        """Where the states go: memory (whatif), or a namespace being built (model apply)."""
        self.publisher = Discarding()
        self.processor = _Observed(
            self.store,
            self.publisher if publisher is None else publisher,
            model,
            topics=topics,
            clock=clock,
            sweep_limit=sweep_limit,
            max_future_skew=max_future_skew,
        )
        self.clock = clock
        self.sweep_limit = sweep_limit
        self.result = RunResult(model_version=model.model_version)
        self._current: dict[str, str] = {}
        """Lead -> its latest handoff id (the one feedback answers)."""

    async def feed(self, records: Sequence[Record]) -> Report:
        """Score one batch (one partition's records in offset order), as the worker's agent."""
        self.result.events += len(records)
        self.processor.feedback.clear()
        report = await self.processor.process(records)
        self._note(report)
        await self._accepted()
        return report

    async def sweep(self, at: float) -> None:
        """Recycle what decay took below recycle by `at` (the lowest partition watermark)."""
        for _ in range(MAX_SWEEP_ROUNDS):
            report = await self.processor.sweep(at)
            self._note(report)
            if report.swept < self.sweep_limit:
                return

    async def finish(self, now: float | None = None) -> RunResult:
        """The final sweep at `now` (default: the clock), then the stages and first touches."""
        await self.sweep(self.clock() if now is None else now)
        result = self.result
        stages: Counter[str] = Counter()
        touches = self.processor.first_seen
        first: dict[str, float] = {}
        for _, blob in self.memory.states.values():
            state = decode_state(blob)
            if state.anonymous:
                continue
            stages[state.stage.value] += 1
            result.lead_stages[state.lead_id] = state.stage.value
            seen = [touches[s] for s in (state.lead_id, *state.merged_from) if s in touches]
            if seen:
                first[state.lead_id] = min(seen)
        # a visitor whose events came after its link was credited through its alias
        for visitor, lead in self.memory.aliases.items():
            if visitor in touches and lead in result.lead_stages:
                first[lead] = min(first.get(lead, touches[visitor]), touches[visitor])
        result.stages = dict(sorted(stages.items()))
        result.first_touch = first
        return result

    async def state(self, lead: str) -> LeadState | None:
        snap = (await self.store.peek([lead]))[lead]
        return decode_state(snap.state) if snap.state else None

    async def parts_at(self, lead: str, at: float) -> dict[str, float]:
        """The lead's rule contributions at `at` under this model (its state now)."""
        state = await self.state(lead)
        if state is None:
            return {}
        return {name: points for name, points, _ in contributions(state, at, self.model)}

    async def engagement_at(self, lead: str, at: float) -> float:
        state = await self.state(lead)
        return 0.0 if state is None else engagement(state, at, self.model)

    def _note(self, report: Report) -> None:
        result = self.result
        result.dead_lettered += report.dead_lettered
        feedback = self.processor.feedback_types
        for t in report.transitions:
            _count(result, t, self._current, feedback.get(t.event_id or ""))

    async def _accepted(self) -> None:
        """Handoffs a `sales_accepted` of the last batch was applied to (no stage moves)."""
        for event_id, lead in self.processor.feedback:
            state = await self.state(lead)
            if state is None:
                continue
            for entry in state.feedback:
                if entry.event_id == event_id and entry.applied and not entry.stale:
                    handoff = entry.handoff_id or state.handoff_id
                    if handoff is not None:
                        self.result.outcomes["accepted"].add(handoff)


def _count(
    result: RunResult, t: StageTransition, current: dict[str, str], feedback: str | None
) -> None:
    """Count one published transition into `result`."""
    if t.to_stage is Stage.MQL:
        result.mqls += 1
    if t.is_handoff:
        current[t.lead_id] = t.transition_id
        result.handoffs.append(
            HandoffMade(
                handoff_id=t.transition_id,
                lead_id=t.lead_id,
                at=t.occurred_at.timestamp(),
                engagement=t.engagement,
                grade=t.grade,
                reasons={r.rule: r.points for r in t.reasons},
            )
        )
        return
    handoff = current.get(t.lead_id)
    if t.to_stage is Stage.NURTURE:
        if feedback == SALES_REJECTED:
            if handoff is not None:
                result.outcomes["rejected"].add(handoff)
        elif feedback is None and t.from_stage in (Stage.MQL, Stage.SAL):
            result.recycles += 1
    elif t.to_stage is Stage.SQL and handoff is not None:
        result.outcomes["sql"].add(handoff)
    elif t.to_stage is Stage.DISQUALIFIED and handoff is not None:
        result.outcomes["disqualified"].add(handoff)


class _Observed(Processor):
    """The worker's processor, noting each subject's first event time and the feedback events.

    Only reads what `_decode` decoded; scoring is the processor's own.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.first_seen: dict[str, float] = {}
        self.feedback_types: dict[str, str] = {}
        """Event id -> type of every feedback event replayed (they are few)."""
        self.feedback: list[tuple[str, str]] = []
        """(event id, lead) of the last batch's sales_accepted events."""

    def _decode(
        self, records: Sequence[Record], report: Report
    ) -> tuple[list[BehaviorEvent], Origin]:
        events, origin = super()._decode(records, report)
        first = self.first_seen
        for event in events:
            at = event.occurred_at.timestamp()
            known = first.get(event.subject)
            if known is None or at < known:
                first[event.subject] = at
            if event.type in FEEDBACK_EVENTS:
                self.feedback_types[event.event_id] = event.type
                if event.type == SALES_ACCEPTED:
                    self.feedback.append((event.event_id, event.subject))
        return events, origin


@dataclass(frozen=True)
class Watermark:
    """Where the sweeps of a replay may evaluate up to, per partition."""

    event_times: dict[int, float] = field(default_factory=dict)
    done: set[int] = field(default_factory=set)

    def bound(self, partitions: Iterable[int], now: float) -> float:
        """The lowest watermark: a finished partition is caught up (now); one not begun, 0."""
        marks = [now if p in self.done else self.event_times.get(p, 0.0) for p in partitions]
        return min([now, *marks])


async def replay_models(
    batches: AsyncIterable[tuple[Sequence[Record], frozenset[int]]]
    | Iterable[tuple[Sequence[Record], frozenset[int]]],
    replayers: Sequence[Replayer],
    *,
    partitions: Iterable[int],
    now: float,
    progress: Callable[[int], None] | None = None,
) -> list[RunResult]:
    """Feed each batch to every replayer in lockstep, sweep at the watermark, finish at `now`.

    `batches` yields (one partition's records in offset order, the partitions
    finished after it). After each batch, every handoff a replayer made in it
    gets every replayer's rule contributions at its moment (`RunResult.parts`):
    the maker's own reasons, the others' state as of the end of the batch.
    """
    wanted = list(partitions)
    mark = Watermark()
    fed = 0

    async def one(records: Sequence[Record], finished: frozenset[int]) -> None:
        nonlocal fed
        if not records:
            mark.done.update(finished)
            return
        made: list[tuple[Replayer, HandoffMade]] = []
        for replayer in replayers:
            before = len(replayer.result.handoffs)
            report = await replayer.feed(records)
            made += [(replayer, h) for h in replayer.result.handoffs[before:]]
            if replayer is replayers[0]:
                for p, at in report.event_times.items():
                    mark.event_times[p] = max(mark.event_times.get(p, at), at)
        mark.done.update(finished)
        for maker, handoff in made:
            for replayer in replayers:
                replayer.result.parts[handoff.handoff_id] = (
                    dict(handoff.reasons)
                    if replayer is maker
                    else await replayer.parts_at(handoff.lead_id, handoff.at)
                )
        fed += 1
        if fed % SWEEP_EVERY == 0:
            bound = mark.bound(wanted, now)
            for replayer in replayers:
                await replayer.sweep(bound)
        if progress is not None:
            progress(len(records))

    if isinstance(batches, AsyncIterable):
        async for records, finished in batches:
            await one(records, finished)
    else:
        for records, finished in batches:
            await one(records, finished)
    return [await replayer.finish(now) for replayer in replayers]


def per_partition(
    records: Iterable[Record], batch_size: int = 500
) -> Iterable[tuple[Sequence[Record], frozenset[int]]]:
    """Records (of any partitions, in offset order per partition) cut into per-partition
    batches of at most `batch_size`, round-robin over the partitions; every partition
    counts as finished once all of them were yielded."""
    queues: dict[int, list[Record]] = {}
    for record in records:
        queues.setdefault(record.partition, []).append(record)
    cursors = dict.fromkeys(queues, 0)
    while cursors:
        for partition in sorted(cursors):
            start = cursors[partition]
            chunk = queues[partition][start : start + batch_size]
            cursors[partition] = start + len(chunk)
            finished: frozenset[int] = frozenset()
            if cursors[partition] >= len(queues[partition]):
                del cursors[partition]
                finished = frozenset({partition})
            if chunk:
                yield chunk, finished


async def replay_records(
    records: Iterable[Record],
    model: ScoringModel,
    *,
    partitions: int,
    now: float,
    batch_size: int = 500,
    topics: Topics | None = None,
) -> RunResult:
    """The run of one model over records already read (bench/quality's entry point)."""
    kept = list(records)
    replayer = Replayer(model, partitions=partitions, topics=topics)
    (result,) = await replay_models(
        per_partition(kept, batch_size),
        [replayer],
        partitions={r.partition for r in kept},
        now=now,
    )
    return result


def handoff_ids(result: RunResult) -> list[str]:
    return [h.handoff_id for h in result.handoffs]


def by_lead(handoffs: Iterable[HandoffMade]) -> Mapping[str, list[HandoffMade]]:
    """Each lead's handoffs in time order."""
    leads: dict[str, list[HandoffMade]] = {}
    for h in handoffs:
        leads.setdefault(h.lead_id, []).append(h)
    for items in leads.values():
        items.sort(key=lambda h: (h.at, h.handoff_id))
    return leads
