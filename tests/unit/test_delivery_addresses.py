"""The outbound address check: only globally routable addresses, unless listed.

Every literal is read as the resolver reads it, every IPv6 form that carries
an IPv4 address is judged by the address it carries, and a name is refused
if any address it resolves to is refused.
"""

from __future__ import annotations

import socket

import pytest

from leadpulse.streams.delivery.addresses import RefusedError, check_host, ip_of, unroutable
from leadpulse.streams.delivery.outbound import Answer, GuardedResolver
from leadpulse.streams.errors import PermanentError
from tests.dns_table import DnsTable

NOT_ROUTABLE = ", not globally routable"
TEREDO_PRIVATE_CLIENT = "[2001:0:4136:e378:8000:63bf:f5ff:fffe]"
"""Teredo, server 65.54.227.120, client 10.0.0.1 (stored XOR 0xffffffff as f5ff:fffe)."""


@pytest.mark.parametrize(
    ("host", "address", "why"),
    [
        ("100.100.100.200", "100.100.100.200", "shared address space (RFC 6598)" + NOT_ROUTABLE),
        ("169.254.169.254", "169.254.169.254", "link-local" + NOT_ROUTABLE),
        ("10.0.0.1", "10.0.0.1", "private" + NOT_ROUTABLE),
        ("127.0.0.1", "127.0.0.1", "loopback" + NOT_ROUTABLE),
        ("0.0.0.0", "0.0.0.0", "unspecified" + NOT_ROUTABLE),
        ("[::]", "::", "unspecified" + NOT_ROUTABLE),
        ("[::1]", "::1", "loopback" + NOT_ROUTABLE),
        (
            "[::ffff:127.0.0.1]",
            "::ffff:7f00:1",
            "carries 127.0.0.1 via IPv4-mapped: loopback" + NOT_ROUTABLE,
        ),
        (
            "[::ffff:169.254.169.254]",
            "::ffff:a9fe:a9fe",
            "carries 169.254.169.254 via IPv4-mapped: link-local" + NOT_ROUTABLE,
        ),
        (
            "[2002:a9fe:a9fe::]",
            "2002:a9fe:a9fe::",
            "carries 169.254.169.254 via 6to4: link-local" + NOT_ROUTABLE,
        ),
        (
            "[64:ff9b::a9fe:a9fe]",
            "64:ff9b::a9fe:a9fe",
            "carries 169.254.169.254 via NAT64: link-local" + NOT_ROUTABLE,
        ),
        (
            TEREDO_PRIVATE_CLIENT,
            "2001:0:4136:e378:8000:63bf:f5ff:fffe",
            "carries 10.0.0.1 via Teredo client: private" + NOT_ROUTABLE,
        ),
        (
            "[::7f00:1]",
            "::7f00:1",
            "carries 127.0.0.1 via IPv4-compatible: loopback" + NOT_ROUTABLE,
        ),
        ("2130706433", "127.0.0.1", "loopback" + NOT_ROUTABLE),
        ("0177.0.0.1", "127.0.0.1", "loopback" + NOT_ROUTABLE),
        ("0x7f.0.0.1", "127.0.0.1", "loopback" + NOT_ROUTABLE),
        ("127.1", "127.0.0.1", "loopback" + NOT_ROUTABLE),
        ("[fc00::1]", "fc00::1", "private" + NOT_ROUTABLE),
        ("[fe80::1]", "fe80::1", "link-local" + NOT_ROUTABLE),
        ("224.0.0.1", "224.0.0.1", "multicast" + NOT_ROUTABLE),
        ("[64:ff9b:1::808:808]", "64:ff9b:1::808:808", "local-use NAT64 (RFC 8215)" + NOT_ROUTABLE),
        ("8.8.8.8", "8.8.8.8", None),
        ("1.1.1.1", "1.1.1.1", None),
        ("[2606:4700:4700::1111]", "2606:4700:4700::1111", None),
        ("[::ffff:8.8.8.8]", "::ffff:808:808", None),
        ("[2002:808:808::]", "2002:808:808::", None),
        ("[64:ff9b::808:808]", "64:ff9b::808:808", None),
    ],
)
def test_only_globally_routable_addresses_pass(host: str, address: str, why: str | None) -> None:
    parsed = ip_of(host)
    assert str(parsed) == address
    assert parsed is not None
    assert unroutable(parsed) == why


