"""The embedded stack really works: Kafka clients, Redis, restart and clean shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from leadpulse.streams.dev.devstack import (
    DevStack,
    RedisServer,
    StackError,
    TansuBroker,
    create_topics,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _gone(pid: int) -> bool:
    """True when no process (or only a zombie) has this pid."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _wait_gone(pids: list[int], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.05)
    return all(_gone(p) for p in pids)


# --- Kafka -------------------------------------------------------------------------


async def test_aiokafka_produce_consume_with_group(
    bootstrap: str, make_topic: Callable[..., str], unique_suffix: str
) -> None:
    topic = make_topic("aio", partitions=4)
    sent = {f"k{i}".encode(): f"v{i}".encode() for i in range(20)}
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)  # not idempotent: Tansu
    await producer.start()
    try:
        for key, value in sent.items():
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"g-{unique_suffix}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=2000,  # Tansu joins after ~session_timeout/2, 1 s at least
        heartbeat_interval_ms=500,
    )
    await consumer.start()
    got: dict[bytes, bytes] = {}
    partitions: set[int] = set()
    try:
        async with asyncio.timeout(30):
            while len(got) < len(sent):
                batch = await consumer.getmany(timeout_ms=500)
                for tp, records in batch.items():
                    partitions.add(tp.partition)
                    for rec in records:
                        assert rec.key is not None
                        assert rec.value is not None
                        got[rec.key] = rec.value
        await consumer.commit()
        committed = [await consumer.committed(TopicPartition(topic, p)) for p in range(4)]
    finally:
        await consumer.stop()
    assert got == sent
    assert len(partitions) > 1  # keys spread over the 4 partitions
    assert sum(c or 0 for c in committed) == len(sent)


def test_kafka_python_produce_consume(bootstrap: str, make_topic: Callable[..., str]) -> None:
    topic = make_topic("kp", partitions=2)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1)
    try:
        futures = [producer.send(topic, key=b"k%d" % i, value=b"m%d" % i) for i in range(10)]
        producer.flush(timeout=10)
        metas = [f.get(timeout=10) for f in futures]
    finally:
        producer.close(timeout=5)
    assert {m.topic for m in metas} == {topic}

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,  # no group: plain assignment, no join wait
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,  # upper bound; we stop as soon as all arrived
    )
    values: list[bytes] = []
    try:
        for rec in consumer:
            values.append(rec.value)
            if len(values) == 10:
                break
    finally:
        consumer.close()
    values.sort()
    assert values == sorted(b"m%d" % i for i in range(10))


def test_create_topics_is_idempotent(bootstrap: str, unique_suffix: str) -> None:
    names = [f"idem.{unique_suffix}.a", f"idem.{unique_suffix}.b"]
    assert sorted(create_topics(bootstrap, names, 3)) == sorted(names)
    assert create_topics(bootstrap, names, 3) == []  # existing topics are fine
    assert create_topics(bootstrap, [names[0], f"idem.{unique_suffix}.c"], 3) == [
        f"idem.{unique_suffix}.c"
    ]
    with KafkaAdminClient(bootstrap_servers=bootstrap) as admin:
        described = admin.describe_topics(names)
    assert [len(t["partitions"]) for t in described] == [3, 3]


# --- Redis -------------------------------------------------------------------------

_INCR_ONCE = """
-- idempotent add: count an event id once
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  return redis.call('INCRBY', KEYS[2], ARGV[2])
end
return tonumber(redis.call('GET', KEYS[2]) or '0')
"""


async def test_redis_ping_set_get_evalsha(redis_client: aioredis.Redis, key_prefix: str) -> None:
    assert await redis_client.ping() is True
    await redis_client.set(f"{key_prefix}k", "v")
    assert await redis_client.get(f"{key_prefix}k") == b"v"
    info = await redis_client.info("server")
    assert int(str(info["redis_version"]).split(".")[0]) >= 7

    sha = await redis_client.script_load(_INCR_ONCE)
    keys = [f"{key_prefix}seen", f"{key_prefix}count"]
    assert await redis_client.evalsha(sha, 2, *keys, "e1", 5) == 5
    assert await redis_client.evalsha(sha, 2, *keys, "e1", 5) == 5  # same id: once
    assert await redis_client.evalsha(sha, 2, *keys, "e2", 3) == 8


