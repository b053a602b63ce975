"""Prometheus metrics of the worker and of the collector, one registry per process.

Every metric lives in a `CollectorRegistry` passed in (never the global
default), so tests and two apps in one process do not clash. Conventions: one
`leadpulse_` prefix, base units (`_seconds`), `_total` on counters,
histograms (not summaries) so they aggregate across processes, and labels
from small fixed sets only (stage, step, partition, reason class): never a
lead id, an e-mail or an event id. README.md's "Metrics" lists every metric;
a test keeps the two in sync.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client import generate_latest as _generate_latest

from leadpulse.streams.observability.report import Report
from leadpulse.streams.store import Commit, LeadStore, Snapshot, Watermark
from leadpulse.streams.store.models import Fence

__all__ = [
    "CONTENT_TYPE_LATEST",
    "DEAD_LETTER_REASONS",
    "CollectorMetrics",
    "DeliveryMetrics",
    "MeasuredStore",
    "WorkerMetrics",
    "exposition",
]

DEAD_LETTER_REASONS = (
    "decode",
    "corrupt_state",
    "refused_message",
    "permanent_error",
    "unknown_error",
)
"""Reason classes of dead letters: a record that does not decode, a lead whose stored
state this release cannot read, a decided message the broker refuses, a record that
failed permanently otherwise, a record an unexpected error kept failing on."""

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
"""Seconds; from milliseconds (a live stream) to an hour (a backlog after an outage)."""
CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
"""Seconds of one Redis call or one HTTP request."""

# the text format shows each counter's and histogram's `_created` timestamp as a gauge
# family of its own: noise next to every series, and a gauge named like no convention
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it untyped

ENDPOINT_KINDS = ("call", "batch", "other")
"""Collector request kinds: one message (/v1/track ...), /v1/batch, anything else."""


def exposition(registry: CollectorRegistry) -> bytes:
    """The registry in Prometheus' text format (serve it as `CONTENT_TYPE_LATEST`)."""
    return _generate_latest(registry)


