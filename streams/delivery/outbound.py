"""Outbound HTTP that cannot be turned against the network it runs in.

- Every host and address is checked by `streams.delivery.addresses` (listed
  in `allow_hosts`, globally routable): the host before each request
  (`check_host`), and each address it resolves to by `GuardedResolver`, so the
  connection goes to an address that was checked and DNS rebinding cannot
  slip past. A refusal is permanent: the answer's `permanent` says so.
- No redirects (a 3xx is a failed attempt), a total timeout per destination,
  a bounded request body, and at most `MAX_RESPONSE_BYTES` of the answer read.
- An error text never carries the URL's path or query (a Slack webhook's
  path is its secret): see `streams.delivery.config.redact`.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from leadpulse.streams.delivery.addresses import RefusedError, check_addresses, check_host
from leadpulse.streams.delivery.config import redact

MAX_RESPONSE_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024
USER_AGENT = "leadpulse-deliver/1"


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` (aiohttp's default resolver unless given), then refuses the
    host if any address it resolves to is not allowed."""

    def __init__(self, allow_hosts: frozenset[str], inner: AbstractResolver | None = None) -> None:
        self.allow_hosts = allow_hosts
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        check_host(host, self.allow_hosts)
        results = await self._inner.resolve(host, port, family)
        if not results:
            raise RefusedError(f"host {host!r} resolves to nothing", host=host)
        check_addresses(host, [r["host"] for r in results], self.allow_hosts)
        return results

    async def close(self) -> None:
        await self._inner.close()


def new_session(
    allow_hosts: frozenset[str], connections: int, resolver: AbstractResolver | None = None
) -> aiohttp.ClientSession:
    """A session whose every connection is guarded; `resolver` answers DNS questions
    (aiohttp's default resolver unless given)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_hosts, resolver), limit=connections, ttl_dns_cache=30
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
    def permanent(self) -> bool:
        """Refused before anything was sent (an address not allowed, a body too large):
        the same request would be refused again, so it is not retried."""
        return self.outcome == "refused"

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
    """POST once; never raises for what the network or the receiver did. An error text
    never shows the URL's path or query (aiohttp's errors may quote the URL)."""
    started = time.perf_counter()

    def failed(error: str) -> Answer:
        return Answer(None, redact(error, url, _as_sent(url)), time.perf_counter() - started)

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
        return failed(f"refused: {error}")
    except TimeoutError:
        return failed(f"timeout after {timeout:g}s")
    except aiohttp.ClientConnectorError as error:
        cause = error.os_error
        if isinstance(cause, RefusedError):
            return failed(f"refused: {cause}")
        return failed(f"connection failed: {error}")
    except (aiohttp.ClientError, OSError) as error:
        return failed(f"{type(error).__name__}: {error}")


def _as_sent(url: str) -> str:
    """`url` as aiohttp quotes it in its errors (normalised by yarl)."""
    try:
        return str(URL(url))
    except (TypeError, ValueError):
        return url


def now_utc() -> datetime:
    return datetime.now(UTC)