def _retrying_client(url: str) -> aioredis.Redis:
    # redis 8.1.0: asyncio Redis.from_url() gets *no* retry (Redis(host=..., port=...)
    # and the sync client do), so without this the first command after a restart fails.
    return aioredis.Redis.from_url(
        url, retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), 5)
    )


async def test_redis_restart_keeps_port_and_client_reconnects() -> None:
    server = RedisServer()
    server.start()
    from_url = _retrying_client(server.url)
    by_host = aioredis.Redis(host="127.0.0.1", port=server.port)  # default retry
    try:
        port, pid = server.port, server.pid
        await from_url.set("before", "1")
        assert await by_host.ping() is True
        server.restart()  # main thread: keeps PR_SET_PDEATHSIG
        assert server.port == port
        assert server.pid != pid
        assert pid is not None
        assert _wait_gone([pid])
        # both pooled connections are dead; the clients reconnect on next use
        assert await from_url.ping() is True
        assert await by_host.ping() is True
        assert await from_url.get("before") is None  # no persistence by default
        await from_url.set("after", "2")
        assert await by_host.get("after") == b"2"
    finally:
        await from_url.aclose()
        await by_host.aclose()
        server.stop()


async def test_redis_restart_with_appendonly_keeps_data() -> None:
    server = RedisServer(appendonly=True)
    server.start()
    client = _retrying_client(server.url)
    try:
        await client.set("durable", "yes")
        server.restart()  # main thread: keeps PR_SET_PDEATHSIG
        assert await client.get("durable") == b"yes"
    finally:
        await client.aclose()
        server.stop()


def test_missing_redis_server_gives_install_hint() -> None:
    with pytest.raises(StackError, match="apt-get install redis-server"):
        RedisServer(executable="redis-server-that-does-not-exist").start()


def test_taken_port_is_a_clear_error(tansu: TansuBroker, redis_server: RedisServer) -> None:
    # a fixed port already used by someone else must fail, not "succeed" by probing them
    with pytest.raises(StackError, match="in use"):
        TansuBroker(redis_server.port, start_timeout=5).start()
    with pytest.raises(StackError, match="in use"):
        RedisServer(tansu.port, start_timeout=5).start()


# --- lifecycle ---------------------------------------------------------------------


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    dev = DevStack(topics={"leadpulse.events": 4}, workdir=tmp_path)
    with dev:
        info = dev.describe()
        assert info["kafka"] == dev.bootstrap
        assert info["redis"].startswith("redis://127.0.0.1:")
        pids = [dev.kafka.pid, dev.redis.pid]
        assert None not in pids
        assert not any(_gone(p) for p in pids if p is not None)
    assert _wait_gone([p for p in pids if p is not None], timeout=0.5)
    assert dev.kafka.pid is None
    assert dev.redis.pid is None
    dev.stop()  # idempotent


def test_servers_die_with_a_killed_parent(tmp_path: Path) -> None:
    """No orphans even when the Python process is SIGKILLed (PR_SET_PDEATHSIG)."""
    # workdir under tmp_path: a SIGKILLed parent cannot remove its own temp dirs
    script = textwrap.dedent(
        f"""
        import sys, time
        from leadpulse.streams.dev.devstack import DevStack
        dev = DevStack(workdir={str(tmp_path)!r}).start()
        print(dev.kafka.pid, dev.redis.pid, flush=True)
        time.sleep(60)
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2, line
        assert not any(_gone(p) for p in pids)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=5)
        assert _wait_gone(pids, timeout=5)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=5)
