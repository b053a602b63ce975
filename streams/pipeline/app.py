"""The Faust app: the scoring agent, the decay sweeper, outbox replay, what probes read.

Agents stay thin: they turn Kafka records into `Record`s and hand batches to
the `Processor`, whose `process` is the batch's sequence (decode -> identity ->
apply -> commit -> publish; progress is recorded after it). Transient
failures of Redis or Kafka pause the agent and retry the same batch
(idempotent), so offsets are committed only after a batch was fully
persisted and published; permanent ones are dead-lettered and the agent
goes on.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from leadpulse.schemas import REPLAY_HEADER
from leadpulse.scoring import ScoringModel
from leadpulse.streams.errors import FatalError
from leadpulse.streams.kafka.publisher import FaustPublisher, Publisher
from leadpulse.streams.kafka.security import faust_credentials
from leadpulse.streams.kafka.transport import (
    aiokafka_producer,
    consumer_transport,
    fetch_max_wait_ms,
    raw_topic,
)
from leadpulse.streams.observability.health import Health, failure_of, readiness
from leadpulse.streams.observability.metrics import MeasuredStore, WorkerMetrics, exposition
from leadpulse.streams.observability.stats import Totals
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.pipeline.retry import RetryPolicy
from leadpulse.streams.pipeline.runtime import Runtime
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import LeadStore

log = logging.getLogger("leadpulse")

READY_TIMEOUT = 2.0
"""Seconds /ready waits for Redis' PING and the broker's metadata answer."""


def freeze_heap() -> None:
    """Leave the start-up heap (Faust, aiokafka, pydantic, the model) out of GC scans.

    Scoring allocates many short-lived objects, and every full collection
    walked the whole heap: in a sweep profile those collections showed as
    30-ms stalls inside unrelated calls. Called once the worker is built.
    """
    gc.collect()
    gc.freeze()


def faust_settings(settings: Settings) -> dict[str, Any]:
    """The `faust.App` keyword arguments of a worker (the benchmarks reuse them)."""
    return {
        "broker": settings.broker,
        "broker_credentials": faust_credentials(settings),
        "store": "memory://",
        "datadir": str(settings.data_dir),
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        # Faust's own routes (table data, cluster routing, sensor stats, the
        # service graph) are not the worker's API: off, so only its own are served
        "web_router_enabled": False,
        "web_tables_enabled": False,
        "web_stats_enabled": False,
        "web_graph_enabled": False,
        "web_metrics_enabled": False,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_disable_leader": True,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": min(settings.session_timeout / 4, 3.0),
        "broker_rebalance_timeout": max(settings.session_timeout * 2, 10.0),
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_max_request_size": settings.producer_max_request_size,
        "stream_wait_empty": False,
    }


@dataclass
class Pipeline:
    """The Faust app and the parts its agents use, built from frozen settings."""

    app: faust.App
    processor: Processor
    store: LeadStore
    totals: Totals
    health: Health
    runtime: Runtime
    metrics: WorkerMetrics
    agent: Any = field(default=None)
    """The scoring agent, for `agent.test_context()` in component tests."""

    async def health_report(self) -> tuple[int, dict[str, Any]]:
        """/health: 503 once a step has been failing for `unhealthy_after`; names and counts."""
        return self._health(self.health.summary())

    async def health_detail(self) -> tuple[int, dict[str, Any]]:
        """/health/detail (a token's): /health with error texts and the last letter's origin."""
        return self._health(self.health.as_dict())

    def _health(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body["assigned_partitions"] = _assigned(self.app)
        return (200 if body["healthy"] else 503), body

    async def readiness_report(self) -> tuple[int, dict[str, Any]]:
        """/ready: Redis and the broker answer, partitions owned, progress when lagging."""
        redis_error, broker_error = await asyncio.gather(
            failure_of(self.store.ping(), READY_TIMEOUT),
            failure_of(_broker_metadata(self.app), READY_TIMEOUT),
        )
        body = readiness(
            assigned=_assigned(self.app),
            redis_error=redis_error,
            broker_error=broker_error,
            health=self.health,
            lagging=self.runtime.lagging(),
            last_progress=self.totals.last_batch_at or self.runtime.assigned_at,
            now=time.time(),
        )
        return (200 if body["ready"] else 503), body

    async def scrape(self) -> bytes:
        """/metrics: the registry in Prometheus' text format, gauges read now."""
        await self.runtime.observe()
        return exposition(self.metrics.registry)

    def stats(self) -> dict[str, Any]:
        """/stats: the running totals, the partitions owned and the sweep bound."""
        return {
            **self.totals.as_dict(),
            "assigned_partitions": _assigned(self.app),
            "owned_partitions": _owned(self.app, self.runtime.topic),
            "sweep_bound": self.runtime.sweep_bound,
        }


def build(
    settings: Settings,
    model: ScoringModel,
    *,
    store: LeadStore,
    publisher: Publisher | None = None,
    totals: Totals | None = None,
    health: Health | None = None,
    clock: Callable[[], float] = time.time,
    on_fatal: Callable[[FatalError], None] | None = None,
    registry: CollectorRegistry | None = None,
) -> Pipeline:
    """Wire one worker's stream processing: the scoring agent, the sweeper timer, outbox replay.

    The store, the publisher (default: the app's own Kafka producer) and the
    counters are passed in, so tests hand over fakes instead of patching.
    `on_fatal` is called when the process cannot go on (default: logged; the
    worker process passes one that stops it for its supervisor to restart).
    The metrics go to `registry` (default: a registry of this pipeline's own,
    never the process-wide default one). Its HTTP routes are not added here:
    the worker process serves them (`streams.http.routes`) from the returned
    pipeline's reports.
    """
    app = faust.App(settings.app_id, **faust_settings(settings))
    topic = settings.events_topic
    events = raw_topic(app, topic, settings.partitions)
    health = health or Health(unhealthy_after=settings.unhealthy_after, clock=clock)
    metrics = WorkerMetrics(registry if registry is not None else CollectorRegistry())
    measured = MeasuredStore(store, metrics)
    processor = Processor(
        measured,
        publisher if publisher is not None else FaustPublisher(app),
        model,
        topics=Topics(
            handoffs=settings.handoffs_topic,
            transitions=settings.transitions_topic,
            dlq=settings.dlq_topic,
        ),
        clock=clock,
        sweep_limit=settings.sweep_limit,
        health=health,
        max_message=settings.producer_max_request_size,
        max_future_skew=settings.max_future_skew,
        dead_lettered=metrics.dead_lettered,
    )
    totals = totals or Totals()
    runtime = Runtime(
        processor,
        measured,
        topic,
        totals=totals,
        health=health,
        stopped=lambda: bool(app.should_stop),
        highwater=functools.partial(_highwater, app, topic),
        clock=clock,
        on_fatal=on_fatal or _logged,
        owns=functools.partial(_owns, app, topic),
        metrics=metrics,
        policy=RetryPolicy(max_unknown_retries=settings.max_unknown_retries),
        watermark_stale_after=settings.watermark_stale_after,
    )
    pipeline = Pipeline(
        app=app,
        processor=processor,
        store=store,
        totals=totals,
        health=health,
        runtime=runtime,
        metrics=metrics,
    )
    app.transport = consumer_transport(app, fetch_max_wait_ms(settings), runtime.after_seek)

    @app.agent(events, concurrency=1, name="leadpulse.score")
    async def score(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
            await runtime.score(
                [
                    Record(
                        key=e.message.key,
                        value=e.message.value,
                        topic=e.message.topic,
                        partition=e.message.partition,
                        offset=e.message.offset,
                        timestamp=e.message.timestamp,
                        replay_of=_replay_of(e.message.headers),
                    )
                    for e in batch
                ]
            )

    @app.timer(interval=settings.sweep_interval, name="leadpulse.sweep")
    async def sweep() -> None:
        await runtime.sweep()

    pipeline.agent = score
    return pipeline


async def _broker_metadata(app: faust.App) -> None:
    """One metadata request over the worker's producer connection (raises if none answers)."""
    producer = aiokafka_producer(app)
    if producer is None:
        raise ConnectionError("the producer is not started")
    await producer.client.fetch_all_metadata()


def _replay_of(headers: Any) -> str | None:
    """The replayed letter's id from a record's headers (a mapping or (name, value) pairs)."""
    if not headers:
        return None
    pairs = headers.items() if hasattr(headers, "items") else headers
    for name, value in pairs:
        if name == REPLAY_HEADER and isinstance(value, bytes | str):
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


def _logged(error: FatalError) -> None:
    log.error("the worker cannot go on: %s", error)


def _owns(app: faust.App, topic: str, partition: int) -> bool:
    """Fails closed: a worker that cannot tell owns nothing, so records no progress."""
    try:
        return TP(topic, partition) in app.consumer.assignment()
    except Exception:
        log.warning(
            "cannot read the consumer's assignment; partition %d counts as not owned",
            partition,
            exc_info=True,
        )
        return False


def _highwater(app: faust.App, topic: str, partition: int) -> int | None:
    try:
        high = app.consumer.highwater(TP(topic, partition))
    except Exception:  # noqa: BLE001 -- not assigned or not fetched yet
        return None
    return int(high) if high is not None else None


def _owned(app: faust.App, topic: str) -> list[int]:
    """The partitions of `topic` assigned to this worker (for /stats)."""
    try:
        return sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)
    except Exception:  # noqa: BLE001 -- the consumer may not exist yet
        return []


def _assigned(app: faust.App) -> int:
    try:
        return len(app.consumer.assignment())
    except Exception:  # noqa: BLE001 -- the consumer may not exist yet
        return 0
