"""Faust wiring, and the one module that touches Faust's and aiokafka's private parts.

Raw topics, the consumer transport with a tunable fetch wait and a seek
hook, a consumer's committed offsets, the producer under Faust's. Private
attributes are used here only, for the library versions in `WRITTEN_FOR`
(pinned in pyproject.toml); `check_versions` says when others are installed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from leadpulse.streams.settings import Settings

log = logging.getLogger("leadpulse")

WRITTEN_FOR = {"faust-streaming": "0.15.3", "aiokafka": "0.14.0"}
"""The versions whose private attributes this module uses."""


def check_versions() -> list[str]:
    """Each library installed in another version than `WRITTEN_FOR`, logged as an error."""
    different = []
    for name, wanted in WRITTEN_FOR.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "none"
        if installed != wanted:
            different.append(f"{name} {installed} (written for {wanted})")
    if different:
        log.error(
            "leadpulse uses private parts of %s; check streams.kafka.transport before running "
            "with other versions",
            ", ".join(different),
        )
    return different


def committed_offset(consumer: Any, tp: Any) -> int | None:
    """What Faust's consumer thinks is committed for `tp` (it commits only past it)."""
    offset: int | None = consumer._committed_offset.get(tp)
    return offset


def set_committed_offset(consumer: Any, tp: Any, offset: int) -> None:
    """Move Faust's idea of `tp`'s committed offset, after seeking the partition there."""
    consumer._committed_offset[tp] = offset


def aiokafka_producer(app: faust.App) -> Any | None:
    """The aiokafka producer under Faust's (None until the app started it)."""
    return getattr(app.producer, "_producer", None)


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


AfterSeek = Callable[[Any], Awaitable[None]]
"""Called with the Faust consumer after it sought its partitions to committed offsets."""


def consumer_transport(
    app: faust.App, fetch_wait_ms: int, after_seek: AfterSeek | None = None
) -> Any:
    """Faust's aiokafka transport, with the consumer's fetch_max_wait_ms and a seek hook.

    Faust seeks every assigned partition to its committed offset when a
    rebalance completes, with the stream paused; `after_seek` runs right
    after, still paused, so it can move partitions to where the worker's own
    record of progress says they must resume.
    """

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

        async def perform_seek(self) -> None:
            await super().perform_seek()
            if after_seek is not None:
                await after_seek(self)

    class Transport(faust_aiokafka.Transport):
        pass

    Transport.Consumer = Consumer
    return Transport(app.conf.broker_consumer, app)
