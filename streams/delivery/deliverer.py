"""The deliverer: handoffs (and transitions) from Kafka to every destination, at least once.

Flow: a plain aiokafka consumer of its own group reads the handoffs (and, if
a destination wants them, the transitions) topic; each record becomes one job
per destination that wants it, written to Redis (`JobStore.enqueue`) BEFORE
the offsets are committed. Per destination a loop claims due jobs and sends
them with bounded concurrency, so one slow or failing destination never delays
another. Success finishes the job (its id is remembered, a replay is not sent
again); a failure schedules the next attempt from the destination's
`retry_schedule` with +-10 % jitter (a 429/503's ``Retry-After`` instead,
bounded); after the last attempt the message goes to the deliveries DLQ as a
`DeliveryFailure` with every attempt. A request refused before it was sent (an
address that is not allowed, a body too large) goes there at once with that
reason: it would be refused again. A 410 disables the destination
(persisted in Redis): its jobs stay parked in Redis, new ones are still queued
behind it, nothing is sent until ``leadpulse deliver --enable NAME``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp

from leadpulse.schemas.codec import DecodeError, decode_handoff, decode_transition, encode
from leadpulse.schemas.delivery import DeliveryAttempt, DeliveryFailure
from leadpulse.schemas.messages import Handoff, StageTransition
from leadpulse.streams.delivery.addresses import RefusedError, check_host
from leadpulse.streams.delivery.config import Destination, Destinations
from leadpulse.streams.delivery.jobs import Job, JobStore
from leadpulse.streams.delivery.outbound import Answer, new_session, post
from leadpulse.streams.delivery.payloads import Message, json_body, message_id, slack_body
from leadpulse.streams.delivery.signing import sign_headers
from leadpulse.streams.kafka.publisher import Outgoing
from leadpulse.streams.observability.health import Health
from leadpulse.streams.observability.metrics import DeliveryMetrics

log = logging.getLogger("leadpulse.deliver")

JITTER = 0.1
"""Each scheduled delay is stretched or shrunk by up to this fraction."""
MAX_RETRY_AFTER = 3600.0
"""A receiver's Retry-After is honoured up to an hour."""
LEASE_EXTRA = 10.0
"""A claimed job is due again after its destination's timeout plus this (a crash mid-send)."""
IDLE_POLL = 1.0
"""Longest sleep of a destination loop with nothing due (it is woken for new jobs)."""
DISABLED_POLL = 5.0
GAUGE_EVERY = 2.0

Publish = Callable[[Sequence[Outgoing]], Awaitable[None]]


