"""Outbound safety with the system's own resolver, and Retry-After parsing (the address
rules themselves: test_delivery_addresses.py)."""

from __future__ import annotations

import socket

import pytest

from leadpulse.streams.delivery.addresses import RefusedError
from leadpulse.streams.delivery.outbound import GuardedResolver, retry_after


async def test_a_name_resolving_to_loopback_is_refused_unless_listed() -> None:
    """`localhost` resolves to 127.0.0.1: allowed as a name, refused as an address."""
    resolver = GuardedResolver(frozenset({"localhost"}))
    try:
        with pytest.raises(RefusedError, match=r"resolves to 127\.0\.0\.1 \(loopback, not glob"):
            await resolver.resolve("localhost", 80, socket.AF_INET)
    finally:
        await resolver.close()
    resolver = GuardedResolver(frozenset({"localhost", "127.0.0.1"}))
    try:
        found = await resolver.resolve("localhost", 80, socket.AF_INET)
        assert {r["host"] for r in found} == {"127.0.0.1"}
        with pytest.raises(RefusedError, match="not in allow_hosts"):
            await resolver.resolve("example.org", 80, socket.AF_INET)
    finally:
        await resolver.close()


def test_retry_after_seconds_and_dates() -> None:
    assert retry_after("7", 1000.0) == 7
    assert retry_after("Thu, 01 Jan 1970 00:20:00 GMT", 1000.0) == 200
    assert retry_after("soon", 1000.0) is None
    assert retry_after(None, 1000.0) is None
