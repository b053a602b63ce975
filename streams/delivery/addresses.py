"""Which hosts and addresses outbound delivery may reach: deny by default.

Two gates, both required:

- the name gate: a host is contacted only if the destinations file's
  `allow_hosts` names it (exactly, or under a ``*.example.com`` entry; an IP
  literal only exactly, never under a wildcard, and being listed it is the
  address contacted: nothing more to check);
- the address gate: every address a host name resolves to must be globally
  routable (`ipaddress`'s ``is_global``, and not multicast), or the host is
  refused. An IPv6 address that carries an IPv4 address (IPv4-mapped,
  IPv4-compatible, 6to4, NAT64, Teredo's server and client) must carry
  routable ones too: ``2002:a9fe:a9fe::`` is ``is_global`` but reaches
  169.254.169.254. An address that is not routable passes only when it is
  listed itself: naming ``crm.internal`` does not open 10.0.0.0/8.

Literals are read the way the resolver reads them (``getaddrinfo`` with
``AI_NUMERICHOST``): ``2130706433``, ``0177.0.0.1``, ``0x7f.0.0.1`` and
``127.1`` are all 127.0.0.1, so no spelling slips past as a "name".
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from leadpulse.streams.errors import PermanentError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")
_NAMED = (
    (ipaddress.IPv4Network("100.64.0.0/10"), "shared address space (RFC 6598)"),
    # not `is_global` only from Python 3.13 on
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "local-use NAT64 (RFC 8215)"),
)
_KINDS = (
    ("unspecified", "is_unspecified"),
    ("loopback", "is_loopback"),
    ("link-local", "is_link_local"),
    ("multicast", "is_multicast"),
    ("private", "is_private"),
    ("reserved", "is_reserved"),
)


class RefusedError(PermanentError):
    """Nothing was sent, and sending again cannot help: the host or an address is not allowed."""

    def __init__(self, reason: str, *, host: str) -> None:
        super().__init__(reason, subject=host)
        self.host = host


def ip_of(host: str) -> IPAddress | None:
    """The address `host` is a literal of, read as the resolver reads it; None for a name."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not text or "\x00" in text:
        return None
    try:
        found = socket.getaddrinfo(text, None, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (OSError, UnicodeError, ValueError):
        return None
    return ipaddress.ip_address(str(found[0][4][0]))


def embedded_ipv4(address: IPAddress) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses an IPv6 address carries, each with how it carries it."""
    if not isinstance(address, ipaddress.IPv6Address):
        return []
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.ipv4_mapped is not None:
        found.append(("IPv4-mapped", address.ipv4_mapped))
    if address.sixtofour is not None:
        found.append(("6to4", address.sixtofour))
    if address.teredo is not None:
        server, client = address.teredo
        found.extend((("Teredo server", server), ("Teredo client", client)))
    low = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address in _NAT64:
        found.append(("NAT64", low))
    elif address in _IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are not
        found.append(("IPv4-compatible", low))
    return found


def unroutable(address: IPAddress) -> str | None:
    """Why `address` is not a globally routable unicast address, or None if it is."""
    for how, inner in embedded_ipv4(address):
        why = _why_not_routable(inner)
        if why is not None:
            return f"carries {inner} via {how}: {why}"
    return _why_not_routable(address)


def _why_not_routable(address: IPAddress) -> str | None:
    for network, kind in _NAMED:
        if address.version == network.version and address in network:
            return f"{kind}, not globally routable"
    if address.is_global and not address.is_multicast:
        return None
    kind = next((k for k, test in _KINDS if getattr(address, test)), "special-purpose")
    return f"{kind}, not globally routable"


def canonical_host(host: str) -> str:
    """How a host is compared with `allow_hosts`: lower case, no final dot, a literal as
    its address (``[::FFFF:7f00:1]`` -> ``::ffff:7f00:1``)."""
    address = ip_of(host)
    return str(address) if address is not None else host.lower().rstrip(".")


def host_allowed(host: str, allow_hosts: frozenset[str]) -> bool:
    """`host` is listed, or is a name under a listed ``*.domain``."""
    host = canonical_host(host)
    if host in allow_hosts:
        return True
    if ip_of(host) is not None:
        return False  # "*.0.0.1" must not open 127.0.0.1
    return any(
        entry.startswith("*.") and host.endswith(entry[1:]) and host != entry[2:]
        for entry in allow_hosts
    )


def check_host(host: str, allow_hosts: frozenset[str]) -> None:
    """The name gate: RefusedError unless `host` is listed (a listed literal needs no
    more: it is the address contacted)."""
    if not host_allowed(host, allow_hosts):
        raise RefusedError(f"host {host!r} is not in allow_hosts", host=host)
    if ip_of(host) is None and (":" in host or host.replace(".", "").isdigit()):
        # aiohttp takes such a host for an address and skips the resolver
        raise RefusedError(f"host {host!r} looks like an IP address but is not one", host=host)


def check_addresses(host: str, addresses: Iterable[str], allow_hosts: frozenset[str]) -> None:
    """The address gate: RefusedError naming the host, the first refused address and why."""
    listed_literal = ip_of(host) is not None and canonical_host(host) in allow_hosts
    for text in addresses:
        address = ip_of(text)
        if address is None:
            raise RefusedError(f"host {host!r} resolves to {text!r}, not an address", host=host)
        if listed_literal or str(address) in allow_hosts:
            continue
        why = unroutable(address)
        if why is not None:
            raise RefusedError(
                f"host {host!r} resolves to {address} ({why}); "
                f"refused unless {address} is in allow_hosts",
                host=host,
            )


__all__ = [
    "IPAddress",
    "RefusedError",
    "canonical_host",
    "check_addresses",
    "check_host",
    "embedded_ipv4",
    "host_allowed",
    "ip_of",
    "unroutable",
]
