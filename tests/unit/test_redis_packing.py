"""Redis wire details: hiredis packs as redis-py would, seen-window lookups."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection

from leadpulse.scoring import LeadState
from leadpulse.streams.store import decode_state, encode_state
from leadpulse.streams.store.redis import id_digest, in_window, pack
from leadpulse.streams.store.redis.wire import lead_fields

COMMANDS: list[tuple[Any, ...]] = [
    ("EVALSHA", "f" * 40, 3, "lp:{a}:state", "lp:{a}:alias", "lp:{a}:outbox", b"1"),
    ("EVALSHA", "f" * 40, 3, "k1", "k2", "k3", 7, b"\x00\xff" * 40_000, b"", 12_000, "t:1", b"m"),
    ("ZADD", "lp:due:{3}", 1763900000.125, "lead-\u00e9", 1e-300, "b"),
    ("ZREM", "lp:due:{3}", "a", "b"),
    ("ZRANGEBYSCORE", "lp:due:{0}", "-inf", 1763900001.5, "WITHSCORES", "LIMIT", 0, 1000),
    ("HDEL", "lp:{a}:outbox", "t:0000000001", "h:0000000001"),
    ("SET", "k", ""),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_same_bytes_as_redis_py(command: tuple[Any, ...]) -> None:
    """What the store sends (hiredis) is what redis-py would have sent."""
    theirs = Connection(host="127.0.0.1", port=1)
    assert pack([command]) == b"".join(theirs.pack_command(*command))
    assert pack([command, command]) == b"".join(theirs.pack_commands([command, command]))


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


def test_bulk_loaded_lead_fields_keep_the_account() -> None:
    state = LeadState(lead_id="lead-a", account_id="acme", account_traits={"name": "Acme"})
    fields = lead_fields(3, encode_state(state), ["e1", "e2"])
    assert fields["v"] == b"3"
    assert decode_state(fields["s"]) == state
    assert fields["w"] == id_digest("e1") + id_digest("e2")
