"""What the Faust agent, timer and rebalance hook of one worker do, without Faust.

The app registers thin closures that call these methods: score a batch and
record its progress, sweep the worker's own partitions at the watermark
bound, and resume newly assigned partitions where the store recorded them
(replaying their pending outboxes).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any

from leadpulse.streams.errors import FatalError, PermanentError
from leadpulse.streams.kafka.transport import committed_offset, set_committed_offset
from leadpulse.streams.observability.health import Health
from leadpulse.streams.observability.metrics import WorkerMetrics
from leadpulse.streams.observability.stats import Totals
from leadpulse.streams.pipeline.hotindex import repair_hot
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.progress import Progress
from leadpulse.streams.pipeline.records import Record, Report
from leadpulse.streams.pipeline.retry import RetryPolicy, retrying
from leadpulse.streams.pipeline.watermarks import Highwater, Watermarks, sweep_bound
from leadpulse.streams.store import LeadStore

log = logging.getLogger("leadpulse")

RESUME_ATTEMPTS = 3
"""Reads of the store's progress during a rebalance before falling back to Kafka's."""
REPLAY_EVERY = 60
"""Sweep ticks between replays of the owned partitions' pending outboxes (~1 min)."""
REPAIR_HOT_EVERY = 30
"""Sweep ticks between repairs of the hot-leads index entries of owned leads (~30 s)."""
OBSERVE_TIMEOUT = 2.0
"""Seconds a metrics scrape waits for the store's count of pending outboxes."""


