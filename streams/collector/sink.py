"""The collector's way into Kafka: an aiokafka producer, started lazily, acks=all.

The collector must answer 503 (and stay up) while the broker is away, at
start as well as later, so the producer is (re)started on demand by the
request that needs it rather than once at boot.

A broker that served the sink and then went away is noticed within
`collector_unavailable_after`, not after the produce timeout: an
acknowledgement missing for half of it makes the sink ask the broker for
its metadata (the other half at most, once for every request waiting); no
answer means it is away, and requests get their 503 at once until an
attempt every `RECONNECT_EVERY` finds it back. A broker that answers but
acknowledges slowly is waited for up to the produce timeout.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from leadpulse.streams.errors import TransientError
from leadpulse.streams.kafka.publisher import AiokafkaPublisher, Outgoing
from leadpulse.streams.kafka.security import aiokafka_options
from leadpulse.streams.settings import Settings

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
        self._heard_at = 0.0
        """When the broker last acknowledged or answered a probe (`time.monotonic`)."""
        self._probe: asyncio.Future[bool] | None = None
        self._lost_at = 0.0
        """When a probe last found the broker away."""
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
            self._heard_at = time.monotonic()
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
        if not self.connected and not await self._answers(producer, retry=False):
            raise BrokerUnavailableError("Kafka is away (retrying)")
        sending = asyncio.ensure_future(AiokafkaPublisher(producer).publish(messages))
        try:
            await self._acknowledged(sending, producer)
        except (TimeoutError, OSError) as error:
            self.connected = False
            raise BrokerUnavailableError(f"Kafka did not acknowledge: {error!r}") from error
        except Exception as error:
            if _is_kafka_error(error):
                self.connected = False
                raise BrokerUnavailableError(f"Kafka refused for now: {error!r}") from error
            raise
        finally:
            sending.cancel()  # done by now, or given up on: the producer may still send it
        self._heard_at = time.monotonic()
        self.connected = True

    async def _acknowledged(
        self, sending: asyncio.Future[None], producer: AIOKafkaProducer
    ) -> None:
        """Wait for `sending` up to the produce timeout; TimeoutError at once if the broker
        stopped answering (asked after each half of `collector_unavailable_after` without
        an acknowledgement, unless it was heard from in that time)."""
        timeout = self.settings.collector_produce_timeout
        step = self.settings.collector_unavailable_after / 2
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no acknowledgement within {timeout:g} s")
            done, _ = await asyncio.wait({sending}, timeout=min(step, left))
            if done:
                return sending.result()
            if time.monotonic() - self._heard_at >= step and not await self._answers(producer):
                raise TimeoutError("the broker no longer answers")

    async def _answers(self, producer: AIOKafkaProducer, *, retry: bool = True) -> bool:
        """Whether the broker answers a metadata request within half of
        `collector_unavailable_after`; requests that ask together share one probe.

        With `retry` False, a probe that failed less than `RECONNECT_EVERY` ago
        is its answer (the broker is known away: no new attempt per request).
        """
        if self._probe is None:
            if not retry and time.monotonic() - self._lost_at < RECONNECT_EVERY:
                return False
            self._probe = asyncio.ensure_future(self._ask(producer))
            self._probe.add_done_callback(self._probed)
        # shielded: a request that gives up does not cancel the others' probe
        return await asyncio.shield(self._probe)

    def _probed(self, probe: asyncio.Future[bool]) -> None:
        if self._probe is probe:
            self._probe = None

    async def _ask(self, producer: AIOKafkaProducer) -> bool:
        budget = self.settings.collector_unavailable_after / 2
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), budget)
        except Exception as error:  # noqa: BLE001 -- any failure: the broker is away
            self._lost_at = time.monotonic()
            if self.connected:
                log.warning("Kafka at %s no longer answers: %s", self.settings.broker, error)
            self.connected = False
            return False
        self._heard_at = time.monotonic()
        return True

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
