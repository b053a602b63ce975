"""Live handoffs for the page: one Kafka reader per process, fanned out to browsers.

`HandoffFeed` reads the handoffs topic with one aiokafka consumer of no
consumer group, assigned every partition from its end, so each worker's page
sees the handoffs of every worker. It starts with the first subscriber (a
worker nobody watches does not fetch). Every subscriber has a bounded queue: one
that does not keep up is dropped (its stream ends, the browser reconnects)
instead of slowing the others or the reader. `stream` serves a subscriber as
server-sent events (``text/event-stream``): ``ready`` once the reader has its
positions, ``handoff`` per handoff, and a comment line as heartbeat so proxies
keep the connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from leadpulse.schemas import DecodeError, decode_handoff
from leadpulse.streams.kafka.security import aiokafka_options
from leadpulse.streams.settings import Settings

log = logging.getLogger("leadpulse.http")

QUEUE_SIZE: Final = 64
"""Handoffs a subscriber may fall behind by before it is dropped."""
RECENT: Final = 20
"""Handoffs kept for `/handoffs/recent` and sent to a new subscriber first."""
HEARTBEAT: Final = 15.0
"""Seconds between heartbeat comments on an idle stream."""
FETCH_WAIT_MS: Final = 100
"""The reader's longest fetch wait: a handoff waits at most this long in the broker."""
START_TIMEOUT: Final = 15.0
"""Seconds the reader may take to connect and find its positions."""
STALE: Final = 5.0
"""Seconds: a record older than the feed's start is history, not live (Tansu may
report an end offset before the last records of a batch)."""


class Subscriber:
    """One browser's bounded queue of handoffs; `dropped` once it fell behind."""

    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(size)
        self.dropped = asyncio.Event()

    async def next(self, wait: float) -> dict[str, Any] | None:
        """The next handoff, or None after `wait` seconds (time for a heartbeat)."""
        getter = asyncio.ensure_future(self.queue.get())
        dropped = asyncio.ensure_future(self.dropped.wait())
        try:
            done, _ = await asyncio.wait(
                {getter, dropped}, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (getter, dropped):
                if not task.done():
                    task.cancel()
        if getter in done:
            return getter.result()
        if self.dropped.is_set():
            raise SubscriberDroppedError
        return None


class SubscriberDroppedError(Exception):
    """The subscriber fell behind (or the feed stopped): its stream ends."""


def summary(handoff_json: bytes, received_at: float) -> dict[str, Any] | None:
    """What the page shows of one handoff message; None if it is not one."""
    try:
        handoff = decode_handoff(handoff_json)
    except DecodeError:
        return None
    return {
        "handoff_id": handoff.handoff_id,
        "lead_id": handoff.lead_id,
        "engagement": handoff.engagement,
        "fit": handoff.fit,
        "grade": handoff.grade,
        "occurred_at": handoff.occurred_at.isoformat(),
        "received_at": received_at,
    }


class HandoffFeed:
    """The process's one reader of the handoffs topic and its subscribers."""

    def __init__(
        self,
        settings: Settings,
        *,
        queue_size: int = QUEUE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.queue_size = queue_size
        self.clock = clock
        self.subscribers: set[Subscriber] = set()
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT)
        self.dropped = 0
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._started_at = clock()
        """Records older than this (less `STALE`) are history; reset when the reader starts."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Connect and take every partition from its end (once; later calls return)."""
        async with self._lock:
            if self.running:
                return
            await asyncio.wait_for(self._connect(), START_TIMEOUT)

    async def _connect(self) -> None:
        topic = self.settings.handoffs_topic
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="latest",
            fetch_max_wait_ms=FETCH_WAIT_MS,
            client_id=f"{self.settings.app_id}-page",
            **aiokafka_options(self.settings),
        )
        await consumer.start()
        try:
            await _from_the_end(consumer, topic)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._started_at = self.clock()
        self._task = asyncio.create_task(self._read(consumer), name="leadpulse.handoff-feed")

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 -- the page's reader must outlive a broker blip
                log.warning("handoff feed: %s: %s; retrying", type(error).__name__, error)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._publish(record)

    def _publish(self, record: ConsumerRecord[Any, Any]) -> None:
        if record.timestamp / 1000 < self._started_at - STALE or record.value is None:
            return
        item = summary(record.value, self.clock())
        if item is None:
            return
        self.recent.append(item)
        for subscriber in list(self.subscribers):
            try:
                subscriber.queue.put_nowait(item)
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        subscriber.dropped.set()
        self.dropped += 1

    def subscribe(self) -> Subscriber:
        subscriber = Subscriber(self.queue_size)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    async def stop(self) -> None:
        """End every stream and close the reader."""
        for subscriber in list(self.subscribers):
            self._drop(subscriber)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


async def _from_the_end(consumer: AIOKafkaConsumer, topic: str) -> None:
    """Assign every partition of `topic` at its end, positions resolved."""
    await consumer.topics()  # fresh metadata: the topic's partitions
    partitions = consumer.partitions_for_topic(topic) or set()
    if not partitions:
        raise RuntimeError(f"topic {topic} has no partitions (does it exist?)")
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    await consumer.seek_to_end(*assigned)
    for tp in assigned:  # resolve the positions now, before the page is told "ready"
        await consumer.position(tp)


def event(name: str, data: object) -> bytes:
    """One server-sent event; `data` as JSON on one line."""
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def stream(request: web.Request, feed: HandoffFeed, heartbeat: float = HEARTBEAT) -> Any:
    """Serve `feed` to one browser as server-sent events until it leaves or is dropped."""
    try:
        await feed.start()
    except Exception as error:  # noqa: BLE001 -- answered, not raised: the page shows it
        log.warning("handoff feed did not start: %s: %s", type(error).__name__, error)
        return web.json_response(
            {"code": "feed_unavailable", "message": f"cannot read the handoffs topic: {error}"},
            status=503,
        )
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
            "X-Content-Type-Options": "nosniff",
        }
    )
    await response.prepare(request)
    subscriber = feed.subscribe()
    try:
        # ends when the browser leaves (the write fails) or the feed drops it
        with contextlib.suppress(SubscriberDroppedError, ConnectionResetError):
            await response.write(event("ready", {"recent": list(feed.recent)}))
            while True:
                item = await subscriber.next(heartbeat)
                if item is None:
                    await response.write(b": heartbeat\n\n")
                else:
                    await response.write(event("handoff", item))
    finally:
        feed.unsubscribe(subscriber)
    return response