class Runtime:
    """One worker's scoring loop, sweeps and partition hand-overs."""

    def __init__(
        self,
        processor: Processor,
        store: LeadStore,
        topic: str,
        *,
        totals: Totals,
        health: Health,
        stopped: Callable[[], bool],
        highwater: Highwater,
        clock: Callable[[], float],
        on_fatal: Callable[[FatalError], None],
        owns: Callable[[int], bool] | None = None,
        metrics: WorkerMetrics | None = None,
        policy: RetryPolicy = RetryPolicy(),  # noqa: B008 -- frozen, shared safely
        watermark_stale_after: float = 300.0,
    ) -> None:
        self.processor = processor
        self.store = store
        self.topic = topic
        self.totals = totals
        self.clock = clock
        self.on_fatal = on_fatal
        self.metrics = metrics
        self.retry = functools.partial(
            retrying,
            stopped=stopped,
            health=health,
            policy=policy,
            retried=metrics.retried if metrics is not None else None,
            unknown=metrics.unknown_error if metrics is not None else None,
        )
        self.health = health
        self.watermark_stale_after = watermark_stale_after
        self.watermarks = Watermarks(highwater=highwater, clock=clock)
        self.progress = Progress(store, topic)
        self.owns = owns or (lambda partition: True)
        self.sweep_bound: float | None = None
        """The time the last sweep evaluated due leads at (the lowest watermark)."""
        self.assigned_at: float | None = None
        """Wall-clock time of the latest partition assignment."""
        self._background: set[asyncio.Task[None]] = set()
        self._replaying: tuple[asyncio.Task[None], set[int]] | None = None
        """The one outbox replay running, and its partitions: never more than one."""
        self._repairing: asyncio.Task[None] | None = None
        self._ticks = 0

    async def score(self, records: Sequence[Record]) -> None:
        """Score one batch, then record how far its partitions were processed."""
        started = time.perf_counter()
        totals = self.totals
        if totals.first_batch_at is None:
            totals.first_batch_at = time.time()
        # a batch that outlived a rebalance says nothing about partitions now owned elsewhere
        offsets = {p: o for p, o in next_offsets(records).items() if self.owns(p)}

        try:
            report = await self._scored(records, offsets, top=True)
            await self.retry("recording progress", functools.partial(self.progress.record, offsets))
        except FatalError as error:
            self.on_fatal(error)
            raise
        self.watermarks.processed(
            offsets, {p: t for p, t in report.event_times.items() if p in offsets}
        )
        totals.add(report)
        totals.last_batch_at = time.time()
        if self.metrics is not None:
            self.metrics.scored_batch(
                len(records), report, time.perf_counter() - started, self.clock()
            )
        for t in report.transitions:
            log.info(
                "%s %s -> %s (engagement %.1f, grade %s)",
                t.lead_id,
                t.from_stage,
                t.to_stage,
                t.engagement,
                t.grade,
            )

    async def _scored(
        self, records: Sequence[Record], offsets: Mapping[int, int], *, top: bool = False
    ) -> Report:
        """Score `records`; what fails permanently is narrowed down to the records causing it.

        A batch is cut by timing, so one record that can never be scored must
        not cost the others: a failing part is halved until the failure is
        pinned to single records, which are dead-lettered with the error; the
        halves that succeed are scored (event ids make the redo of what a
        failed attempt had committed count once). An unknown error is retried
        a few times for the whole batch and for a single record; in between,
        the first one sends the search further down.
        """

        async def attempt() -> Report:
            await self.progress.check(offsets)
            return await self.processor.process(records)

        single = len(records) == 1
        try:
            return await self.retry(
                "scoring batch", attempt, unknown_retries=None if top or single else 0
            )
        except PermanentError as error:
            if not single:
                half = len(records) // 2
                report = await self._scored(records[:half], offsets)
                report.add(await self._scored(records[half:], offsets))
                return report
            (record,) = records
            log.error(  # noqa: TRY400 -- an unknown error's traceback was logged by the retry
                "dead-lettering record %s/%d@%d: %s",
                record.topic,
                record.partition,
                record.offset,
                error.reason,
            )
            return await self.retry(
                "dead-lettering a record",
                functools.partial(
                    self.processor.dead_letter_records, records, error.reason, kind=error.kind
                ),
            )

    async def sweep(self) -> None:
        started = time.perf_counter()
        try:
            report = await self.retry("decay sweep", self._sweep_once)
        except FatalError as error:
            self.on_fatal(error)
            raise
        self.totals.add(report)
        if self.metrics is not None:
            self.metrics.swept_once(report, time.perf_counter() - started)
        for t in report.transitions:
            log.info("%s %s -> %s by decay", t.lead_id, t.from_stage, t.to_stage)
        self._ticks += 1
        if self._ticks % REPLAY_EVERY == 0 and self.watermarks.positions:
            # what a failed publish left in an outbox of a lead no event touches again
            self._start_replay(set(self.watermarks.positions))
        repairing = self._repairing is not None and not self._repairing.done()
        if self._ticks % REPAIR_HOT_EVERY == 0 and self.watermarks.positions and not repairing:
            self._repairing = self._spawn(self._repair_hot(set(self.watermarks.positions)))

    async def _sweep_once(self) -> Report:
        mine = set(self.watermarks.positions)
        if not mine:
            return Report()
        # an idle partition's lost updates must not be swept on: check it as a batch would
        await self.progress.check(mine)
        now = self.clock()
        local = self.watermarks.shared(now)
        await self.store.publish_watermarks(self.topic, local)
        bound = sweep_bound(
            now,
            local,
            await self.store.watermarks(self.topic),
            stale_after=self.watermark_stale_after,
            partitions=self.store.partitions,
        )
        if bound.stale != self.health.stale_watermarks:
            if bound.stale:
                log.warning(
                    "watermarks of partitions %s not live for %.0f s (stalled, ownerless or "
                    "gone): left out of the sweep bound",
                    ", ".join(map(str, bound.stale)),
                    self.watermark_stale_after,
                )
            else:
                log.info("every partition's watermark is live again")
        self.health.stale_watermarks = bound.stale
        if self.metrics is not None:
            self.metrics.stale_watermarks.set(len(bound.stale))
        self.sweep_bound = bound.at
        return await self.processor.sweep(bound.at, shards=mine)

    def lagging(self) -> bool:
        """Whether an assigned partition has records left to process (end offset known)."""
        marks = self.watermarks
        return any(
            marks.highwater(partition) is not None and not marks.caught_up(partition)
            for partition in marks.positions
        )

    async def observe(self) -> None:
        """Set the gauges before a scrape: lag, and the pending outboxes of owned partitions.

        The outbox gauge keeps its last value when the store does not answer
        within `OBSERVE_TIMEOUT` (a scrape must not hang on Redis).
        """
        if self.metrics is None:
            return
        marks = self.watermarks
        now = self.clock()
        self.metrics.lag(marks.positions, marks.highwater, marks.local(now), now)
        try:
            shards = set(marks.positions)
            pending = await asyncio.wait_for(self.store.pending_count(shards), OBSERVE_TIMEOUT)
        except Exception as error:  # noqa: BLE001 -- counted as a store error; gauge kept
            log.debug("pending outboxes not counted: %s", error)
        else:
            self.metrics.outbox_pending.set(pending)

    async def after_seek(self, consumer: Any) -> None:
        """Resume each assigned partition where the store says it was processed to.

        Runs inside a rebalance, with the stream paused, after Faust sought
        every partition to Kafka's committed offset. Faust's own idea of the
        committed offset moves with the seek: it commits only offsets
        contiguous with it, so a partition resumed ahead of Kafka's committed
        offset would otherwise never be committed to Kafka again.
        """
        assigned = {tp.partition: tp for tp in consumer.assignment() if tp.topic == self.topic}
        self.progress.revoked(set(self.progress.recorded) - set(assigned))
        points = await self._resume_points(set(assigned))
        starts: dict[int, int | None] = {}
        for partition, tp in assigned.items():
            committed = committed_offset(consumer, tp)
            target = points.get(partition)
            if target is not None and target != committed:
                log.info(
                    "partition %d resumes at offset %d as recorded in the store (Kafka: %s)",
                    partition,
                    target,
                    committed,
                )
                await consumer.seek(tp, target)
                set_committed_offset(consumer, tp, target)
                committed = target
            starts[partition] = committed
        new = set(assigned) - set(self.watermarks.positions)
        self.watermarks.assigned(starts)
        self.assigned_at = time.time()
        self._replay_after_rebalance(set(assigned), new)

    async def _resume_points(self, partitions: set[int]) -> dict[int, int]:
        """The store's record, tried a few times: a rebalance must not wait long on Redis."""
        for attempt in range(RESUME_ATTEMPTS):
            try:
                return await self.progress.resume_points(partitions)
            except Exception as error:  # noqa: BLE001 -- any failure: retry, then fall back
                if attempt == RESUME_ATTEMPTS - 1:
                    log.warning(
                        "cannot read recorded progress (%s); resuming from Kafka's committed "
                        "offsets (re-delivered events count once)",
                        error,
                    )
                    break
                await asyncio.sleep(0.2 * (attempt + 1))
        return {}

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def _start_replay(self, partitions: set[int]) -> None:
        """Replay `partitions`' pending outboxes, unless a replay is still running.

        One at a time: while Redis is away a replay retries, and the next
        tick's must not pile up beside it.
        """
        if self._replaying is not None and not self._replaying[0].done():
            return
        self._replaying = (self._spawn(self._replay(partitions)), partitions)

    def _replay_after_rebalance(self, assigned: set[int], new: set[int]) -> None:
        """Stop a replay that covers revoked partitions; replay the owned and the new ones.

        Replays republish with the same ids, so starting one over is safe.
        """
        todo = set(new)
        if self._replaying is not None and not self._replaying[0].done():
            task, partitions = self._replaying
            if partitions <= assigned and not todo - partitions:
                return  # it covers what must be replayed, and nothing revoked
            task.cancel()
            todo |= partitions & assigned
        if todo:
            self._replaying = (self._spawn(self._replay(todo)), todo)

    async def _repair_hot(self, shards: set[int]) -> None:
        try:
            dropped, rescored = await repair_hot(
                self.store, self.processor.model, self.clock(), shards
            )
        except Exception as error:  # noqa: BLE001 -- a repair may wait for the next one
            log.debug("hot-leads index not repaired: %s", error)
            return
        if dropped:
            log.debug("hot-leads index: %d gone, %d rescored", dropped, rescored)

    async def _replay(self, partitions: set[int]) -> None:
        report = await self.retry(
            "outbox replay", functools.partial(self.processor.replay_outboxes, partitions)
        )
        self.totals.add(report)
        if self.metrics is not None:
            self.metrics.replayed(report)
        if report.published:
            log.info("republished %d pending outbox messages", report.published)


def next_offsets(records: Sequence[Record]) -> dict[int, int]:
    """Per partition, the offset after the last record of a batch."""
    offsets: dict[int, int] = {}
    for r in records:
        offsets[r.partition] = max(offsets.get(r.partition, 0), r.offset + 1)
    return offsets
