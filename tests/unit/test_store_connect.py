"""The worker's Redis client is bounded: timeouts and pool size come from Settings."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis

from leadpulse.streams.settings import Settings
from leadpulse.streams.store import MemoryLeadStore
from leadpulse.streams.store.redis import DEFAULT_TIMEOUT, RedisLeadStore, connect


async def test_connect_takes_timeouts_and_pool_size_from_settings() -> None:
    settings = Settings(
        redis_url="redis://127.0.0.1:1/0",
        redis_socket_timeout=1.5,
        redis_connect_timeout=2.5,
        redis_max_connections=7,
    )
    client = connect(settings)
    try:
        options = client.connection_pool.connection_kwargs
        assert (options["socket_timeout"], options["socket_connect_timeout"]) == (1.5, 2.5)
        assert client.connection_pool.max_connections == 7
        assert options["retry"] is not None
        assert RedisLeadStore(client).timeout == 1.5
    finally:
        await client.aclose()


async def test_defaults_are_bounded() -> None:
    client = connect(Settings(redis_url="redis://127.0.0.1:1/0"))
    try:
        options = client.connection_pool.connection_kwargs
        assert options["socket_timeout"] == Settings().redis_socket_timeout == DEFAULT_TIMEOUT
        assert client.connection_pool.max_connections == Settings().redis_max_connections
    finally:
        await client.aclose()


async def test_a_client_without_a_socket_timeout_is_still_bounded() -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
    try:
        assert client.connection_pool.connection_kwargs.get("socket_timeout") is None
        assert RedisLeadStore(client).timeout == DEFAULT_TIMEOUT
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    "options",
    [{"partitions": 0}, {"seen_window": 0}, {"anonymous_ttl": 0}, {"known_ttl": -1.0}],
    ids=str,
)
def test_constructors_reject_nonsense(options: dict[str, Any]) -> None:
    client = aioredis.Redis.from_url("redis://127.0.0.1:1/0")
    with pytest.raises(ValueError, match=next(iter(options))):
        RedisLeadStore(client, **options)
    with pytest.raises(ValueError, match=next(iter(options))):
        MemoryLeadStore(**options)
