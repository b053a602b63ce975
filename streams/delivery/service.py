"""`leadpulse deliver` as a process: Kafka consumer, Redis job store, DLQ producer, HTTP.

The consumer has its own group (``LEADPULSE_DELIVER_GROUP``, default
``<app_id>-deliver``), starts at the earliest offset when the group is new, and
commits a batch's offsets only after its jobs are in Redis: a crash before the
commit re-reads the batch, and the job store drops what it already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from leadpulse.schemas.codec import DecodeError
from leadpulse.schemas.messages import Handoff, RuleContribution
from leadpulse.streams.delivery.config import Destinations
from leadpulse.streams.delivery.deliverer import Deliverer, decode_record, send
from leadpulse.streams.delivery.jobs import JobStore
from leadpulse.streams.delivery.outbound import Answer, new_session
from leadpulse.streams.kafka.publisher import AiokafkaPublisher, Outgoing
from leadpulse.streams.observability.health import Health, failure_of, readiness
from leadpulse.streams.observability.metrics import DeliveryMetrics, exposition
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis.keys import Keys
from leadpulse.streams.store.redis.store import connect

log = logging.getLogger("leadpulse.deliver")

BATCH = 500
POLL_MS = 100
READY_TIMEOUT = 2.0
"""Seconds /ready waits for Redis' answer to PING."""


@dataclass(frozen=True, slots=True)
class DeliverClients:
    """The connections a deliverer runs on: Redis (its job store), a producer, a consumer."""

    redis: aioredis.Redis
    producer: AIOKafkaProducer
    consumer: AIOKafkaConsumer


class DeliverService:
    """Everything one deliverer process runs; `run` until `stop` is set."""

    def __init__(self, settings: Settings, destinations: Destinations, web_port: int) -> None:
        self.settings = settings
        self.destinations = destinations
        self.web_port = web_port
        self.registry = CollectorRegistry()
        self.metrics = DeliveryMetrics(self.registry)
        self.health = Health(unhealthy_after=settings.unhealthy_after)
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.deliverer: Deliverer | None = None
        self.redis: Any = None

    def topics(self) -> dict[str, str]:
        """Topic -> message kind, for the kinds some destination wants."""
        kinds = self.destinations.kinds
        topics = {}
        if "handoffs" in kinds:
            topics[self.settings.handoffs_topic] = "handoffs"
        if "transitions" in kinds:
            topics[self.settings.transitions_topic] = "transitions"
        return topics

    async def run(
        self, stop: asyncio.Event, probes: web.Application, clients: DeliverClients
    ) -> None:
        """Serve `probes` (the process's /health, /ready, /metrics) and deliver until `stop`.

        The process module builds the `clients` (`leadpulse.streams.processes.deliverer`);
        the service starts them and stops and closes them on its way out.
        """
        s = self.settings
        self.redis, self.producer, self.consumer = clients.redis, clients.producer, clients.consumer
        store = JobStore(self.redis, s.deliver_dedupe_retention, Keys(s.redis_prefix))
        publisher = AiokafkaPublisher(self.producer)

        async def publish(messages: Sequence[Outgoing]) -> None:
            await publisher.publish(messages)

        self.deliverer = Deliverer(
            self.destinations, store, publish, s.deliveries_dlq_topic, self.metrics, self.health
        )
        topics = self.topics()
        runner = web.AppRunner(probes, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, s.web_host, self.web_port).start()
            await self.producer.start()
            await self.consumer.start()
            log.info(
                "deliverer: %s -> %s (group %s); /metrics on http://%s:%d",
                ", ".join(topics),
                ", ".join(d.name for d in self.destinations.destinations),
                s.deliver_group_id,
                s.web_host,
                self.web_port,
            )
            sending = asyncio.create_task(self.deliverer.run(stop))
            try:
                await self.consume(stop, topics)
            finally:
                stop.set()
                await sending
        finally:
            with contextlib.suppress(Exception):
                await self.consumer.stop()
            with contextlib.suppress(Exception):
                await self.producer.stop()
            await runner.cleanup()
            await self.redis.aclose()

    async def consume(self, stop: asyncio.Event, topics: dict[str, str]) -> None:
        """Read, queue in Redis, then commit; the commit runs while the next batch is read."""
        assert self.consumer is not None
        committing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                batch = await self.consumer.getmany(timeout_ms=POLL_MS, max_records=BATCH)
                if not batch:
                    continue
                items = self._decode(batch, topics)
                if not await self._queue(items, stop):
                    return
                if committing is not None:
                    await committing
                offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
                committing = asyncio.create_task(self._commit(offsets))
        finally:
            if committing is not None:
                await committing

    def _decode(self, batch: dict[Any, list[Any]], topics: dict[str, str]) -> list[Any]:
        items = []
        for tp, records in batch.items():
            kind = topics[tp.topic]
            for record in records:
                self.metrics.consumed.labels(kind=kind).inc()
                try:
                    message = decode_record(kind, record.value or b"")
                except DecodeError as error:
                    log.warning(
                        "skipping %s[%d]@%d: not a %s message: %s",
                        tp.topic,
                        tp.partition,
                        record.offset,
                        kind,
                        error,
                    )
                    continue
                items.append((kind, message, record.timestamp / 1000.0))
        return items

    async def _queue(self, items: list[Any], stop: asyncio.Event) -> bool:
        """Queue the batch's jobs, retrying while Redis is away; False if stopped first."""
        assert self.deliverer is not None
        while not stop.is_set():
            try:
                await self.deliverer.accept(items)
                self.health.recovered("queueing deliveries")
                return True
            except Exception as error:  # noqa: BLE001 -- Redis away: retry the batch
                self.health.failed("queueing deliveries", error)
                log.warning("cannot queue deliveries (%s); retrying", error)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
        return False

    async def _commit(self, offsets: dict[Any, int]) -> None:
        """Commit offsets whose jobs are in Redis; a failed commit only means a replay later
        (which the job store drops), so it is logged, not retried."""
        assert self.consumer is not None
        try:
            await self.consumer.commit(offsets)
        except Exception as error:  # noqa: BLE001 -- a rebalance or a broker away
            log.warning("offset commit failed (%s); a restart re-reads those records", error)

    async def health_report(self) -> tuple[int, dict[str, Any]]:
        """/health: open, so what fails and how often, not its error text."""
        body = self.health.summary()
        return (200 if body["healthy"] else 503), body

    async def readiness_report(self) -> tuple[int, dict[str, Any]]:
        """/ready: partitions owned, Redis answers, nothing failing for `unhealthy_after`."""
        assigned = len(self.consumer.assignment()) if self.consumer is not None else 0
        if self.redis is None:
            redis_error: str | None = "not connected yet"
        else:
            redis_error = await failure_of(self.redis.ping(), READY_TIMEOUT)
        body = readiness(
            assigned=assigned,
            redis_error=redis_error,
            broker_error=None,  # the consumer's assignment says the broker answers
            health=self.health,
            lagging=False,  # deliveries wait in Redis, not behind a lag
            last_progress=None,
            now=time.time(),
        )
        return (200 if body["ready"] else 503), body

    async def scrape(self) -> bytes:
        """/metrics: the deliverer's registry in Prometheus' text format."""
        return exposition(self.registry)


