"""The Faust app: topics, the scoring agent, the decay sweeper, outbox replay.

Agents stay thin: they turn Kafka records into `Record`s and hand batches to
the `Processor`, which owns decode -> apply -> persist -> publish. Failures of
Redis or Kafka pause the agent and retry the same batch (idempotent), so the
offsets are committed only after a batch was fully persisted and published.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

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
    """Publisher over the Faust app's producer; returns once every send was acknowledged.

    Sends go straight to the transport producer (raw bytes, the default
    key partitioner, as `topic.send` would do for raw topics) and their
    futures are awaited together: `topic.send` per message costs several
    times more CPU in Faust's channel machinery.
    """

    def __init__(self, app: faust.App) -> None:
        self.app = app

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        producer = self.app.producer
        pending = [
            await producer.send(m.topic, m.key.encode(), m.value, None, None, None)
            for m in messages
        ]
        if pending:
            await asyncio.gather(*pending)


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


def freeze_heap() -> None:
    """Leave the start-up heap (Faust, aiokafka, pydantic, the model) out of GC scans.

    Scoring allocates many short-lived objects, and every full collection
    walked the whole heap: in a sweep profile those collections showed as
    30-ms stalls inside unrelated calls. Called once the worker is built.
    """
    gc.collect()
    gc.freeze()


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


def faust_settings(settings: Settings) -> dict[str, Any]:
    """The `faust.App` keyword arguments of a worker (the benchmarks reuse them)."""
    return {
        "broker": settings.broker,
        "broker_credentials": broker_credentials(settings),
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


def raw_topic(app: faust.App, name: str, partitions: int) -> Any:
    """Bytes in, bytes out: the schemas codec owns (de)serialisation, not Faust."""
    return app.topic(
        name,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )


FAUST_FETCH_MAX_WAIT_MS = 1500
"""What faust-streaming 0.15 hard-codes for its consumer's fetch_max_wait_ms."""


def fetch_max_wait_ms(settings: Settings) -> int:
    """The worker consumer's fetch wait: `batch_within`, 1 ms to Faust's 1.5 s.

    A fetch that finds no new records waits up to this long at the broker.
    Tansu answers such a fetch only when the wait is over, even if records
    arrive meanwhile (Apache Kafka answers as soon as they do), so with
    Faust's fixed 1.5 s an event could wait 1.5 s before the worker saw it.
    Tied to `batch_within`, the time the worker already allows a batch to
    fill, an event waits at most about twice that before it is scored.
    """
    wait = round(settings.batch_within * 1000)
    return max(1, min(FAUST_FETCH_MAX_WAIT_MS, wait))


def _thread_loop(main: asyncio.AbstractEventLoop) -> asyncio.AbstractEventLoop:
    """The consumer thread's event loop: uvloop when the worker runs on uvloop."""
    if type(main).__module__.startswith("uvloop"):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def consumer_transport(app: faust.App, fetch_wait_ms: int) -> Any:
    """Faust's aiokafka transport, except for the consumer's fetch_max_wait_ms."""

    class ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
        def _create_worker_consumer(self, transport: Any) -> Any:
            consumer = super()._create_worker_consumer(transport)
            consumer._fetch_max_wait_ms = fetch_wait_ms  # read by consumer.start()
            return consumer

    class Consumer(faust_aiokafka.Consumer):
        def _new_consumer_thread(self) -> Any:
            return ConsumerThread(
                self, loop=self.loop, beacon=self.beacon, thread_loop=_thread_loop(self.loop)
            )

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport(app.conf.broker_consumer, app)


@dataclass
class Totals:
    """Running counters of one worker, served at /stats."""

    scored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    published: int = 0
    transitions: dict[str, int] = field(default_factory=dict)
    first_batch_at: float | None = None
    """Wall-clock time the scoring agent received its first batch (benchmarks)."""
    last_batch_at: float | None = None
    """Wall-clock time the scoring agent finished its latest batch (benchmarks)."""

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
            "first_batch_at": self.first_batch_at,
            "last_batch_at": self.last_batch_at,
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
    app = faust.App(settings.app_id, **faust_settings(settings))
    app.transport = consumer_transport(app, fetch_max_wait_ms(settings))
    events = raw_topic(app, settings.events_topic, settings.partitions)
    lead_store = store or RedisLeadStore(connect(settings), due_shards=settings.due_shards)
    processor = Processor(
        lead_store,
        FaustPublisher(app),
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
                )
                for e in batch
            ]
            report = await retrying(
                "scoring batch", functools.partial(processor.process, records), stopped=stopped
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