class WorkerMetrics:
    """What one scoring worker counts and times."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.consumed = Counter(
            "leadpulse_events_consumed_total",
            "Records read from the events topic and handed to the scorer.",
            registry=r,
        )
        self.scored = Counter(
            "leadpulse_events_scored_total", "Events applied to a lead's state.", registry=r
        )
        self.duplicates = Counter(
            "leadpulse_events_duplicate_total",
            "Events skipped because their event id was applied already.",
            registry=r,
        )
        self.dead_letters = Counter(
            "leadpulse_dead_letters_total",
            "Messages sent to the dead-letter topic, by reason class.",
            ["reason"],
            registry=r,
        )
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason=reason)
        self.transitions = Counter(
            "leadpulse_transitions_total",
            "Stage transitions published, by from and to stage.",
            ["from_stage", "to_stage"],
            registry=r,
        )
        self.handoffs = Counter(
            "leadpulse_handoffs_total", "MQL-to-SAL handoffs published.", registry=r
        )
        self.published = Counter(
            "leadpulse_messages_published_total",
            "Transitions and handoffs the broker acknowledged.",
            registry=r,
        )
        self.outbox_replayed = Counter(
            "leadpulse_outbox_replayed_total",
            "Messages republished from outboxes an earlier publish left pending.",
            registry=r,
        )
        self.batch_seconds = Histogram(
            "leadpulse_batch_seconds",
            "Seconds to score one batch (decode, apply, persist, publish, record progress).",
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.event_latency = Histogram(
            "leadpulse_event_to_decision_seconds",
            "Seconds from a transition's causing event time to its publication.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.record_latency = Histogram(
            "leadpulse_record_to_decision_seconds",
            "Seconds from the Kafka record time of a transition's causing event to its "
            "publication.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.redis_seconds = Histogram(
            "leadpulse_redis_call_seconds",
            "Seconds of one lead-store call (one or a few pipelined Redis round trips).",
            ["call"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "leadpulse_redis_errors_total",
            "Lead-store calls that raised, by call.",
            ["call"],
            registry=r,
        )
        self.retries = Counter(
            "leadpulse_retries_total",
            "Retries after a transient failure, by pipeline step.",
            ["step"],
            registry=r,
        )
        self.unknown_errors = Counter(
            "leadpulse_unknown_errors_total",
            "Errors neither transient nor permanent (a bug, an inner retry that gave up), by "
            "pipeline step; retried a few times, then the record is dead-lettered.",
            ["step"],
            registry=r,
        )
        self.sweep_seconds = Histogram(
            "leadpulse_sweep_seconds",
            "Seconds of one decay sweep of the owned partitions.",
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.swept = Counter(
            "leadpulse_leads_swept_total",
            "Due leads the decay sweeper evaluated.",
            registry=r,
        )
        self.outbox_pending = Gauge(
            "leadpulse_outbox_pending_leads",
            "Leads of the assigned partitions with messages waiting in their outbox "
            "(the store's pending index at the last scrape; an upper bound).",
            registry=r,
        )
        self.stale_watermarks = Gauge(
            "leadpulse_stale_watermarks",
            "Partitions left out of the last sweep bound: their watermark was not live "
            "(caught up or moving) for LEADPULSE_WATERMARK_STALE_AFTER, or the partition "
            "no longer exists.",
            registry=r,
        )
        self.assigned = Gauge(
            "leadpulse_assigned_partitions",
            "Events-topic partitions assigned to this worker.",
            registry=r,
        )
        self.lag_messages = Gauge(
            "leadpulse_consumer_lag_messages",
            "Records of a partition not processed yet: end offset minus position. "
            "Approximate on Tansu, which reports the end offset as the first offset "
            "of the last batch + 1 (reads low by up to one producer batch).",
            ["partition"],
            registry=r,
        )
        self.lag_seconds = Gauge(
            "leadpulse_consumer_lag_seconds",
            "Seconds a partition lags in event time: now minus its watermark "
            "(0 when caught up; absent until a lagging partition processed a record).",
            ["partition"],
            registry=r,
        )

    def scored_batch(self, records: int, report: Report, seconds: float, now: float) -> None:
        """A batch was scored: its counts, its duration, its transitions' latencies."""
        self.consumed.inc(records)
        self.batch_seconds.observe(seconds)
        self.add(report)
        for t in report.transitions:
            if t.event_id is None:
                continue  # decided by decay, not by an event
            self.event_latency.observe(max(0.0, now - t.occurred_at.timestamp()))
            at = report.record_times.get(t.transition_id)
            if at is not None:
                self.record_latency.observe(max(0.0, now - at))

    def swept_once(self, report: Report, seconds: float) -> None:
        self.sweep_seconds.observe(seconds)
        self.swept.inc(report.swept)
        self.add(report)

    def replayed(self, report: Report) -> None:
        self.outbox_replayed.inc(report.published)
        self.add(report)

    def add(self, report: Report) -> None:
        self.scored.inc(report.scored)
        self.duplicates.inc(report.duplicates)
        self.published.inc(report.published)
        for t in report.transitions:
            self.transitions.labels(from_stage=t.from_stage, to_stage=t.to_stage).inc()
            if t.is_handoff:
                self.handoffs.inc()

    def dead_lettered(self, reason: str, count: int) -> None:
        """`count` letters of one reason class (`DEAD_LETTER_REASONS`) were sent."""
        self.dead_letters.labels(reason=reason).inc(count)

    def retried(self, step: str) -> None:
        self.retries.labels(step=step.replace(" ", "_")).inc()

    def unknown_error(self, step: str) -> None:
        self.unknown_errors.labels(step=step.replace(" ", "_")).inc()

    def lag(
        self,
        positions: Mapping[int, int | None],
        highwater: Callable[[int], int | None],
        watermarks: Mapping[int, float],
        now: float,
    ) -> None:
        """Set the lag gauges of the assigned partitions (dropping revoked ones)."""
        self.assigned.set(len(positions))
        self.lag_messages.clear()
        self.lag_seconds.clear()
        for partition, position in positions.items():
            label = str(partition)
            high = highwater(partition)
            if high is not None:
                self.lag_messages.labels(partition=label).set(max(0, high - (position or 0)))
            mark = watermarks.get(partition)
            if mark:
                self.lag_seconds.labels(partition=label).set(max(0.0, now - mark))


class MeasuredStore:
    """A `LeadStore` that times each call the pipeline makes and counts the ones that raise.

    The store boundary, not every Redis command: one call is one or a few
    pipelined round trips. Everything not listed here is passed through.
    """

    def __init__(self, store: LeadStore, metrics: WorkerMetrics) -> None:
        self._store = store
        self._metrics = metrics
        self.partitions = store.partitions

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _timed(self, call: str, work: Any) -> Any:
        started = time.perf_counter()
        try:
            return await work
        except Exception:
            self._metrics.redis_errors.labels(call=call).inc()
            raise
        finally:
            self._metrics.redis_seconds.labels(call=call).observe(time.perf_counter() - started)

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        result: dict[str, Snapshot] = await self._timed("snapshot", self._store.snapshot(wanted))
        return result

    async def peek(self, subjects: Collection[str]) -> dict[str, Snapshot]:
        result: dict[str, Snapshot] = await self._timed("peek", self._store.peek(subjects))
        return result

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        result: set[str] = await self._timed("commit", self._store.commit(commits))
        return result

    async def index_due(self, due_at: Mapping[str, float | None]) -> None:
        await self._timed("index_due", self._store.index_due(due_at))

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        await self._timed("clear_outbox", self._store.clear_outbox(published))

    async def pending_outboxes(
        self, shards: Collection[int]
    ) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        entries = self._store.pending_outboxes(shards).__aiter__()
        while True:
            try:
                entry = await self._timed("pending_outboxes", entries.__anext__())
            except StopAsyncIteration:
                return
            yield entry

    async def pending_count(self, shards: Collection[int]) -> int:
        result: int = await self._timed("pending_count", self._store.pending_count(shards))
        return result

    async def due(self, now: float, limit: int, shards: Collection[int]) -> dict[str, float]:
        result: dict[str, float] = await self._timed("due", self._store.due(now, limit, shards))
        return result

    async def detach(self, links: Sequence[tuple[str, str]]) -> list[bytes | None]:
        result: list[bytes | None] = await self._timed("detach", self._store.detach(links))
        return result

    async def forget_detached(self, anonymous_ids: Collection[str]) -> None:
        await self._timed("forget_detached", self._store.forget_detached(anonymous_ids))

    async def record_progress(self, topic: str, offsets: Mapping[int, int]) -> None:
        await self._timed("record_progress", self._store.record_progress(topic, offsets))

    async def progress(self, topic: str) -> dict[int, int]:
        result: dict[int, int] = await self._timed("progress", self._store.progress(topic))
        return result

    async def fence(self, topic: str) -> Fence | None:
        result: Fence | None = await self._timed("fence", self._store.fence(topic))
        return result

    async def set_fence(self, topic: str, fence: Fence | None) -> None:
        await self._timed("set_fence", self._store.set_fence(topic, fence))

    async def publish_watermarks(self, topic: str, marks: Mapping[int, Watermark]) -> None:
        await self._timed("publish_watermarks", self._store.publish_watermarks(topic, marks))

    async def watermarks(self, topic: str) -> dict[int, Watermark]:
        result: dict[int, Watermark] = await self._timed(
            "watermarks", self._store.watermarks(topic)
        )
        return result

    async def ping(self) -> None:
        await self._timed("ping", self._store.ping())

    async def close(self) -> None:
        await self._store.close()


