"""The collector's way into Kafka: an aiokafka producer, started lazily, acks=all.

The collector must answer 503 (and stay up) while the broker is away, at
start as well as later, so the producer is (re)started on demand by the
request that needs it rather than once at boot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from streams.errors import TransientError
from streams.kafka.publisher import AiokafkaPublisher, Outgoing
from streams.kafka.security import aiokafka_options
from streams.settings import Settings

log = logging.getLogger("leadpulse.collector")

RECONNECT_EVERY = 1.0
"""Seconds between two attempts to start the producer while the broker is away."""


class BrokerUnavailableError(TransientError):
    """Kafka did not acknowledge in time, or cannot be reached: answer 503."""


class KafkaSink:
    """Publishes a request's messages together and returns once Kafka acknowledged them all."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()
        self._last_attempt = 0.0
        self.connected = False

    def _new_producer(self) -> AIOKafkaProducer:
        timeout_ms = int(self.settings.collector_produce_timeout * 1000)
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            client_id="leadpulse-collector",
            acks="all",
            enable_idempotence=False,  # Tansu refuses InitProducerId; ids de-duplicate instead
            linger_ms=self.settings.collector_linger_ms,
            max_batch_size=512 * 1024,
            max_request_size=max(1_048_576, 2 * self.settings.collector_max_batch_bytes),
            request_timeout_ms=timeout_ms,
            **aiokafka_options(self.settings),
        )

    async def _ready(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is not None:
                return self._producer
            if time.monotonic() - self._last_attempt < RECONNECT_EVERY:
                raise BrokerUnavailableError("Kafka is unreachable (retrying)")
            producer = self._new_producer()
            try:
                await asyncio.wait_for(producer.start(), self.settings.collector_produce_timeout)
            except Exception as error:
                await _quietly_stop(producer)
                # from the end of the attempt: one that timed out took longer than
                # RECONNECT_EVERY, and the requests queued on the lock would each try again
                self._last_attempt = time.monotonic()
                reason = str(error) or type(error).__name__  # a timeout has no message
                log.warning("cannot reach Kafka at %s: %s", self.settings.broker, reason)
                raise BrokerUnavailableError(f"Kafka is unreachable: {reason}") from error
            self._producer = producer
            self.connected = True
            return producer

    async def start(self) -> None:
        """Connect now if the broker is there; if not, requests answer 503 until it is."""
        try:
            await self._ready()
        except BrokerUnavailableError:
            self._last_attempt = 0.0

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        producer = await self._ready()
        try:
            await asyncio.wait_for(
                AiokafkaPublisher(producer).publish(messages),
                self.settings.collector_produce_timeout,
            )
        except (TimeoutError, OSError) as error:
            self.connected = False
            raise BrokerUnavailableError(f"Kafka did not acknowledge: {error!r}") from error
        except Exception as error:
            if _is_kafka_error(error):
                self.connected = False
                raise BrokerUnavailableError(f"Kafka refused for now: {error!r}") from error
            raise
        self.connected = True

    async def close(self) -> None:
        """Flush what is in flight and disconnect."""
        producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly_stop(producer)


def _is_kafka_error(error: BaseException) -> bool:
    return any(cls.__module__.startswith("aiokafka") for cls in type(error).__mro__)


async def _quietly_stop(producer: AIOKafkaProducer) -> None:
    try:
        await producer.stop()
    except Exception as error:  # noqa: BLE001 -- closing a broken producer must not raise
        log.debug("producer stop: %s", error)


class MemorySink:
    """The in-memory fake: keeps what was published; `unavailable` makes it act like an outage."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []
        self.unavailable = False

    @property
    def connected(self) -> bool:
        return not self.unavailable

    async def start(self) -> None:
        return None

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        if self.unavailable:
            raise BrokerUnavailableError("memory sink set unavailable")
        for message in messages:
            message.key.encode("utf-8")  # as the Kafka publisher does: a bad key raises
        self.messages.extend(messages)

    async def close(self) -> None:
        return None