@dataclass
class Deliverer:
    """Queues messages for destinations and sends them (no Kafka consumer here)."""

    destinations: Destinations
    store: JobStore
    publish: Publish
    dlq_topic: str
    metrics: DeliveryMetrics
    health: Health = field(default_factory=Health)
    clock: Callable[[], float] = time.time
    jitter: Callable[[float, float], float] = random.uniform
    session: aiohttp.ClientSession | None = None
    _wake: dict[str, asyncio.Event] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for d in self.destinations.destinations:
            self.metrics.destination(d.name)
            self._wake[d.name] = asyncio.Event()

    # -- intake ------------------------------------------------------------------------

    def targets(self, kind: str, message: Message) -> list[Destination]:
        """The destinations that take this message.

        A destination that takes handoffs skips the MQL->SAL transition: the
        handoff is the same crossing (the same id) in its richer form.
        """
        chosen = []
        for d in self.destinations.destinations:
            if not d.wants(kind, message.grade):
                continue
            if (
                isinstance(message, StageTransition)
                and message.is_handoff
                and "handoffs" in d.messages
            ):
                continue
            chosen.append(d)
        return chosen

    async def accept(self, items: Sequence[tuple[str, Message, float]]) -> int:
        """Queue (kind, message, record time) for every destination that wants it."""
        now = self.clock()
        entries: list[tuple[str, Job, float]] = []
        woken: set[str] = set()
        for kind, message, record_time in items:
            text = encode(message).decode()
            for d in self.targets(kind, message):
                entries.append((d.name, Job(message_id(message), kind, text, record_time), now))
                woken.add(d.name)
        added = await self.store.enqueue(entries)
        for name in woken:
            self._wake[name].set()
        return added

    # -- sending -----------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """One loop per destination and the gauges, until `stop` is set."""
        own_session = self.session is None
        if self.session is None:
            total = sum(d.concurrency for d in self.destinations.destinations)
            self.session = new_session(self.destinations.allow_hosts, total)
        try:
            loops = [
                asyncio.create_task(self._loop(d, stop), name=f"deliver-{d.name}")
                for d in self.destinations.destinations
            ]
            loops.append(asyncio.create_task(self._gauges(stop), name="deliver-gauges"))
            try:
                await asyncio.gather(*loops)
            finally:
                for task in loops:
                    task.cancel()
                await asyncio.gather(*loops, return_exceptions=True)
        finally:
            if own_session:
                await self.session.close()
                self.session = None

    async def _loop(self, d: Destination, stop: asyncio.Event) -> None:
        inflight: set[asyncio.Task[None]] = set()
        wake = self._wake[d.name]
        lease = d.timeout + LEASE_EXTRA
        try:
            while not stop.is_set():
                try:
                    reason = await self.store.disabled(d.name)
                    if reason is not None:
                        self.metrics.disabled.labels(destination=d.name).set(1)
                        await _wait(stop, DISABLED_POLL)
                        continue
                    self.metrics.disabled.labels(destination=d.name).set(0)
                    wake.clear()  # set again by new jobs and by every finished attempt
                    free = d.concurrency - len(inflight)
                    claimed: list[Job] = []
                    if free > 0:
                        claimed = await self.store.claim(d.name, self.clock(), lease, free)
                        for job in claimed:
                            task = asyncio.create_task(self._attempt(d, job))
                            inflight.add(task)
                            task.add_done_callback(_finished(inflight, wake))
                    self.health.recovered(f"delivering to {d.name}")
                    if claimed and len(claimed) == free:
                        continue  # more may be due: claim again once a slot frees or now
                    delay = IDLE_POLL
                    if free > 0:
                        first = await self.store.next_due(d.name)
                        if first is not None:
                            delay = min(IDLE_POLL, max(0.0, first - self.clock()))
                    if delay > 0:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(wake.wait(), delay)
                except Exception as error:  # noqa: BLE001 -- Redis away: retry, report, go on
                    self.health.failed(f"delivering to {d.name}", error)
                    log.warning("destination %s: %s (retrying)", d.name, error)
                    await _wait(stop, 1.0)
        finally:
            if inflight:
                await asyncio.wait(inflight, timeout=d.timeout + 1)
            for task in inflight:
                task.cancel()

    async def _attempt(self, d: Destination, job: Job) -> None:
        try:
            await self._attempt_once(d, job)
        except Exception as error:  # noqa: BLE001 -- the lease brings the job back later
            self.health.failed(f"delivering to {d.name}", error)
            log.warning("destination %s, message %s: %s", d.name, job.webhook_id, error)

    async def _attempt_once(self, d: Destination, job: Job) -> None:
        message = _message(job)
        if len(job.attempts) >= len(d.retry_schedule):
            await self._dead_letter(d, job, message, "every attempt failed")
            return
        now = self.clock()
        answer = await self.send(d, message, now, job.webhook_id)
        self.metrics.attempted(d.name, answer.outcome, answer.seconds)
        job.attempts.append(
            {"at": now, "status": answer.status, "error": answer.error[:300], "s": answer.seconds}
        )
        if answer.ok:
            await self.store.finish(d.name, job.webhook_id, "ok")
            self.metrics.deliveries.labels(destination=d.name, status="delivered").inc()
            self.metrics.latency.labels(destination=d.name).observe(
                max(0.0, self.clock() - job.record_time)
            )
            return
        if answer.status == 410:
            reason = f"answered 410 Gone at {datetime.fromtimestamp(now, UTC).isoformat()}"
            await self.store.disable(d.name, reason)
            await self.store.reschedule(d.name, job, now)  # parked until re-enabled
            self.metrics.disabled.labels(destination=d.name).set(1)
            log.error("destination %s disabled: it %s; its messages wait", d.name, reason)
            return
        if answer.permanent:
            await self._dead_letter(d, job, message, answer.error)
            return
        if len(job.attempts) >= len(d.retry_schedule):
            await self._dead_letter(d, job, message, f"{len(job.attempts)} attempts failed")
            return
        delay = self.next_delay(d, len(job.attempts), answer)
        await self.store.reschedule(d.name, job, now + delay)
        log.info(
            "destination %s, message %s: attempt %d failed (%s); next in %.1fs",
            d.name,
            job.webhook_id,
            len(job.attempts),
            answer.error,
            delay,
        )

    def next_delay(self, d: Destination, attempts: int, answer: Answer) -> float:
        """Seconds before attempt `attempts` + 1: the schedule with jitter, or Retry-After."""
        if answer.retry_after is not None:
            return min(MAX_RETRY_AFTER, max(0.0, answer.retry_after))
        base = d.retry_schedule[attempts]
        return base * self.jitter(1 - JITTER, 1 + JITTER) if base > 0 else 0.0

    async def send(self, d: Destination, message: Message, now: float, webhook_id: str) -> Answer:
        if self.session is None:
            raise RuntimeError("the deliverer is not running (no HTTP session)")
        return await send(self.session, self.destinations.allow_hosts, d, message, now, webhook_id)

    async def _dead_letter(self, d: Destination, job: Job, message: Message, reason: str) -> None:
        failure = DeliveryFailure(
            destination=d.name,
            webhook_id=job.webhook_id,
            kind="handoffs" if isinstance(message, Handoff) else "transitions",
            lead_id=message.lead_id,
            reason=reason,
            failed_at=datetime.fromtimestamp(self.clock(), UTC),
            attempts=[
                DeliveryAttempt(
                    at=datetime.fromtimestamp(a["at"], UTC),
                    status=a["status"],
                    error=a["error"],
                    seconds=a.get("s", 0.0),
                )
                for a in job.attempts
            ],
            handoff=message if isinstance(message, Handoff) else None,
            transition=message if isinstance(message, StageTransition) else None,
        )
        await self.publish([Outgoing(self.dlq_topic, message.lead_id, encode(failure))])
        await self.store.finish(d.name, job.webhook_id, "dlq")
        self.metrics.deliveries.labels(destination=d.name, status="dead_lettered").inc()
        self.metrics.dead_letters.labels(destination=d.name).inc()
        log.warning(
            "destination %s, message %s: dead-lettered (%s)", d.name, job.webhook_id, reason
        )

    async def _gauges(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(Exception):
                for d in self.destinations.destinations:
                    count = await self.store.pending(d.name)
                    self.metrics.pending.labels(destination=d.name).set(count)
            await _wait(stop, GAUGE_EVERY)


async def send(  # noqa: PLR0917 -- one attempt's six inputs
    session: aiohttp.ClientSession,
    allow_hosts: frozenset[str],
    d: Destination,
    message: Message,
    now: float,
    webhook_id: str,
) -> Answer:
    """One signed POST of `message` to `d` (the webhook timestamp is `now`)."""
    try:
        check_host(d.host, allow_hosts)
    except RefusedError as error:
        return Answer(None, f"refused: {error}", 0.0)
    if d.format == "slack":
        body = slack_body(message, datetime.fromtimestamp(now, UTC))
    else:
        body = json_body(message)
    if d.keys:
        headers = sign_headers(d.keys, webhook_id, int(now), body)
    else:  # unsigned (a Slack webhook's URL is its secret); the id still de-duplicates
        headers = {"webhook-id": webhook_id, "webhook-timestamp": str(int(now))}
    return await post(session, d.url, body, headers, d.timeout)


def _message(job: Job) -> Message:
    if job.kind == "handoffs":
        return decode_handoff(job.message)
    return decode_transition(job.message, lenient=True)


def decode_record(kind: str, value: bytes) -> Message:
    """A handoff or transition record; DecodeError if it is neither."""
    if kind == "handoffs":
        return decode_handoff(value)
    return decode_transition(value, lenient=True)


def _finished(inflight: set[asyncio.Task[None]], wake: asyncio.Event) -> Callable[[Any], None]:
    def done(task: asyncio.Task[None]) -> None:
        inflight.discard(task)
        wake.set()

    return done


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


__all__ = ["DecodeError", "Deliverer", "decode_record", "send"]
