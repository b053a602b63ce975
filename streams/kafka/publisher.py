"""Publishing to Kafka: the `Publisher` port and its Faust-producer implementation."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import faust

from leadpulse.streams.errors import UnpublishableError, is_permanent_kafka_error
from leadpulse.streams.kafka.partitioner import default_partition


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: topic, key (the lead) and the encoded value."""

    topic: str
    key: str
    value: bytes


class Publisher(Protocol):
    """Sends messages and returns only when the broker acknowledged all of them.

    Raises `UnpublishableError` listing the messages the broker refused for
    what they are (too large, invalid), after every other message was
    acknowledged; any other exception means the send should be retried.
    """

    async def publish(self, messages: Sequence[Outgoing]) -> None: ...


class RefusedMessagesError(UnpublishableError):
    """Some messages of a publish can never be sent; the rest were acknowledged."""

    def __init__(self, refused: Sequence[tuple[Outgoing, str]]) -> None:
        super().__init__("; ".join(sorted({reason for _, reason in refused})))
        self.refused = list(refused)


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

        async def send(m: Outgoing) -> Awaitable[object]:
            future: Awaitable[object] = await producer.send(
                m.topic, m.key.encode(), m.value, None, None, None
            )
            return future

        await publish_all(send, messages)


class AiokafkaPublisher:
    """Publisher over a plain aiokafka producer with its default partitioner (the collector's).

    Each message is sent to the partition that partitioner would choose
    (`default_partition`: murmur2 of the key, as the Java client, Faust and
    ``leadpulse send``), computed here: aiokafka's pure-Python murmur2 was a
    sixth of the collector's Kafka cost. The partitions are asked once per
    topic per publish, not once per message.
    """

    def __init__(self, producer: Any) -> None:
        self.producer = producer

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        partitions: dict[str, list[int]] = {}

        async def send(m: Outgoing) -> Awaitable[object]:
            key = m.key.encode()
            known = partitions.get(m.topic)
            if known is None:
                # as aiokafka's own _partition lists them (the same set, the same order)
                known = list(await self.producer.partitions_for(m.topic))
                partitions[m.topic] = known
            future: Awaitable[object] = await self.producer.send(
                m.topic, m.value, key=key, partition=default_partition(key, known)
            )
            return future

        await publish_all(send, messages)


async def publish_all(
    send: Callable[[Outgoing], Awaitable[Awaitable[object]]], messages: Sequence[Outgoing]
) -> None:
    """Hand every message to the producer first, then await all acknowledgements together.

    Raises `RefusedMessagesError` for the messages the broker refused for what
    they are, once every other one was acknowledged; the first transient
    failure is raised as it is (the caller retries, or answers 503).
    """
    pending = []
    refused: list[tuple[Outgoing, str]] = []
    for m in messages:
        try:
            pending.append((m, await send(m)))
        except Exception as error:
            if not is_permanent_kafka_error(error):
                raise
            refused.append((m, _reason(error)))
    if pending:
        results = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
        transient: BaseException | None = None
        for (m, _), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                if is_permanent_kafka_error(result):
                    refused.append((m, _reason(result)))
                elif transient is None:
                    transient = result
        if transient is not None:
            raise transient
    if refused:
        raise RefusedMessagesError(refused)


def _reason(error: BaseException) -> str:
    return f"broker refused the message: {type(error).__name__}: {error}"
