"""The Redis client details: hiredis packing as redis-py packs, window lookups."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

from streams.settings import Settings
from streams.store_redis import connect, id_digest, in_window

COMMANDS: list[tuple[Any, ...]] = [
    ("PING",),
    ("SCRIPT LOAD", "return 1"),
    (b"CLIENT SETINFO", b"LIB-NAME", "redis-py"),
    ("EVALSHA", "f" * 40, 3, "lp:{a}:state", "lp:{a}:alias", "lp:{a}:outbox", b"1"),
    ("ZADD", "lp:due:{3}", 1763900000.125, "lead-\u00e9"),
    ("HSET", "k", "f", b"\x00\xff" * 40_000, "n", -7),
    ("SET", "k", ""),
]


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("redis://127.0.0.1:1/0", Connection),
        ("rediss://127.0.0.1:1/0", SSLConnection),
        ("unix:///tmp/none.sock", UnixDomainSocketConnection),
    ],
)
def test_connect_keeps_the_scheme_connection_class(url: str, base: type) -> None:
    pool = connect(Settings(redis_url=url)).connection_pool
    assert issubclass(pool.connection_class, base)
    assert pool.connection_class is not base


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    fast = connect(Settings(redis_url="redis://127.0.0.1:1/0")).connection_pool.connection_class
    mine = fast(host="127.0.0.1", port=1)
    theirs = Connection(host="127.0.0.1", port=1)
    assert b"".join(mine.pack_command(*command)) == b"".join(theirs.pack_command(*command))
    assert b"".join(mine.pack_commands([command, command])) == b"".join(
        theirs.pack_commands([command, command])
    )


def test_window_membership_only_counts_aligned_entries() -> None:
    first, second = id_digest("e1"), id_digest("e2")
    window = first + second
    straddling = first[6:] + second[:6]
    assert in_window(first, window)
    assert in_window(second, window)
    assert not in_window(straddling, window)
    assert in_window(straddling, window + straddling)  # found again further on, aligned
    assert not in_window(id_digest("e3"), window)
    assert not in_window(first, b"")
