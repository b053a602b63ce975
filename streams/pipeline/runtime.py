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
from collections.abc import Callable, Sequence
from typing import Any

from streams.errors import FatalError, PermanentError
from streams.observability.health import Health
from streams.observability.stats import Totals
from streams.pipeline.processor import Processor
from streams.pipeline.progress import Progress
from streams.pipeline.records import Record, Report
from streams.pipeline.retry import retrying
from streams.pipeline.watermarks import Highwater, Watermarks, sweep_bound
from streams.store import LeadStore

log = logging.getLogger("leadpulse")


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
    ) -> None:
        self.processor = processor
        self.store = store
        self.topic = topic
        self.totals = totals
        self.clock = clock
        self.on_fatal = on_fatal
        self.retry = functools.partial(retrying, stopped=stopped, health=health)
        self.watermarks = Watermarks(highwater=highwater)
        self.progress = Progress(store, topic)
        self.sweep_bound: float | None = None
        """The time the last sweep evaluated due leads at (the lowest watermark)."""
        self._background: set[asyncio.Task[None]] = set()

    async def score(self, records: Sequence[Record]) -> None:
        """Score one batch, then record how far its partitions were processed."""
        totals = self.totals
        if totals.first_batch_at is None:
            totals.first_batch_at = time.time()
        processor = self.processor
        offsets = next_offsets(records)

        async def attempt() -> Report:
            await self.progress.check(offsets)
            return await processor.process(records)

        try:
            try:
                report = await self.retry("scoring batch", attempt)
            except PermanentError as error:
                # nothing narrower caught it: the batch can never be scored as it is
                report = await self.retry(
                    "dead-lettering a batch",
                    functools.partial(processor.dead_letter_records, records, error.reason),
                )
            await self.retry("recording progress", functools.partial(self.progress.record, offsets))
        except FatalError as error:
            self.on_fatal(error)
            raise
        self.watermarks.processed(offsets, report.event_times)
        totals.add(report)
        totals.last_batch_at = time.time()
        for t in report.transitions:
            log.info(
                "%s %s -> %s (engagement %.1f, grade %s)",
                t.lead_id,
                t.from_stage,
                t.to_stage,
                t.engagement,
                t.grade,
            )

    async def sweep(self) -> None:
        report = await self.retry("decay sweep", self._sweep_once)
        self.totals.add(report)
        for t in report.transitions:
            log.info("%s %s -> %s by decay", t.lead_id, t.from_stage, t.to_stage)

    async def _sweep_once(self) -> Report:
        mine = set(self.watermarks.positions)
        if not mine:
            return Report()
        now = self.clock()
        local = self.watermarks.local(now)
        await self.store.publish_watermarks(self.topic, local)
        at = sweep_bound(now, local, await self.store.watermarks(self.topic))
        self.sweep_bound = at
        return await self.processor.sweep(at, shards=mine)

    async def after_seek(self, consumer: Any) -> None:
        """Resume each assigned partition where the store says it was processed to.

        Runs inside a rebalance, with the stream paused, after Faust sought
        every partition to Kafka's committed offset.
        """
        assigned = {tp.partition: tp for tp in consumer.assignment() if tp.topic == self.topic}
        self.progress.revoked(set(self.watermarks.positions) - set(assigned))
        try:
            points = await self.progress.resume_points(set(assigned))
        except Exception as error:  # noqa: BLE001 -- a rebalance must not wait on Redis
            log.warning("cannot read recorded progress (%s); resuming from Kafka's", error)
            points = {}
        starts: dict[int, int | None] = {}
        for partition, tp in assigned.items():
            committed = consumer._committed_offset.get(tp)
            target = points.get(partition)
            if target is not None and target != committed:
                log.info(
                    "partition %d resumes at offset %d as recorded in the store (Kafka: %s)",
                    partition,
                    target,
                    committed,
                )
                await consumer.seek(tp, target)
                committed = target
            starts[partition] = committed
        new = set(assigned) - set(self.watermarks.positions)
        self.watermarks.assigned(starts)
        if new:
            task = asyncio.ensure_future(self._replay(new))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _replay(self, partitions: set[int]) -> None:
        report = await self.retry(
            "outbox replay", functools.partial(self.processor.replay_outboxes, partitions)
        )
        self.totals.add(report)
        if report.published:
            log.info("republished %d pending outbox messages", report.published)


def next_offsets(records: Sequence[Record]) -> dict[int, int]:
    """Per partition, the offset after the last record of a batch."""
    offsets: dict[int, int] = {}
    for r in records:
        offsets[r.partition] = max(offsets.get(r.partition, 0), r.offset + 1)
    return offsets
