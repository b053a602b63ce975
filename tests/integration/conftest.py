"""Integration fixtures on the session's embedded stack (`stack`, tests/conftest.py).

The stack starts once (about half a second) and is always stopped, even when
tests fail or the run is interrupted. Tests share the broker and the Redis
server, so they isolate themselves with unique topic names (``make_topic``)
and unique key prefixes (``key_prefix``).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from leadpulse.streams.dev.devstack import DevStack, RedisServer, TansuBroker, create_topics
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from tests.integration.harness import start_worker, worker_settings

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/integration needs the stack: mark it so `-m` selects it."""
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def tansu(stack: DevStack) -> TansuBroker:
    return stack.kafka


@pytest.fixture(scope="session")
def redis_server(stack: DevStack) -> RedisServer:
    return stack.redis


@pytest.fixture(scope="session")
def bootstrap(stack: DevStack) -> str:
    return stack.bootstrap


@pytest.fixture(scope="session")
def redis_url(stack: DevStack) -> str:
    return stack.redis_url


@pytest.fixture
def unique_suffix() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
def make_topic(bootstrap: str, unique_suffix: str) -> Callable[..., str]:
    """Create a topic private to this test: ``make_topic("events", partitions=4)``."""
    counter = iter(range(1_000_000))

    def _make(base: str = "t", partitions: int = 1) -> str:
        name = f"{base}.{unique_suffix}.{next(counter)}"
        create_topics(bootstrap, [name], partitions)
        return name

    return _make


@pytest.fixture
def key_prefix(unique_suffix: str) -> str:
    """A Redis key prefix private to this test."""
    return f"test:{unique_suffix}:"


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    # explicit retry: redis 8.1.0's asyncio from_url() has none (a restart would fail a call)
    client = aioredis.Redis.from_url(
        redis_url, retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=1.0), 5)
    )
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def running(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, WorkerProcess]]:
    """One worker per test module, with topics and a consumer group of its own."""
    workdir = tmp_path_factory.mktemp("worker")
    settings = worker_settings(stack, workdir)
    worker = start_worker(settings, workdir / "worker.log")
    try:
        yield settings, worker
    finally:
        worker.stop()
