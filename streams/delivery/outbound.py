"""Outbound HTTP that cannot be turned against the network it runs in.

- Only hosts in the destinations file's `allow_hosts` are contacted (the file
  is checked at load; `check_host` again per request).
- The host is resolved by `GuardedResolver`, which drops loopback, private,
  link-local, multicast, reserved and unspecified addresses unless that host
  or that IP literal is itself in `allow_hosts`: the connection goes to an
  address that was checked, so DNS rebinding cannot slip past.
- No redirects (a 3xx is a failed attempt), a total timeout per destination,
  a bounded request body, and at most `MAX_RESPONSE_BYTES` of the answer read.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from streams.delivery.config import host_allowed, ip_literal

MAX_RESPONSE_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024
USER_AGENT = "leadpulse-deliver/1"


class RefusedError(Exception):
    """The request was not sent: the host or its addresses are not allowed."""


def internal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Loopback, private, link-local, multicast, reserved or unspecified."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return bool(
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


def check_host(host: str, allow_hosts: frozenset[str]) -> None:
    """RefusedError unless `host` is allowed; an IP literal must also not be internal."""
    if not host_allowed(host, allow_hosts):
        raise RefusedError(f"host {host!r} is not in allow_hosts")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default resolver, then drops addresses that are not allowed."""

    def __init__(self, allow_hosts: frozenset[str]) -> None:
        self.allow_hosts = allow_hosts
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        check_host(host, self.allow_hosts)
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._address_allowed(host, r["host"])]
        if not allowed:
            shown = ", ".join(sorted({r["host"] for r in results})) or "nothing"
            raise RefusedError(
                f"host {host!r} resolves to {shown}: internal addresses are refused "
                "unless listed in allow_hosts"
            )
        return allowed

    def _address_allowed(self, host: str, address: str) -> bool:
        ip = ip_literal(address)
        if ip is None:
            return False
        if not internal(ip):
            return True
        # an internal address only when the host is itself that IP literal, listed,
        # or the address is listed: naming crm.internal alone does not open 10.0.0.0/8
        literal = ip_literal(host)
        return (literal is not None and host in self.allow_hosts) or address in self.allow_hosts

    async def close(self) -> None:
        await self._inner.close()


def new_session(allow_hosts: frozenset[str], connections: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_hosts), limit=connections, ttl_dns_cache=30
    )
    return aiohttp.ClientSession(
        connector=connector,
        headers={"User-Agent": USER_AGENT},
        auto_decompress=False,
        cookie_jar=aiohttp.DummyCookieJar(),
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """How one attempt ended: the status (None without an answer) and what went wrong."""

    status: int | None
    error: str
    seconds: float
    retry_after: float | None = None
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> str:
        """The metric label: 2xx, 3xx, 4xx, 5xx, 410, 429, timeout, error, refused."""
        if self.status is None:
            return (
                "timeout"
                if self.error.startswith("timeout")
                else "refused"
                if self.error.startswith("refused")
                else "error"
            )
        if self.status in (410, 429):
            return str(self.status)
        return f"{self.status // 100}xx"


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta seconds or an HTTP date), else None."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,  # noqa: ASYNC109 -- the destination's HTTP timeout
) -> Answer:
    """POST once; never raises for what the network or the receiver did."""
    started = time.perf_counter()
    if len(body) > MAX_BODY_BYTES:
        return Answer(None, f"refused: body larger than {MAX_BODY_BYTES} bytes", 0.0)
    try:
        async with session.post(
            url,
            data=body,
            headers={"Content-Type": "application/json", **headers},
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as response:
            answer = await response.content.read(MAX_RESPONSE_BYTES)
            status = response.status
            wait = None
            if status in (429, 503):
                wait = retry_after(response.headers.get("Retry-After"), time.time())
            error = "" if 200 <= status < 300 else f"HTTP {status}"
            if 300 <= status < 400:
                error = f"HTTP {status}: redirects are not followed"
            return Answer(status, error, time.perf_counter() - started, wait, answer)
    except RefusedError as error:
        return Answer(None, f"refused: {error}", time.perf_counter() - started)
    except TimeoutError:
        return Answer(None, f"timeout after {timeout:g}s", time.perf_counter() - started)
    except aiohttp.ClientConnectorError as error:
        cause = error.os_error
        if isinstance(cause, RefusedError):
            return Answer(None, f"refused: {cause}", time.perf_counter() - started)
        return Answer(None, f"connection failed: {error}", time.perf_counter() - started)
    except (aiohttp.ClientError, OSError) as error:
        return Answer(None, f"{type(error).__name__}: {error}", time.perf_counter() - started)


def now_utc() -> datetime:
    return datetime.now(UTC)
