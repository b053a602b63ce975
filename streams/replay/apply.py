"""`leadpulse model apply`: rescore the history into a new namespace, then switch the workers.

Blue/green (docs/architecture.md#model-apply). The live workers go on
scoring in the active namespace under the current model while this replays
the retained events topic under the new model into the new model's own
namespace (`keys.namespace_of`), with the worker's own pipeline
(`streams.replay.run.Replayer` over a `RedisLeadStore`), never further than
the offsets the live workers recorded. Historical transitions are not
published (`--emit-handoffs` publishes the replay's handoffs). Once the
replay is within `ApplyOptions.catch_up` events of the live progress:

1. the old namespace is fenced ``draining``: a worker's next batch or sweep
   check refuses, and the worker exits for its supervisor to restart it;
   batches in flight still record their progress;
2. once every partition's progress reached the end it had when the fence was
   set (or `ApplyOptions.drain_grace` passed), the fence becomes ``fenced``:
   no progress is recorded any more, so the old namespace's progress is the
   switch point;
3. the new namespace replays up to exactly that point and records it as its
   progress; every lead whose stage differs between the two namespaces gets
   one `StageTransition` with ``rescore: true`` (`scoring.rescore_move`);
4. the deployment's active namespace is switched (compare-and-set); the
   restarted workers, waiting at start, resume in the new namespace from the
   switch point under the new model.

An event at or before the switch point was scored live under the old model
and replayed under the new one; an event after it is scored (and published)
only under the new one. Every step is safe to redo: an apply killed at any
point is finished by running it again, which resumes from the new
namespace's recorded progress. The old namespace is kept, fenced, until
`leadpulse model gc`; applying its model again switches back to it, replaying
only what happened since.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from leadpulse.schemas import StageTransition, encode
from leadpulse.scoring import ScoringModel, rescore_move
from leadpulse.streams.kafka.publisher import Outgoing, Publisher
from leadpulse.streams.pipeline.records import Topics
from leadpulse.streams.replay.history import (
    ReplayError,
    history_consumer,
    read_ranges,
    topic_partitions,
)
from leadpulse.streams.replay.run import SWEEP_EVERY, Discarding, Replayer, Watermark
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import decode_state
from leadpulse.streams.store.models import (
    APPLY,
    DRAINING,
    FENCED,
    Fence,
    ModelChange,
    ModelRecord,
)
from leadpulse.streams.store.namespaces import (
    Active,
    ApplyStatus,
    Deployment,
    NamespaceInfo,
    Phase,
)
from leadpulse.streams.store.redis import RedisLeadStore
from leadpulse.streams.store.redis.keys import namespace_of

STATUS_EVERY = 1.0
"""Seconds between two progress records (`leadpulse model status`, the live page)."""
PUBLISH_CHUNK = 500
DRAIN_QUIET = 3.0
"""Seconds without a progress record, once fenced, after which no batch counts as in flight
(a worker checks the fence before each batch and its sweeper every tick, ~1 s)."""


class ApplyError(ReplayError):
    """An apply that cannot go on, with what to do about it."""


@dataclass(frozen=True)
class ApplyOptions:
    emit_handoffs: bool = False
    """Publish the handoffs the replay decides (historical crossings) as handoffs."""
    partial_history: bool = False
    """Build from what the topic retains although retention removed older events."""
    catch_up: int = 200
    """Events of lag to the live workers at which the switch begins."""
    drain_grace: float = 15.0
    """Seconds at most that batches in flight get to record their progress once the fence
    is set; the switch goes on sooner once the progress stops moving (`DRAIN_QUIET`)."""
    batch_size: int = 500
    max_rounds: int = 1000
    """Catch-up rounds before giving up on a replay that never closes in on the live workers."""


@dataclass
class Applied:
    """What an apply did."""

    from_namespace: str
    namespace: str
    from_version: str
    to_version: str
    already: bool = False
    """The model was already the active one: nothing was done."""
    reused: bool = False
    """The namespace existed (a rollback, or an apply resumed): only what was missing replayed."""
    replayed: int = 0
    rescored: int = 0
    switch: dict[int, int] = field(default_factory=dict)
    seconds: float = 0.0


class OnlyHandoffs:
    """The replay's `Publisher` with ``--emit-handoffs``: handoffs to Kafka, the rest nowhere."""

    def __init__(self, real: Publisher, topics: Topics) -> None:
        self.real = real
        self.topic = topics.handoffs
        self.discarded = Discarding()

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        await self.real.publish([m for m in messages if m.topic == self.topic])
        await self.discarded.publish([m for m in messages if m.topic != self.topic])


