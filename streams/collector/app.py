"""The collector's HTTP side: Segment endpoints, write-key auth, CORS, answers SDKs act on.

Answers, and what the SDKs do with them: 200 once every accepted message of
the request (and every dead letter) was acknowledged by Kafka, with a JSON
body naming rejected messages; 400 / 413 / 415 for a body that can never be
taken (SDKs drop it); 401 for a missing or unknown write key, without
detail; 429 with ``Retry-After`` past a source's rate, 503 with
``Retry-After`` while Kafka is away or too many requests are in flight
(SDKs wait and retry). Bad input never causes a 500.

Work follows authentication: a Basic-auth key (the SDKs') is checked before
the body is read; a request naming its key in the body (analytics.js) is
read only up to `PRE_AUTH_BYTES` until a known key is seen there. The
process (`streams.processes.collector`) serves `application` with /health and
/ready on the public port, and /metrics and /stats on a metrics port of their
own.

Every error body carries ``code`` and ``message``: the SDKs read both, and
rudder-sdk-python takes a body without ``code`` for a network error, so it
retried a 401 or a 400 for minutes instead of giving up.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CollectorRegistry

from leadpulse.schemas.codec import DecodeError, dead_letter, encode
from leadpulse.streams.collector.admission import InFlight, RateLimits
from leadpulse.streams.collector.auth import Source, WriteKeys, basic_username
from leadpulse.streams.collector.body import BodyError, decoded, decoded_head, parsed
from leadpulse.streams.collector.intake import (
    BATCH_PATHS,
    CALL_PATHS,
    Intake,
    Limits,
    Rejected,
    messages_of,
    take,
    write_key_in,
    write_keys_named,
)
from leadpulse.streams.errors import TransientError
from leadpulse.streams.kafka.publisher import Outgoing, RefusedMessagesError
from leadpulse.streams.observability.metrics import CollectorMetrics, exposition
from leadpulse.streams.settings import Settings

log = logging.getLogger("leadpulse.collector")

RETRY_AFTER_SECONDS = 5
"""Retry-After of a 503 while Kafka is away."""
BUSY_RETRY_AFTER_SECONDS = 1
"""Retry-After of a 503 while `collector_max_in_flight` requests are being worked on."""
PRE_AUTH_BYTES = 64 * 1024
"""How much of a body without a Basic-auth key is read before a known key must be seen."""
ERROR_CODES: Mapping[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    503: "unavailable",
}
"""The ``code`` of an error answer, by status."""
RUNNER_OPTIONS: Mapping[str, Any] = {"auto_decompress": False, "access_log": None}
"""How the app must be run (by the process and by tests): aiohttp's own decompression is off, it
would inflate a gzip body before the size limit could apply (`body.decoded`
bounds it instead)."""
ALLOWED_HEADERS = "Content-Type, Authorization, Content-Encoding, X-Retry-Count"
Clock = Callable[[], datetime]


class Sink(Protocol):
    """Where accepted events and dead letters go; returns once all were acknowledged."""

    async def publish(self, messages: Sequence[Outgoing]) -> None: ...


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    """What the handlers need from the settings, resolved once."""

    events_topic: str
    dlq_topic: str
    limits: Limits
    max_body_bytes: int
    cors_origins: frozenset[str]
    events: Mapping[str, str]
    max_in_flight: int = 256
    rate: float | None = None
    """Requests per second per source; None: no limit."""
    burst: int = 1

    @classmethod
    def from_settings(cls, settings: Settings, events: Mapping[str, str]) -> CollectorConfig:
        origins = frozenset(o.strip() for o in settings.collector_cors_origins.split(",") if o)
        return cls(
            events_topic=settings.events_topic,
            dlq_topic=settings.dlq_topic,
            limits=Limits(
                max_message_bytes=settings.collector_max_message_bytes,
                max_batch_messages=settings.collector_max_batch_messages,
            ),
            max_body_bytes=settings.collector_max_batch_bytes,
            cors_origins=origins,
            events=events,
            max_in_flight=settings.collector_max_in_flight,
            rate=settings.collector_rate,
            burst=settings.collector_burst,
        )


class Collector:
    """The request handlers over a `Sink`; `stats` counts what happened, for /stats.

    `metrics` (default: in a registry of this collector's own) are what
    `scrape` exposes. `monotonic` times the rate limits.
    """

    def __init__(
        self,
        config: CollectorConfig,
        keys: WriteKeys,
        sink: Sink,
        *,
        clock: Clock | None = None,
        connected: Callable[[], bool] | None = None,
        metrics: CollectorMetrics | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.keys = keys
        self.sink = sink
        self.clock = clock or (lambda: datetime.now(UTC))
        self.connected = connected or (lambda: True)
        self.stats: Counter[str] = Counter()
        self.metrics = metrics or CollectorMetrics(CollectorRegistry())
        self.in_flight = InFlight(config.max_in_flight)
        self.rates = (
            None if config.rate is None else RateLimits(config.rate, config.burst, monotonic)
        )

    def application(self) -> web.Application:
        """The Segment API (the process adds /health and /ready to it, nothing else)."""
        app = web.Application(middlewares=[self._cors])
        app.router.add_post("/v1/{endpoint}", self.receive)
        app.router.add_post("/{endpoint}", self.receive)
        # preflights of the API paths only: a catch-all would answer a POST to any
        # other path 405 (a route exists, for OPTIONS) where 404 is meant
        app.router.add_route("OPTIONS", "/v1/{endpoint}", self.preflight)
        app.router.add_route("OPTIONS", "/{endpoint}", self.preflight)
        return app

    async def receive(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        if self.in_flight.enter():
            try:
                response = await self._receive(request)
            finally:
                self.in_flight.leave()
        else:
            response = self._answer(
                503,
                {"success": False, "error": "too many requests in flight, retry later"},
                headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
            )
        endpoint = request.match_info["endpoint"]
        kind = "call" if endpoint in CALL_PATHS else "batch" if endpoint in BATCH_PATHS else "other"
        self.metrics.request(kind, response.status, time.perf_counter() - started)
        return response

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        if endpoint not in CALL_PATHS and endpoint not in BATCH_PATHS:
            return self._answer(404, {"success": False, "error": f"no endpoint /{endpoint}"})
        received_at = self.clock()
        presented = basic_username(request.headers.get("Authorization"))
        source = self.keys.source_of(presented)
        if presented is not None and source is None:
            return self._unauthorized()
        if source is not None and (limited := self._rate_limited(source)) is not None:
            return limited
        try:
            # a single call's body is its message: Segment's per-message limit, as a 413
            if endpoint in CALL_PATHS:
                limit = self.config.limits.max_message_bytes
            else:
                limit = self.config.max_body_bytes
            _too_long(request, limit)
            encoding = request.headers.get("Content-Encoding")
            if source is not None:
                body = await _read(request, limit)
            else:
                head, whole = await _read_head(request, min(limit, PRE_AUTH_BYTES))
                if not whole and not self._names_a_known_key(head, encoding):
                    return self._unauthorized()
                body = head if whole else await _read(request, limit, head)
            document = parsed(decoded(body, encoding, limit))
            if source is None:
                source = self.keys.source_of(write_key_in(document))
                if source is None:
                    return self._unauthorized()
                if (limited := self._rate_limited(source)) is not None:
                    return limited
            messages = messages_of(document, endpoint, self.config.limits)
        except BodyError as error:
            return self._answer(error.status, {"success": False, "error": error.message})
        intake = take(
            messages,
            source=source,
            received_at=received_at,
            events=self.config.events,
            limits=self.config.limits,
        )
        try:
            await self._publish(intake, source, received_at)
        except TransientError as error:
            log.warning("answering 503: %s", error)
            self.stats["unavailable"] += 1
            return self._answer(
                503,
                {"success": False, "error": "event store unavailable, retry later"},
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.stats["accepted"] += len(intake.accepted)
        self.stats["rejected"] += len(intake.rejected)
        self.metrics.accepted.inc(len(intake.accepted))
        self.metrics.rejected.inc(len(intake.rejected))
        status = 400 if intake.rejected and endpoint in CALL_PATHS else 200
        summary = intake.summary()
        if status == 400:
            summary["success"] = False
        return self._answer(status, summary)

    def _names_a_known_key(self, head: bytes, encoding: str | None) -> bool:
        """The start of a body names a configured write key (BodyError if it cannot be read)."""
        text = decoded_head(head, encoding, PRE_AUTH_BYTES)
        return any(self.keys.source_of(key) is not None for key in write_keys_named(text))

    def _rate_limited(self, source: Source) -> web.Response | None:
        """The 429 of a source past its rate, else None (the request goes on)."""
        if self.rates is None:
            return None
        wait = self.rates.retry_after(source)
        if wait is None:
            return None
        return self._answer(
            429,
            {"success": False, "error": f"rate limit of source {source.name!r}, retry later"},
            headers={"Retry-After": str(wait)},
        )

    async def _publish(self, intake: Intake, source: Source, received_at: datetime) -> None:
        """Events and dead letters in one publish; messages Kafka refuses become rejects."""
        topic = self.config.events_topic
        outgoing = [Outgoing(topic, a.key, a.value) for a in intake.accepted]
        letters = [self._letter(r, source, received_at) for r in intake.rejected]
        try:
            await self.sink.publish(outgoing + letters)
        except RefusedMessagesError as error:
            refused = {id(m): reason for m, reason in error.refused}
            kept = []
            for accepted, message in zip(intake.accepted, outgoing, strict=True):
                reason = refused.get(id(message))
                if reason is None:
                    kept.append(accepted)
                    continue
                rejected = Rejected(-1, accepted.event_id, [reason], accepted.value)
                intake.rejected.append(rejected)
                await self._publish_quietly([self._letter(rejected, source, received_at)])
            intake.accepted = kept

    def _letter(self, rejected: Rejected, source: Source, received_at: datetime) -> Outgoing:
        letter = dead_letter(
            rejected.raw,
            DecodeError(rejected.errors),
            key=None,
            topic=f"collector:{source.name}",
            partition=-1,
            offset=-1,
            failed_at=received_at,
        )
        key = rejected.message_id or source.name
        # a messageId may hold lone surrogates (JSON escapes); a Kafka key is UTF-8
        key = key.encode("utf-8", "replace").decode("utf-8")
        return Outgoing(self.config.dlq_topic, key, encode(letter))

    async def _publish_quietly(self, messages: Sequence[Outgoing]) -> None:
        try:
            await self.sink.publish(messages)
        except Exception as error:  # noqa: BLE001 -- a refused letter is logged, not retried
            log.warning("dead letter not stored: %s", error)

    async def preflight(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=204)

    async def health(self) -> tuple[int, dict[str, Any]]:
        broker = "connected" if self.connected() else "unreachable"
        return 200, {"status": "ok", "broker": broker}

    async def ready(self) -> tuple[int, dict[str, Any]]:
        if self.connected():
            return 200, {"status": "ready", "broker": "connected"}
        return 503, _error_body(503, {"success": False, "error": "broker unreachable"})

    async def counts(self) -> tuple[int, dict[str, Any]]:
        """/stats: requests by status, messages accepted and rejected."""
        return 200, dict(sorted(self.stats.items()))

    async def scrape(self) -> bytes:
        return exposition(self.metrics.registry)

    def _unauthorized(self) -> web.Response:
        return self._answer(401, {"success": False, "error": "unauthorized"})

    def _answer(
        self, status: int, body: Mapping[str, object], headers: Mapping[str, str] | None = None
    ) -> web.Response:
        self.stats[f"status_{status}"] += 1
        return web.Response(
            status=status,
            text=json.dumps(_error_body(status, body)),
            content_type="application/json",
            headers=headers,
        )

    @web.middleware
    async def _cors(
        self,
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        response = await handler(request)
        origin = request.headers.get("Origin")
        allowed = self.config.cors_origins
        if origin is not None and ("*" in allowed or origin in allowed):
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            # analytics.js honours Retry-After on a 503 only if it may read it
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"
            if request.method == "OPTIONS":
                response.headers["Access-Control-Allow-Methods"] = "POST, OPTIONS"
                response.headers["Access-Control-Allow-Headers"] = request.headers.get(
                    "Access-Control-Request-Headers", ALLOWED_HEADERS
                )
                response.headers["Access-Control-Max-Age"] = "86400"
        return response


def _error_body(status: int, body: Mapping[str, object]) -> dict[str, object]:
    """`body`, and for an error the ``code`` and ``message`` every SDK reads."""
    if status < 400:
        return dict(body)
    message = body.get("error") or "message rejected: see rejected"
    return {"code": ERROR_CODES.get(status, "error"), "message": message, **body}


def _too_long(request: web.Request, limit: int) -> None:
    """413 at once for a Content-Length past `limit`: nothing of the body is read."""
    length = request.content_length
    if length is not None and length > limit:
        raise BodyError(413, f"body larger than {limit} bytes")


async def _read_head(request: web.Request, size: int) -> tuple[bytes, bool]:
    """Up to `size` bytes of the body, and whether they are all of it."""
    chunks: list[bytes] = []
    read = 0
    while read < size:
        chunk = await request.content.read(size - read)
        if not chunk:
            return b"".join(chunks), True
        chunks.append(chunk)
        read += len(chunk)
    return b"".join(chunks), request.content.at_eof()


async def _read(request: web.Request, limit: int, head: bytes = b"") -> bytes:
    """The raw body (after `head`, already read), no further than `limit` bytes (413 past it)."""
    chunks: list[bytes] = [head]
    size = len(head)
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise BodyError(413, f"body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