class CollectorMetrics:
    """What the collector counts and times."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.requests = Counter(
            "leadpulse_collector_requests_total",
            "HTTP requests to the Segment endpoints, by kind (call, batch, other) and status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.accepted = Counter(
            "leadpulse_collector_events_accepted_total",
            "Events the broker acknowledged on the events topic.",
            registry=r,
        )
        self.rejected = Counter(
            "leadpulse_collector_messages_rejected_total",
            "Messages rejected (invalid or refused by the broker) and dead-lettered.",
            registry=r,
        )
        self.request_seconds = Histogram(
            "leadpulse_collector_request_seconds",
            "Seconds to answer one request to the Segment endpoints, by kind.",
            ["endpoint"],
            buckets=CALL_BUCKETS,
            registry=r,
        )

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        kind = endpoint if endpoint in ENDPOINT_KINDS else "other"
        self.requests.labels(endpoint=kind, status=str(status)).inc()
        self.request_seconds.labels(endpoint=kind).observe(seconds)


DELIVERY_OUTCOMES = ("2xx", "3xx", "4xx", "5xx", "410", "429", "timeout", "error", "refused")
"""How one delivery attempt ended: the status class (410 and 429 apart), or no answer."""
DELIVERY_STATUSES = ("delivered", "dead_lettered")
"""How a message's delivery to one destination ended."""


class DeliveryMetrics:
    """What the deliverer counts and times; `destination` is a name from the destinations file."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.consumed = Counter(
            "leadpulse_delivery_messages_consumed_total",
            "Handoffs and transitions the deliverer read, by kind (handoffs, transitions).",
            ["kind"],
            registry=r,
        )
        self.deliveries = Counter(
            "leadpulse_deliveries_total",
            "Messages whose delivery to a destination ended, by destination and status "
            "(delivered, dead_lettered).",
            ["destination", "status"],
            registry=r,
        )
        self.attempts = Counter(
            "leadpulse_delivery_attempts_total",
            "HTTP attempts, by destination and outcome (2xx, 3xx, 4xx, 5xx, 410, 429, "
            "timeout, error, refused).",
            ["destination", "outcome"],
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "leadpulse_delivery_attempt_seconds",
            "Seconds of one HTTP attempt, by destination.",
            ["destination"],
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "leadpulse_delivery_latency_seconds",
            "Seconds from a message's Kafka record time to its successful delivery.",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            "leadpulse_delivery_pending_messages",
            "Messages waiting for a first attempt or a retry, by destination.",
            ["destination"],
            registry=r,
        )
        self.dead_letters = Counter(
            "leadpulse_delivery_dead_letters_total",
            "Exhausted deliveries sent to the deliveries DLQ, by destination.",
            ["destination"],
            registry=r,
        )
        self.disabled = Gauge(
            "leadpulse_destination_disabled",
            "1 while a destination is disabled (it answered 410 Gone), else 0.",
            ["destination"],
            registry=r,
        )

    def destination(self, name: str) -> None:
        """Create the series of one destination at zero, so dashboards see it before traffic."""
        for status in DELIVERY_STATUSES:
            self.deliveries.labels(destination=name, status=status)
        self.dead_letters.labels(destination=name)
        self.pending.labels(destination=name).set(0)
        self.disabled.labels(destination=name).set(0)

    def attempted(self, name: str, outcome: str, seconds: float) -> None:
        self.attempts.labels(destination=name, outcome=outcome).inc()
        self.attempt_seconds.labels(destination=name).observe(seconds)