def blocking_client(settings: Settings) -> aioredis.Redis:
    """`connect`'s client, but a call waits for a free connection instead of failing.

    Every destination has up to `concurrency` attempts in flight and each ends
    with a Redis call: with the default pool they fail with "Too many
    connections" once more than LEADPULSE_REDIS_MAX_CONNECTIONS finish at once.
    """
    pool = connect(settings).connection_pool
    blocking = aioredis.BlockingConnectionPool(
        connection_class=pool.connection_class,
        max_connections=pool.max_connections,
        timeout=settings.redis_socket_timeout,
        **pool.connection_kwargs,
    )
    return aioredis.Redis(connection_pool=blocking)


def sample_handoff(now: datetime) -> Handoff:
    """The message `leadpulse deliver --test` sends: plainly a sample, shaped like a real one."""
    return Handoff(
        handoff_id=f"test-{int(now.timestamp())}",
        lead_id="sample-lead",
        engagement=74.5,
        fit=55,
        grade="A",
        occurred_at=now - timedelta(minutes=3),
        model_version="sample",
        reasons=[
            RuleContribution(rule="pricing-page", points=28.0),
            RuleContribution(rule="demo-request", points=40.0),
            RuleContribution(rule="webinar-attended", points=6.5),
        ],
        event_id="sample-event",
        profile={
            "name": "Ada Sample",
            "email": "ada@example.com",
            "company": "Example Ltd",
            "title": "VP Engineering",
        },
        account_id="example.com",
    )


async def send_test(destinations: Destinations, name: str) -> tuple[Answer, Handoff]:
    """Send one signed sample handoff to the destination `name`; nothing is queued."""
    destination = destinations.named(name)
    now = time.time()
    sample = sample_handoff(datetime.fromtimestamp(now, UTC))
    async with new_session(destinations.allow_hosts, 1) as session:
        answer = await send(
            session, destinations.allow_hosts, destination, sample, now, sample.handoff_id
        )
    return answer, sample


def describe_answer(answer: Answer) -> str:
    status = "no answer" if answer.status is None else f"HTTP {answer.status}"
    lines = [
        f"{status} in {answer.seconds * 1000:.0f} ms"
        + (f": {answer.error}" if answer.error and answer.status is None else "")
    ]
    if answer.body:
        text = answer.body[:2000].decode("utf-8", errors="replace")
        with contextlib.suppress(ValueError):
            text = json.dumps(json.loads(text), indent=2)
        lines.append(text)
    return "\n".join(lines)
