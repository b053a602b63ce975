"""The Faust app: topics, the scoring agent, the decay sweeper, outbox replay.

Agents stay thin: they turn Kafka records into `Record`s and hand batches to
the `Processor`, which owns decode -> apply -> persist -> publish. Failures of
Redis or Kafka pause the agent and retry the same batch (idempotent), so the
offsets are committed only after a batch was fully persisted and published.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust

from scoring import ScoringModel
from streams.processor import Outgoing, Processor, Record, Report, Topics
from streams.settings import Settings
from streams.store import LeadStore
from streams.store_redis import RedisLeadStore, connect

log = logging.getLogger("leadpulse")

T = TypeVar("T")

RETRY_FIRST_DELAY = 0.1
RETRY_MAX_DELAY = 5.0


class FaustPublisher:
    """Publisher over Faust topics; returns once every send was acknowledged."""

    def __init__(self, topics: dict[str, Any]) -> None:
        self.topics = topics

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        pending = [
            await self.topics[m.topic].send(key=m.key.encode(), value=m.value) for m in messages
        ]
        for future in pending:
            await future


async def retrying(
    what: str, step: Callable[[], Awaitable[T]], *, stopped: Callable[[], bool]
) -> T:
    """Run `step` until it succeeds: a batch is never skipped, only delayed.

    Every step is idempotent (compare-and-set commits, outbox ids fixed per
    decision), so repeating it after a Redis or Kafka failure is safe.
    """
    delay = RETRY_FIRST_DELAY
    while True:
        try:
            return await step()
        except asyncio.CancelledError:
            raise
        except Exception as error:
            if stopped():
                raise
            log.warning(
                "%s failed (%s: %s); retrying in %.1fs", what, type(error).__name__, error, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_DELAY)


def broker_credentials(settings: Settings) -> Any:
    """Faust credentials for SASL and/or SSL, or None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    context = None
    if protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            purpose=ssl.Purpose.SERVER_AUTH,
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None,
        )
    if protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            ssl_context=context,
            mechanism=settings.kafka_sasl_mechanism or "PLAIN",
        )
    return context


@dataclass
class Totals:
    """Running counters of one worker, served at /stats."""

    scored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    published: int = 0
    transitions: dict[str, int] = field(default_factory=dict)

    def add(self, report: Report) -> None:
        self.scored += report.scored
        self.duplicates += report.duplicates
        self.dead_lettered += report.dead_lettered
        self.published += report.published
        for t in report.transitions:
            name = f"{t.from_stage}->{t.to_stage}"
            self.transitions[name] = self.transitions.get(name, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "published": self.published,
            "transitions": dict(self.transitions),
        }


@dataclass
class Pipeline:
    """The Faust app and the parts its agents use, built from frozen settings."""

    app: faust.App
    processor: Processor
    store: LeadStore
    totals: Totals
    agent: Any = None
    """The scoring agent, for `agent.test_context()` in component tests."""


def build(
    settings: Settings,
    model: ScoringModel,
    *,
    store: LeadStore | None = None,
    clock: Callable[[], float] = time.time,
) -> Pipeline:
    """Wire one worker: topics, the scoring agent, the sweeper timer, outbox replay."""
    app = faust.App(
        settings.app_id,
        broker=settings.broker,
        broker_credentials=broker_credentials(settings),
        store="memory://",
        datadir=str(settings.data_dir),
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(settings.session_timeout / 4, 3.0),
        broker_rebalance_timeout=max(settings.session_timeout * 2, 10.0),
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        stream_wait_empty=False,
    )

    def raw_topic(name: str) -> Any:
        """Bytes in, bytes out: the schemas codec owns (de)serialisation, not Faust."""
        return app.topic(
            name,
            partitions=settings.partitions,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    events = raw_topic(settings.events_topic)
    outputs = {
        name: raw_topic(name)
        for name in (settings.handoffs_topic, settings.transitions_topic, settings.dlq_topic)
    }
    lead_store = store or RedisLeadStore(connect(settings), due_shards=settings.due_shards)
    processor = Processor(
        lead_store,
        FaustPublisher(outputs),
        model,
        topics=Topics(
            handoffs=settings.handoffs_topic,
            transitions=settings.transitions_topic,
            dlq=settings.dlq_topic,
        ),
        clock=clock,
        sweep_limit=settings.sweep_limit,
    )
    pipeline = Pipeline(app=app, processor=processor, store=lead_store, totals=Totals())

    def stopped() -> bool:
        return bool(app.should_stop)

    @app.agent(events, concurrency=1, name="leadpulse.score")
    async def score(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
            records = [
                Record(
                    key=e.message.key,
                    value=e.message.value,
                    topic=e.message.topic,
                    partition=e.message.partition,
                    offset=e.message.offset,
                )
                for e in batch
            ]
            report = await retrying(
                "scoring batch", functools.partial(processor.process, records), stopped=stopped
            )
            pipeline.totals.add(report)
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
        report = await retrying("decay sweep", processor.sweep, stopped=stopped)
        pipeline.totals.add(report)
        for t in report.transitions:
            log.info("%s %s -> %s by decay", t.lead_id, t.from_stage, t.to_stage)

    @app.task
    async def replay_outboxes() -> None:
        report = await retrying("outbox replay", processor.replay_outboxes, stopped=stopped)
        pipeline.totals.add(report)
        if report.published:
            log.info("republished %d pending outbox messages", report.published)

    @app.page("/leads/{lead_id}")
    async def lead_page(web: Any, request: Any, lead_id: str) -> Any:
        from streams.views import explain_lead

        return web.json(await explain_lead(lead_store, model, lead_id, clock()))

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        try:
            assigned = len(app.consumer.assignment())
        except Exception:  # noqa: BLE001 -- the consumer may not exist yet
            assigned = 0
        return web.json({**pipeline.totals.as_dict(), "assigned_partitions": assigned})

    pipeline.agent = score
    return pipeline
