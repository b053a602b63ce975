"""The worker's Prometheus metrics: names, types, labels, and what moves them.

A `Runtime` over a `MeasuredStore` (memory store) and a fake publisher scores
batches as the Faust agent hands them over; the registry is then read back
through the text format, as Prometheus scrapes it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from leadpulse.scoring import ScoringModel
from leadpulse.streams.observability.health import Health
from leadpulse.streams.observability.metrics import (
    DEAD_LETTER_REASONS,
    CollectorMetrics,
    DeliveryMetrics,
    MeasuredStore,
    WorkerMetrics,
    exposition,
)
from leadpulse.streams.observability.stats import Totals
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.pipeline.runtime import Runtime
from leadpulse.streams.store import Commit, MemoryLeadStore
from leadpulse.streams.store.redis import keys
from tests.component.conftest import T0, TP, Clock, FakeConsumer, FakePublisher, event, page

TOPIC = "leadpulse.events"
README = Path(__file__).parents[2] / "README.md"
LABELS = {
    "reason",
    "from_stage",
    "to_stage",
    "step",
    "call",
    "partition",
    "endpoint",
    "status",
    "destination",
    "outcome",
    "kind",
}
"""Every label name a leadpulse metric may carry: small fixed sets only."""
ID_LIKE = re.compile(r"lead-|anon-|^e-|@|[0-9a-f]{8}-?[0-9a-f]{4}")


class NoSeekConsumer(FakeConsumer):
    async def seek(self, tp: Any, offset: int) -> None:
        raise AssertionError("nothing recorded: no seek expected")


def families(registry: CollectorRegistry) -> dict[str, Metric]:
    text = exposition(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(registry: CollectorRegistry, sample: str, **labels: str) -> float:
    for family in families(registry).values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    raise KeyError(f"{sample} {labels}")


def make(
    model: ScoringModel, highwater: dict[int, int]
) -> tuple[Runtime, WorkerMetrics, FakePublisher, Clock]:
    metrics = WorkerMetrics(CollectorRegistry())
    store = MeasuredStore(MemoryLeadStore(partitions=4), metrics)
    publisher = FakePublisher()
    clock = Clock(T0.timestamp() + 30)
    health = Health(clock=clock)
    processor = Processor(
        store,
        publisher,
        model,
        topics=Topics(),
        clock=clock,
        health=health,
        dead_lettered=metrics.dead_lettered,
    )
    runtime = Runtime(
        processor,
        store,
        TOPIC,
        totals=Totals(),
        health=health,
        stopped=lambda: False,
        highwater=highwater.get,
        clock=clock,
        on_fatal=lambda error: None,
        metrics=metrics,
    )
    return runtime, metrics, publisher, clock


def records(
    partition: int, start: int, bodies: Iterable[dict[str, Any] | bytes], timestamp: float
) -> list[Record]:
    return [
        Record(
            b"k",
            b if isinstance(b, bytes) else json.dumps(b).encode(),
            TOPIC,
            partition,
            start + n,
            timestamp=timestamp,
        )
        for n, b in enumerate(bodies)
    ]


def test_names_types_and_labels_follow_the_conventions() -> None:
    registry = CollectorRegistry()
    worker = WorkerMetrics(registry)
    CollectorMetrics(registry)  # all three in one registry: no name clashes
    delivery = DeliveryMetrics(registry)
    delivery.destination("crm")
    delivery.attempted("crm", "2xx", 0.02)
    delivery.consumed.labels(kind="handoffs").inc()
    delivery.latency.labels(destination="crm").observe(0.03)
    worker.transitions.labels(from_stage="iql", to_stage="mql").inc()
    worker.retried("scoring batch")
    worker.redis_seconds.labels(call="snapshot").observe(0.001)
    worker.lag({0: 5}, {0: 9}.get, {0: T0.timestamp()}, T0.timestamp() + 2)
    found = families(registry)
    assert found, "nothing registered"
    for name, family in found.items():
        assert name.startswith("leadpulse_"), name
        assert family.type in {"counter", "gauge", "histogram"}, (name, family.type)
        assert family.documentation, name
        sample_names = {s.name for s in family.samples}
        if family.type == "counter":
            assert all(n.endswith("_total") for n in sample_names), name
        if family.type == "histogram":
            assert f"{name}_bucket" in sample_names or not family.samples, name
            assert name.endswith("_seconds"), name
        for s in family.samples:
            assert set(s.labels) - {"le"} <= LABELS, (name, s.labels)
            for label, text in s.labels.items():
                assert not ID_LIKE.search(text), (name, label, text)
    assert found["leadpulse_batch_seconds"].type == "histogram"
    assert found["leadpulse_consumer_lag_messages"].type == "gauge"
    assert value(registry, "leadpulse_consumer_lag_messages", partition="0") == 4
    assert value(registry, "leadpulse_consumer_lag_seconds", partition="0") == 2
    assert value(registry, "leadpulse_retries_total", step="scoring_batch") == 1
    # every reason class is exported from the start, at 0
    for reason in DEAD_LETTER_REASONS:
        assert value(registry, "leadpulse_dead_letters_total", reason=reason) == 0


def test_two_registries_do_not_clash() -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    WorkerMetrics(first).handoffs.inc()
    WorkerMetrics(second)
    assert value(first, "leadpulse_handoffs_total") == 1
    assert value(second, "leadpulse_handoffs_total") == 0


async def test_scoring_moves_counters_latencies_store_calls_and_lag(
    model: ScoringModel,
) -> None:
    highwater = {0: 10}
    runtime, metrics, publisher, _ = make(model, highwater)
    await runtime.after_seek(NoSeekConsumer({TP(TOPIC, 0): None}))
    registry = metrics.registry
    first = [
        page("https://x.io/pricing", "lead-a", at=0, event_id="view-1"),
        page("https://x.io/pricing", "lead-a", at=1, event_id="view-2"),
        page("https://x.io/pricing", "lead-a", at=2, event_id="view-2"),  # a duplicate
        b"not json",
    ]
    record_time = T0.timestamp() + 10
    await runtime.score(records(0, 0, first, record_time))
    await runtime.observe()
    assert value(registry, "leadpulse_events_consumed_total") == 4
    assert value(registry, "leadpulse_events_scored_total") == 2
    assert value(registry, "leadpulse_events_duplicate_total") == 1
    assert value(registry, "leadpulse_dead_letters_total", reason="decode") == 1
    assert value(registry, "leadpulse_consumer_lag_messages", partition="0") == 6
    # lagging: the watermark is the latest event time decoded (the duplicate's, T0 + 2)
    assert value(registry, "leadpulse_consumer_lag_seconds", partition="0") == 28

    publisher.fail_next = 1  # one transient failure: the batch is retried
    second = [
        event("identify", "lead-a", at=3, traits={"company_size": 100}),
        event("demo_request", "lead-a", at=4),
        page("https://x.io/", "lead-b", at=4),
        page("https://x.io/", "lead-c", at=5),
        page("https://x.io/", "lead-d", at=5),
        page("https://x.io/", "lead-e", at=5),
    ]
    await runtime.score(records(0, 4, second, record_time))
    await runtime.observe()
    assert value(registry, "leadpulse_retries_total", step="scoring_batch") == 1
    assert value(registry, "leadpulse_transitions_total", from_stage="iql", to_stage="mql") == 1
    assert value(registry, "leadpulse_transitions_total", from_stage="mql", to_stage="sal") == 1
    assert value(registry, "leadpulse_handoffs_total") == 1
    assert value(registry, "leadpulse_messages_published_total") == 3
    decided = value(registry, "leadpulse_event_to_decision_seconds_count")
    assert decided == 2
    assert value(registry, "leadpulse_record_to_decision_seconds_count") == 2
    # from the record time (T0 + 10) to the clock (T0 + 30)
    assert value(registry, "leadpulse_record_to_decision_seconds_sum") == 40
    assert value(registry, "leadpulse_batch_seconds_count") == 2
    assert value(registry, "leadpulse_redis_call_seconds_count", call="commit") >= 2
    assert value(registry, "leadpulse_redis_call_seconds_count", call="record_progress") == 2
    # caught up: no lag in messages or seconds
    assert value(registry, "leadpulse_consumer_lag_messages", partition="0") == 0
    assert value(registry, "leadpulse_consumer_lag_seconds", partition="0") == 0
    assert value(registry, "leadpulse_assigned_partitions") == 1
    assert value(registry, "leadpulse_outbox_pending_leads") == 0
    assert value(registry, "leadpulse_redis_call_seconds_count", call="pending_count") == 2


async def test_the_outbox_gauge_counts_pending_leads_of_owned_partitions(
    model: ScoringModel,
) -> None:
    shard = keys.shard_of("lead-a", 4)
    runtime, metrics, _, _ = make(model, {shard: 0})
    runtime.watermarks.assigned({shard: 0})  # owned, without the replay an assignment starts
    other = next(f"lead-{n}" for n in range(100) if keys.shard_of(f"lead-{n}", 4) != shard)
    # what a crash between commit and publish leaves behind
    await runtime.store.commit(
        [Commit(lead, 0, b"s", [], outbox={"t:1": b"m"}) for lead in ("lead-a", other)]
    )
    await runtime.observe()
    assert value(metrics.registry, "leadpulse_outbox_pending_leads") == 1


async def test_a_failing_store_call_is_counted_by_call(model: ScoringModel) -> None:
    metrics = WorkerMetrics(CollectorRegistry())

    class Broken(MemoryLeadStore):
        async def ping(self) -> None:
            raise ConnectionError("down (fake)")

    store = MeasuredStore(Broken(partitions=1), metrics)
    with pytest.raises(ConnectionError):
        await store.ping()
    assert value(metrics.registry, "leadpulse_redis_errors_total", call="ping") == 1
    assert value(metrics.registry, "leadpulse_redis_call_seconds_count", call="ping") == 1


async def test_sweeps_count_due_leads(model: ScoringModel) -> None:
    shard = keys.shard_of("lead-a", 4)  # a worker sweeps the shards of its partitions
    runtime, metrics, _, clock = make(model, {shard: 1})
    await runtime.after_seek(NoSeekConsumer({TP(TOPIC, shard): None}))
    lead = event("demo_request", "lead-a", at=0)
    await runtime.score(records(shard, 0, [lead], T0.timestamp()))
    clock.now += 3600  # demo-request (half-life 20s) has decayed below recycle
    await runtime.sweep()
    assert value(metrics.registry, "leadpulse_sweep_seconds_count") == 1
    assert value(metrics.registry, "leadpulse_leads_swept_total") == 1
    assert (
        value(metrics.registry, "leadpulse_transitions_total", from_stage="mql", to_stage="nurture")
        == 1
    )


def test_readme_lists_every_metric_and_no_other() -> None:
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    CollectorMetrics(registry)
    DeliveryMetrics(registry)
    registered = set()
    for name, family in families(registry).items():
        registered.add(f"{name}_total" if family.type == "counter" else name)
    section = README.read_text().split("### Metrics", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(leadpulse_[a-z_]+)`", section, flags=re.MULTILINE))
    assert registered == listed, (
        f"missing from README: {sorted(registered - listed)}; "
        f"not registered: {sorted(listed - registered)}"
    )