class Apply:
    """One run of `leadpulse model apply` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        model: ScoringModel,
        *,
        text: str,
        origin: str,
        options: ApplyOptions = ApplyOptions(),
        say: Callable[[str], None] = lambda line: None,
        progress: Callable[[int, int], None] | None = None,
        publisher: Publisher | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.model = model
        self.text = text
        self.origin = origin
        self.options = options
        self.say = say
        self.progress = progress
        self.publisher = publisher
        self.clock = clock
        self.topic = settings.events_topic
        self.topics = Topics(
            handoffs=settings.handoffs_topic,
            transitions=settings.transitions_topic,
            dlq=settings.dlq_topic,
        )
        self.deployment = Deployment.from_settings(settings)
        self.status: ApplyStatus | None = None
        self._status_at = 0.0
        self.position: dict[int, int] = {}
        """Per partition, the next offset the new namespace has to read."""
        self.mark = Watermark()
        self.fed = 0
        """Batches fed by this run."""
        self.fed_events = 0
        """Events fed by this run."""
        self._producer: Any = None

    async def run(self) -> Applied:
        started = time.monotonic()
        try:
            applied = await self._run()
        except Exception as error:
            # a failed apply says so; one interrupted (Ctrl-C, SIGTERM) goes stale and is
            # resumed by the next run
            await self._report("failed", message=str(error) or type(error).__name__)
            raise
        finally:
            await self.deployment.close()
        applied.seconds = time.monotonic() - started
        return applied

    async def _run(self) -> Applied:
        deployment = self.deployment
        old_ns = await deployment.active_namespace()
        old = RedisLeadStore.from_settings(self.settings, old_ns)
        try:
            record = await old.recorded_model()
            if record is None:
                raise ApplyError(
                    f"namespace {old_ns} records no model: no worker has started in it yet. "
                    "Start the worker (it records its model), then apply another one."
                )
            mine = self.model.model_version
            if record.version == mine:
                return Applied(old_ns, old_ns, mine, mine, already=True)
            running = await deployment.status()
            if running is not None and running.running and running.pid != os.getpid():
                raise ApplyError(
                    f"another model apply (to {running.to_version}, pid {running.pid}) is "
                    f"{running.phase}; `leadpulse model status` shows it"
                )
            target = await deployment.namespace_for(mine) or namespace_of(
                self.settings.redis_prefix, mine
            )
            fence = await old.fence(self.topic)
            if fence is not None and fence.to != target:
                raise ApplyError(
                    f"namespace {old_ns} is fenced for a switch to {fence.to} that did not "
                    "finish: apply that model again to finish it, or `leadpulse model abort`"
                )
            new = RedisLeadStore.from_settings(self.settings, target)
            try:
                return await self._build(old, new, record, fence)
            finally:
                await new.close()
        finally:
            await old.close()

    async def _build(
        self, old: RedisLeadStore, new: RedisLeadStore, old_record: ModelRecord, fence: Fence | None
    ) -> Applied:
        old_ns, target = old.keys.prefix, new.keys.prefix
        mine = self.model.model_version
        now = self.clock()
        await new.set_fence(self.topic, None)  # a namespace switched away from earlier
        recorded = await new.progress(self.topic)
        applied = Applied(old_ns, target, old_record.version, mine, reused=bool(recorded))
        await self._record_model(new, old_record.version, now)
        known = (await self.deployment.namespaces()).get(target)
        await self.deployment.note(
            NamespaceInfo(
                namespace=target,
                version=mine,
                created_at=now if known is None else known.created_at,
                state="building",
            )
        )
        self.status = ApplyStatus(
            from_version=old_record.version,
            to_version=mine,
            from_namespace=old_ns,
            namespace=target,
            phase="replaying",
            started_at=now,
            updated_at=now,
            pid=os.getpid(),
        )
        await self._report("replaying")
        consumer = history_consumer(self.settings)
        try:
            partitions = topic_partitions(consumer, self.settings)
            begins = self._begins(consumer, partitions)
            self._start_at(recorded, begins, partitions)
            publisher = self.publisher or await self._kafka_publisher()
            sink: Publisher = (
                OnlyHandoffs(publisher, self.topics) if self.options.emit_handoffs else Discarding()
            )
            replayer = Replayer(
                self.model,
                partitions=self.settings.partitions,
                topics=self.topics,
                anonymous_ttl=self.settings.anonymous_ttl,
                known_ttl=self.settings.known_ttl,
                max_future_skew=self.settings.max_future_skew,
                store=new,
                publisher=sink,
                clock=self.clock,
            )
            if fence is None:
                await self._catch_up(consumer, old, new, replayer, partitions)
                fence = Fence(DRAINING, target, self.clock())
                await old.set_fence(self.topic, fence)
            if fence.phase == DRAINING:
                await self._report("draining")
                self.say(f"fenced namespace {old_ns}: the workers stop and wait for the switch")
                await self._drain(consumer, old, partitions, fence)
                await old.set_fence(self.topic, Fence(FENCED, target, self.clock()))
            switch = await old.progress(self.topic)
            await self._report("switching")
            await self._replay_to(consumer, new, replayer, switch, "switching")
            await replayer.sweep(self.clock())
            at_switch = {p: switch[p] for p in partitions if p in switch}
            if at_switch:
                await new.record_progress(self.topic, at_switch)
            applied.replayed = self.fed_events
            applied.rescored = await self._rescore(old, new, old_record.version, publisher)
            applied.switch = at_switch
            await self._switch(old_ns, target, old_record.version, at_switch)
        finally:
            consumer.close()
            if self._producer is not None:
                await self._producer.stop()
        await self._report("done", rescored=applied.rescored, lag=0)
        return applied

    async def _record_model(self, new: RedisLeadStore, from_version: str, now: float) -> None:
        """The new namespace's record: this model, applied over `from_version`."""
        current = await new.recorded_model()
        change = ModelChange(
            from_version=from_version, to_version=self.model.model_version, at=now, mode=APPLY
        )
        history = () if current is None else current.history
        if history and history[-1].mode == APPLY and history[-1].from_version == from_version:
            change = history[-1]
            history = history[:-1]
        wanted = ModelRecord(
            version=self.model.model_version,
            source=self.text,
            origin=self.origin,
            recorded_at=now,
            history=(*history, change)[-50:],
        )
        stored = await new.record_model(
            wanted, replacing=None if current is None else current.version
        )
        if stored is None or stored.version != self.model.model_version:
            raise ApplyError(f"namespace {new.keys.prefix}'s model record changed during the apply")

    def _begins(self, consumer: Any, partitions: Sequence[int]) -> dict[int, int]:
        from kafka import TopicPartition

        tps = [TopicPartition(self.topic, p) for p in partitions]
        return {tp.partition: o for tp, o in consumer.beginning_offsets(tps).items()}

    def _start_at(
        self, recorded: dict[int, int], begins: dict[int, int], partitions: Sequence[int]
    ) -> None:
        """Where each partition's replay starts; refuses a history retention has cut."""
        cut = {p: begins[p] for p in partitions if recorded.get(p, 0) < begins[p]}
        if cut and not self.options.partial_history:
            detail = ", ".join(
                f"partition {p} starts at offset {o}" for p, o in sorted(cut.items())
            )
            raise ApplyError(
                f"the events topic {self.topic} no longer holds the whole history ({detail}): "
                "the new model's states would miss the events retention removed. "
                "Pass --partial-history to build them from what is retained."
            )
        self.position = {p: max(recorded.get(p, 0), begins[p]) for p in partitions}

    async def _kafka_publisher(self) -> Publisher:
        from aiokafka import AIOKafkaProducer

        from leadpulse.streams.kafka.publisher import AiokafkaPublisher
        from leadpulse.streams.kafka.security import aiokafka_options

        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id="leadpulse-apply",
            acks="all",
            enable_idempotence=False,  # Tansu refuses InitProducerId
            **aiokafka_options(self.settings),
        )
        await producer.start()
        self._producer = producer
        return AiokafkaPublisher(producer)

    async def _catch_up(
        self,
        consumer: Any,
        old: RedisLeadStore,
        new: RedisLeadStore,
        replayer: Replayer,
        partitions: Sequence[int],
    ) -> None:
        """Replay up to the live progress, again and again, until within `catch_up` of it."""
        for _ in range(self.options.max_rounds):
            live = await old.progress(self.topic)
            await self._replay_to(consumer, new, replayer, live)
            lag = self._lag(await old.progress(self.topic))
            await self._report("replaying", lag=lag)
            if lag <= self.options.catch_up:
                return
        raise ApplyError(
            f"the replay did not catch up with the live workers in {self.options.max_rounds} "
            f"rounds ({self._lag(await old.progress(self.topic))} events behind)"
        )

    def _lag(self, live: dict[int, int]) -> int:
        return sum(max(0, o - self.position.get(p, o)) for p, o in live.items())

    async def _replay_to(
        self,
        consumer: Any,
        new: RedisLeadStore,
        replayer: Replayer,
        stops: dict[int, int],
        phase: Phase = "replaying",
    ) -> None:
        """Replay every partition from its position up to `stops` (the live progress)."""
        ranges = {
            p: (start, stops[p]) for p, start in self.position.items() if stops.get(p, 0) > start
        }
        target = sum(stop - start for start, stop in ranges.values())
        done = 0
        wanted = list(self.position)
        for p in self.position:
            if p not in ranges:
                self.mark.done.add(p)
        for records, p in read_ranges(consumer, self.topic, ranges, self.options.batch_size):
            report = await replayer.feed(records)
            for q, at in report.event_times.items():
                self.mark.event_times[q] = max(self.mark.event_times.get(q, at), at)
            nxt = records[-1].offset + 1
            await new.record_progress(self.topic, {p: nxt})
            done += nxt - self.position[p]
            self.position[p] = nxt
            self.fed_events += len(records)
            self.fed += 1
            if self.fed % SWEEP_EVERY == 0:
                await replayer.sweep(self.mark.bound(wanted, self.clock()))
            if self.progress is not None:
                self.progress(done, target)
            await self._report(phase, done_events=done, target=target)
        for p in ranges:
            self.mark.done.add(p)
            self.position[p] = max(self.position[p], ranges[p][1])

    async def _drain(
        self, consumer: Any, old: RedisLeadStore, partitions: Sequence[int], fence: Fence
    ) -> None:
        """Wait for the batches in flight: every partition recorded up to its end, or the grace."""
        from kafka import TopicPartition

        tps = [TopicPartition(self.topic, p) for p in partitions]
        ends = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        deadline = fence.at + self.options.drain_grace
        quiet = min(DRAIN_QUIET, self.options.drain_grace)
        last, changed = await old.progress(self.topic), self.clock()
        while self.clock() < deadline:
            if all(last.get(p, 0) >= ends[p] for p in partitions if ends[p] > 0):
                return
            if self.clock() - changed >= quiet:
                return  # the workers stopped: nothing in flight any more
            await self._report("draining", lag=self._lag(last))
            await asyncio.sleep(0.2)
            live = await old.progress(self.topic)
            if live != last:
                last, changed = live, self.clock()

    async def _rescore(
        self, old: RedisLeadStore, new: RedisLeadStore, from_version: str, publisher: Publisher
    ) -> int:
        """Publish a rescore transition for every lead whose stage the new model changes."""
        at = self.clock()
        moves: list[StageTransition] = []
        count = 0
        async for subjects in new.subjects():
            mine = await new.peek(subjects)
            theirs = await old.peek(subjects)
            for subject in subjects:
                snap = mine[subject]
                if not snap.state:
                    continue
                state = decode_state(snap.state)
                before = theirs[subject].state
                move = rescore_move(
                    decode_state(before) if before else None,
                    state,
                    self.model,
                    at=at,
                    from_version=from_version,
                )
                if move is not None:
                    moves.append(move)
            if len(moves) >= PUBLISH_CHUNK:
                count += await self._publish(publisher, moves)
                moves = []
        return count + await self._publish(publisher, moves)

    async def _publish(self, publisher: Publisher, moves: list[StageTransition]) -> int:
        if moves:
            await publisher.publish(
                [Outgoing(self.topics.transitions, t.lead_id, encode(t)) for t in moves]
            )
        return len(moves)

    async def _switch(
        self, old_ns: str, target: str, from_version: str, switch: dict[int, int]
    ) -> None:
        now = self.clock()
        active = Active(
            namespace=target,
            version=self.model.model_version,
            since=now,
            previous=old_ns,
            previous_version=from_version,
            switch=switch,
        )
        if not await self.deployment.switch(active, replacing=old_ns):
            raise ApplyError(
                f"the active namespace is no longer {old_ns}: another apply switched it"
            )
        infos = await self.deployment.namespaces()
        kept = infos.get(old_ns)
        await self.deployment.note(
            NamespaceInfo(
                namespace=old_ns,
                version=from_version,
                created_at=now if kept is None else kept.created_at,
                state="retired",
                retired_at=now,
            )
        )
        built = infos.get(target)
        await self.deployment.note(
            NamespaceInfo(
                namespace=target,
                version=self.model.model_version,
                created_at=now if built is None else built.created_at,
                state="active",
            )
        )

    async def _report(self, phase: Phase, **changes: Any) -> None:
        """Record the apply's progress: at phase changes, else at most every `STATUS_EVERY`."""
        if self.status is None:
            return
        now = self.clock()
        quiet = not changes.keys() - {"done_events", "target", "lag"}
        if phase == self.status.phase and quiet and now - self._status_at < STATUS_EVERY:
            self.status = self.status.model_copy(update=changes)
            return
        update = {"phase": phase, "updated_at": now, "replayed": self.fed_events, **changes}
        self.status = self.status.model_copy(update=update)
        self._status_at = now
        with contextlib.suppress(Exception):  # progress is for people: never fail the apply on it
            await self.deployment.write_status(self.status)
