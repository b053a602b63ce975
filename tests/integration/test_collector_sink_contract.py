"""The collector's sink port: what `MemorySink` (the fake) and `KafkaSink` both promise.

One test body, run against both: the fake the component tests and the fuzz
campaign rely on must behave as the real sink does on the embedded stack.
The broker away comes in three forms: nothing listening (refused at once), a
listener that never answers (only the timeout ends the wait), and a broker
that served the sink and then stopped (a private Tansu, not the shared one).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kafka import KafkaConsumer

from leadpulse.streams.collector.sink import (
    RECONNECT_EVERY,
    BrokerUnavailableError,
    KafkaSink,
    MemorySink,
)
from leadpulse.streams.dev.devstack import TansuBroker, create_topics, free_port
from leadpulse.streams.errors import TransientError
from leadpulse.streams.kafka.publisher import Outgoing
from leadpulse.streams.settings import Settings

N = 500
TIMEOUT = 1.0
"""collector_produce_timeout of the sinks whose broker is away."""
Record = tuple[str, bytes]


@dataclass
class Port:
    """A sink under test, how to read back what it stored, and sinks whose broker is away.

    `unreachable`: sinks that never reached their broker. `losing` has reached
    its broker and published to `losing_topic`; `lose()` makes that broker go away.
    """

    sink: Any
    topic: str
    read: Callable[[int], Awaitable[list[Record]]]
    unreachable: list[Any]
    losing: Any
    losing_topic: str
    lose: Callable[[], Awaitable[None]]


def read_kafka(settings: Settings, topic: str) -> Callable[[int], Awaitable[list[Record]]]:
    def read(count: int, timeout: float = 30.0) -> list[Record]:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=300,
        )
        records: list[Record] = []
        deadline = time.monotonic() + timeout
        try:
            while len(records) < count and time.monotonic() < deadline:
                records.extend((m.key.decode(), m.value) for m in consumer)
        finally:
            consumer.close()
        return records

    async def read_async(count: int) -> list[Record]:
        return await asyncio.to_thread(read, count)

    return read_async


@pytest.fixture(params=["memory", "kafka"])
async def port(request: pytest.FixtureRequest) -> AsyncIterator[Port]:
    if request.param == "memory":
        sink, broken, losing = MemorySink(), MemorySink(), MemorySink()
        broken.unavailable = True

        async def read(count: int) -> list[Record]:
            return [(m.key, m.value) for m in sink.messages if m.topic == "collector.contract"]

        async def lose() -> None:
            losing.unavailable = True

        yield Port(sink, "collector.contract", read, [broken], losing, "lost", lose)
        return
    stack = request.getfixturevalue("stack")
    topic = request.getfixturevalue("make_topic")("collector", partitions=3)
    settings = Settings(broker=f"kafka://{stack.bootstrap}", collector_produce_timeout=10.0)
    away = {"collector_produce_timeout": TIMEOUT}
    with contextlib.ExitStack() as resources:
        hole = resources.enter_context(socket.create_server(("127.0.0.1", 0), backlog=64))
        private = TansuBroker(free_port(), stop_timeout=0.5)  # memory storage: nothing to flush
        await asyncio.to_thread(private.start)
        resources.callback(private.stop)
        create_topics(private.bootstrap, ["lost"], 1)
        sink = KafkaSink(settings)
        unreachable = [
            KafkaSink(Settings(broker=f"kafka://127.0.0.1:{free_port()}", **away)),  # refused
            KafkaSink(Settings(broker=f"kafka://127.0.0.1:{hole.getsockname()[1]}", **away)),
        ]
        losing = KafkaSink(Settings(broker=f"kafka://{private.bootstrap}", **away))

        async def lose_private() -> None:
            await asyncio.to_thread(private.stop)

        try:
            yield Port(
                sink, topic, read_kafka(settings, topic), unreachable, losing, "lost", lose_private
            )
        finally:
            for each in [sink, *unreachable, losing]:
                await asyncio.wait_for(each.close(), 15)  # closing must not hang either


async def served(sink: Any, message: Outgoing, within: float = 30.0) -> None:
    """Publish once the broker takes it: a fresh broker's first produce may outlast TIMEOUT."""
    deadline = time.monotonic() + within
    while True:
        try:
            await sink.publish([message])
        except BrokerUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(RECONNECT_EVERY)
        else:
            return


async def test_the_sink_contract(port: Port) -> None:
    sink, topic = port.sink, port.topic
    await sink.start()
    # -- everything published is stored, keys kept, in order per key --------------------------
    messages = [Outgoing(topic, f"lead-{i % 17}", f"value-{i}".encode()) for i in range(N)]
    await sink.publish(messages[:1])
    await sink.publish(messages[1:])
    await sink.publish([])
    assert sink.connected
    records = await port.read(N)
    assert sorted(records) == sorted((m.key, m.value) for m in messages)
    for key in {m.key for m in messages}:
        assert [v for k, v in records if k == key] == [m.value for m in messages if m.key == key]

    # -- keys are UTF-8 text: one that cannot be encoded is the caller's bug, not a 503 ----
    with pytest.raises(UnicodeEncodeError):
        await sink.publish([Outgoing(topic, "lead-\ud800", b"bad key")])
    assert not [r for r in await port.read(N) if r[1] == b"bad key"]

    # -- a sink whose broker is away raises BrokerUnavailableError (a 503), without hanging --
    for broken in port.unreachable:
        await broken.start()  # never raises: requests answer 503 until the broker is back
        assert not broken.connected
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError) as caught:
            await broken.publish(messages[:10])
        assert isinstance(caught.value, TransientError)
        assert time.monotonic() - started < TIMEOUT + 2.0
        # and again at once, without another attempt, within RECONNECT_EVERY (an attempt
        # at the listener that never answers would last TIMEOUT)
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError):
            await broken.publish(messages[:10])
        assert time.monotonic() - started < min(TIMEOUT, RECONNECT_EVERY) / 2
        assert not broken.connected
        # once an attempt is due again, concurrent requests share it: one waits, not each in turn
        await asyncio.sleep(RECONNECT_EVERY)
        started = time.monotonic()
        answers = await asyncio.gather(
            *(broken.publish(messages[:1]) for _ in range(5)), return_exceptions=True
        )
        assert all(isinstance(a, BrokerUnavailableError) for a in answers), answers
        assert time.monotonic() - started < TIMEOUT + 2.0

    # -- a broker that goes away after the sink reached it ------------------------------------
    losing = port.losing
    await losing.start()
    await served(losing, Outgoing(port.losing_topic, "lead-1", b"before"))
    assert losing.connected
    await port.lose()
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(BrokerUnavailableError):
            await losing.publish([Outgoing(port.losing_topic, "lead-1", b"after")])
        assert time.monotonic() - started < TIMEOUT + 2.0
        assert not losing.connected

    # the healthy sink is not affected
    await sink.publish(messages[:1])
    assert len(await port.read(N + 1)) == N + 1
