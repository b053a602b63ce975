"""Outbound safety: the allow-list, internal address ranges, Retry-After parsing."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from streams.delivery.outbound import (
    GuardedResolver,
    RefusedError,
    check_host,
    internal,
    retry_after,
)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "::1",
        "fd00::1",
        "fe80::1",
        "0.0.0.0",
        "224.0.0.1",
        "::ffff:127.0.0.1",
    ],
)
def test_internal_ranges(address: str) -> None:
    assert internal(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"])
def test_public_addresses(address: str) -> None:
    assert not internal(ipaddress.ip_address(address))


def test_hosts_outside_the_allow_list_are_refused() -> None:
    check_host("crm.example.com", frozenset({"crm.example.com"}))
    with pytest.raises(RefusedError, match="not in allow_hosts"):
        check_host("evil.example.com", frozenset({"crm.example.com"}))


async def test_a_name_resolving_to_loopback_is_refused_unless_listed() -> None:
    """`localhost` resolves to 127.0.0.1: allowed as a name, refused as an address."""
    resolver = GuardedResolver(frozenset({"localhost"}))
    try:
        with pytest.raises(RefusedError, match="internal addresses are refused"):
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
