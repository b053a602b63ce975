"""The Faust app: the scoring agent, the decay sweeper, outbox replay, HTTP pages.

Agents stay thin: they turn Kafka records into `Record`s and hand batches to
the `Processor`, which owns decode -> apply -> persist -> publish. Transient
failures of Redis or Kafka pause the agent and retry the same batch
(idempotent), so offsets are committed only after a batch was fully
persisted and published; permanent ones are dead-lettered and the agent
goes on.
"""

from __future__ import annotations

import functools
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from scoring import ScoringModel
from streams.errors import PermanentError
from streams.kafka.publisher import FaustPublisher, Publisher
from streams.kafka.security import faust_credentials
from streams.kafka.transport import consumer_transport, fetch_max_wait_ms, raw_topic
from streams.observability.health import Health
from streams.observability.stats import Totals
from streams.pipeline.processor import Processor
from streams.pipeline.records import Record, Topics
from streams.pipeline.retry import retrying
from streams.settings import Settings
from streams.store import LeadStore

log = logging.getLogger("leadpulse")


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
) -> Pipeline:
    """Wire one worker: the scoring agent, the sweeper timer, outbox replay, pages.

    The store, the publisher (default: the app's own Kafka producer) and the
    counters are passed in, so tests hand over fakes instead of patching.
    """
    app = faust.App(settings.app_id, **faust_settings(settings))
    app.transport = consumer_transport(app, fetch_max_wait_ms(settings))
    events = raw_topic(app, settings.events_topic, settings.partitions)
    processor = Processor(
        store,
        publisher if publisher is not None else FaustPublisher(app),
        model,
        topics=Topics(
            handoffs=settings.handoffs_topic,
            transitions=settings.transitions_topic,
            dlq=settings.dlq_topic,
        ),
        clock=clock,
        sweep_limit=settings.sweep_limit,
        partitions=settings.partitions,
    )
    pipeline = Pipeline(
        app=app,
        processor=processor,
        store=store,
        totals=totals or Totals(),
        health=health or Health(unhealthy_after=settings.unhealthy_after, clock=clock),
    )
    retry = functools.partial(
        retrying, stopped=lambda: bool(app.should_stop), health=pipeline.health
    )

    @app.agent(events, concurrency=1, name="leadpulse.score")
    async def score(stream: Any) -> None:
        totals = pipeline.totals
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
            if totals.first_batch_at is None:
                totals.first_batch_at = time.time()
            records = [
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
            try:
                report = await retry("scoring batch", functools.partial(processor.process, records))
            except PermanentError as error:
                # nothing narrower caught it: the batch can never be scored as it is
                report = await retry(
                    "dead-lettering a batch",
                    functools.partial(processor.dead_letter_records, records, error.reason),
                )
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

    @app.timer(interval=settings.sweep_interval, name="leadpulse.sweep")
    async def sweep() -> None:
        report = await retry("decay sweep", processor.sweep)
        pipeline.totals.add(report)
        for t in report.transitions:
            log.info("%s %s -> %s by decay", t.lead_id, t.from_stage, t.to_stage)

    @app.task
    async def replay_outboxes() -> None:
        report = await retry("outbox replay", processor.replay_outboxes)
        pipeline.totals.add(report)
        if report.published:
            log.info("republished %d pending outbox messages", report.published)

    @app.page("/leads/{lead_id}")
    async def lead_page(web: Any, request: Any, lead_id: str) -> Any:
        from streams.http.views import explain_lead

        return web.json(await explain_lead(store, model, lead_id, clock()))

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json({**pipeline.totals.as_dict(), "assigned_partitions": _assigned(app)})

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        body = {**pipeline.health.as_dict(), "assigned_partitions": _assigned(app)}
        return web.json(body, status=200 if body["healthy"] else 503)

    pipeline.agent = score
    return pipeline


def _assigned(app: faust.App) -> int:
    try:
        return len(app.consumer.assignment())
    except Exception:  # noqa: BLE001 -- the consumer may not exist yet
        return 0