@pytest.mark.parametrize("name", ["crm.example.com", "1.2.3.4.5", "08.0.0.1", "256.1", "", "[]"])
def test_names_and_malformed_literals_are_not_addresses(name: str) -> None:
    assert ip_of(name) is None


async def resolved(allow: set[str], host: str, addresses: list[str]) -> list[str]:
    resolver = GuardedResolver(frozenset(allow), DnsTable({host: addresses}))
    return [r["host"] for r in await resolver.resolve(host, 443, socket.AF_UNSPEC)]


async def test_a_name_with_one_internal_address_among_several_is_refused() -> None:
    with pytest.raises(RefusedError) as info:
        await resolved({"crm.example.com"}, "crm.example.com", ["8.8.8.8", "10.0.0.5"])
    assert str(info.value) == (
        "host 'crm.example.com' resolves to 10.0.0.5 (private, not globally routable); "
        "refused unless 10.0.0.5 is in allow_hosts"
    )
    assert info.value.host == "crm.example.com"
    with pytest.raises(RefusedError, match=r"resolves to 2002:a9fe:a9fe:: \(carries 169"):
        await resolved({"crm.example.com"}, "crm.example.com", ["1.1.1.1", "2002:a9fe:a9fe::"])


async def test_a_name_with_only_global_addresses_passes_with_all_of_them() -> None:
    found = await resolved(
        {"crm.example.com"}, "crm.example.com", ["8.8.8.8", "2606:4700:4700::1111"]
    )
    assert found == ["8.8.8.8", "2606:4700:4700::1111"]


async def test_a_listed_address_passes_and_listing_the_name_opens_nothing() -> None:
    allow = {"crm.internal", "10.0.0.5"}
    found = await resolved(allow, "crm.internal", ["8.8.8.8", "10.0.0.5"])
    assert found == ["8.8.8.8", "10.0.0.5"]
    with pytest.raises(RefusedError, match=r"resolves to 10\.0\.0\.6 "):
        await resolved(allow, "crm.internal", ["10.0.0.5", "10.0.0.6"])


def test_an_allow_listed_literal_passes() -> None:
    check_host("10.0.0.1", frozenset({"10.0.0.1"}))
    check_host("::1", frozenset({"::1"}))
    check_host("2002:a9fe:a9fe::", frozenset({"2002:a9fe:a9fe::"}))


@pytest.mark.parametrize(
    ("host", "allow", "message"),
    [
        ("evil.example.com", {"crm.example.com"}, "host 'evil.example.com' is not in allow_hosts"),
        ("2130706433", {"crm.example.com"}, "host '2130706433' is not in allow_hosts"),
        ("127.0.0.1", {"*.0.0.1"}, "host '127.0.0.1' is not in allow_hosts"),
        ("0177.0.0.1", {"*.0.1"}, "host '0177.0.0.1' is not in allow_hosts"),
        ("8.8.8.8", {"crm.example.com"}, "host '8.8.8.8' is not in allow_hosts"),
        ("1.2.3.4.5", {"1.2.3.4.5"}, "host '1.2.3.4.5' looks like an IP address but is not one"),
    ],
)
def test_the_name_gate(host: str, allow: set[str], message: str) -> None:
    with pytest.raises(RefusedError) as info:
        check_host(host, frozenset(allow))
    assert str(info.value) == message


def test_a_listed_literal_is_the_address_in_any_spelling() -> None:
    """The listing names an address; the resolver reads ``127.1`` as that address."""
    check_host("127.1", frozenset({"127.0.0.1"}))
    check_host("[::FFFF:127.0.0.1]", frozenset({"::ffff:7f00:1"}))


def test_a_refusal_is_permanent() -> None:
    assert issubclass(RefusedError, PermanentError)
    assert Answer(None, "refused: host 'x' is not in allow_hosts", 0.0).permanent
    assert not Answer(None, "timeout after 10s", 10.0).permanent
    assert not Answer(None, "connection failed: Cannot connect to host x:443", 0.1).permanent
    assert not Answer(500, "HTTP 500", 0.1).permanent
