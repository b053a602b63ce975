"""The Faust app: the scoring agent, the decay sweeper, outbox replay, HTTP pages.

Agents stay thin: they turn Kafka records into `Record`s and hand batches to
the `Processor`, which owns decode -> apply -> persist -> publish. Transient
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
import os
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from scoring import ScoringModel
from streams.errors import FatalError
from streams.kafka.publisher import FaustPublisher, Publisher
from streams.kafka.security import faust_credentials
from streams.kafka.transport import consumer_transport, fetch_max_wait_ms, raw_topic
from streams.observability.health import Health, readiness
from streams.observability.metrics import (
    CONTENT_TYPE_LATEST,
    MeasuredStore,
    WorkerMetrics,
    exposition,
)
from streams.observability.stats import Totals
from streams.pipeline.processor import Processor
from streams.pipeline.records import Record, Topics
from streams.pipeline.runtime import Runtime
from streams.settings import Settings
from streams.store import LeadStore

log = logging.getLogger("leadpulse")

READY_TIMEOUT = 2.0
"""Seconds /ready waits for Redis' PING and the broker's metadata answer."""

STARTED_IN = os.getcwd()
"""The directory the worker was started in, before faust.Worker changes into its data dir."""


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
    """Wire one worker: the scoring agent, the sweeper timer, outbox replay, pages.

    The store, the publisher (default: the app's own Kafka producer) and the
    counters are passed in, so tests hand over fakes instead of patching.
    `on_fatal` is called when the process cannot go on (default: restart it
    in place, see `restart_in_place`). The metrics go to `registry` (default:
    a registry of this pipeline's own, never the process-wide default one).
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
        on_fatal=on_fatal or restart_in_place,
        owns=functools.partial(_owns, app, topic),
        metrics=metrics,
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
                    )
                    for e in batch
                ]
            )

    @app.timer(interval=settings.sweep_interval, name="leadpulse.sweep")
    async def sweep() -> None:
        await runtime.sweep()

    @app.page("/leads/{lead_id}")
    async def lead_page(web: Any, request: Any, lead_id: str) -> Any:
        from streams.http.views import explain_lead

        return web.json(await explain_lead(store, model, lead_id, clock()))

    @app.page("/ui/leads/{lead_id}")
    async def lead_ui_page(web: Any, request: Any, lead_id: str) -> Any:
        from streams.http.leadpage import HEADERS, lead_page

        status, body = await lead_page(store, model, lead_id, clock())
        return web.html(body, status=status, headers=dict(HEADERS))

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json(
            {
                **pipeline.totals.as_dict(),
                "assigned_partitions": _assigned(app),
                "sweep_bound": runtime.sweep_bound,
            }
        )

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        body = {**pipeline.health.as_dict(), "assigned_partitions": _assigned(app)}
        return web.json(body, status=200 if body["healthy"] else 503)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        redis_error, broker_error = await asyncio.gather(
            _failure(store.ping()), _failure(_broker_metadata(app))
        )
        body = readiness(
            assigned=_assigned(app),
            redis_error=redis_error,
            broker_error=broker_error,
            health=pipeline.health,
            lagging=runtime.lagging(),
            last_progress=pipeline.totals.last_batch_at or runtime.assigned_at,
            now=time.time(),
        )
        return web.json(body, status=200 if body["ready"] else 503)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        await runtime.observe()
        # aiohttp refuses a content_type with parameters: set the header itself
        return web.bytes(
            exposition(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    pipeline.agent = score
    return pipeline


def restart_in_place(error: FatalError) -> None:
    """Start this worker over in the same process (same pid, fresh state) via exec.

    Used when the store lost processed progress: the events after what it
    recorded must be read again, and a fresh consumer resumes every
    partition from the store's record. Sockets are closed by exec; the
    consumer group sees this member time out and rebalances.
    """
    log.error("%s; restarting the worker to read those events again", error)
    logging.shutdown()
    os.chdir(STARTED_IN)  # faust.Worker moved into the data dir; argv may be relative
    os.execv(sys.executable, sys.orig_argv)  # noqa: S606 -- our own command line, again


async def _failure(check: Coroutine[Any, Any, object]) -> str | None:
    """None if `check` finished within `READY_TIMEOUT`, else what went wrong."""
    try:
        await asyncio.wait_for(check, READY_TIMEOUT)
    except TimeoutError:
        return f"no answer in {READY_TIMEOUT:.0f}s"
    except Exception as error:  # noqa: BLE001 -- any failure makes the worker unready
        return f"{type(error).__name__}: {error}"
    return None


async def _broker_metadata(app: faust.App) -> None:
    """One metadata request over the worker's producer connection (raises if none answers)."""
    producer = getattr(app.producer, "_producer", None)
    if producer is None:
        raise ConnectionError("the producer is not started")
    await producer.client.fetch_all_metadata()


def _owns(app: faust.App, topic: str, partition: int) -> bool:
    try:
        return TP(topic, partition) in app.consumer.assignment()
    except Exception:  # noqa: BLE001 -- no consumer yet (component tests): nothing revoked
        return True


def _highwater(app: faust.App, topic: str, partition: int) -> int | None:
    try:
        high = app.consumer.highwater(TP(topic, partition))
    except Exception:  # noqa: BLE001 -- not assigned or not fetched yet
        return None
    return int(high) if high is not None else None


def _assigned(app: faust.App) -> int:
    try:
        return len(app.consumer.assignment())
    except Exception:  # noqa: BLE001 -- the consumer may not exist yet
        return 0
