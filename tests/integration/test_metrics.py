"""The worker's /metrics and /ready on the embedded stack (Tansu + a private redis-server).

One worker serves the module; the tests run in order: /ready before and
after assignment, the metric families, counters and latencies moving with
traffic, lag while the worker is stopped and after it resumed, /ready with
Redis frozen. Tansu under-reports end offsets (the first offset of the last
batch + 1), so lag values are never asserted exactly: only "> 0 with a
backlog" and "within a small bound once caught up".
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from leadpulse.streams.dev.devstack import DevStack, RedisServer, free_port
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from tests.integration.faults import frozen
from tests.integration.harness import produce, start_worker, wait_for, worker_settings

BACKLOG_FLUSHES = 5
BACKLOG_PER_FLUSH = 40
CAUGHT_UP_BOUND = 5
"""Messages of lag still taken for caught up (Tansu's end offsets read low)."""

FAMILIES = {
    "leadpulse_events_consumed": "counter",
    "leadpulse_events_scored": "counter",
    "leadpulse_events_duplicate": "counter",
    "leadpulse_dead_letters": "counter",
    "leadpulse_transitions": "counter",
    "leadpulse_handoffs": "counter",
    "leadpulse_batch_seconds": "histogram",
    "leadpulse_event_to_decision_seconds": "histogram",
    "leadpulse_record_to_decision_seconds": "histogram",
    "leadpulse_redis_call_seconds": "histogram",
    "leadpulse_sweep_seconds": "histogram",
    "leadpulse_outbox_pending_leads": "gauge",
    "leadpulse_assigned_partitions": "gauge",
    "leadpulse_consumer_lag_messages": "gauge",
    "leadpulse_consumer_lag_seconds": "gauge",
}


@dataclass
class Running:
    settings: Settings
    workdir: Path
    worker: WorkerProcess
    redis: RedisServer


@pytest.fixture(scope="module")
def running(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    workdir = tmp_path_factory.mktemp("metrics")
    redis = RedisServer(free_port(), workdir=workdir / "redis")
    redis.start()
    settings = worker_settings(stack, workdir).replace(redis_url=redis.url)
    worker = WorkerProcess(settings, workdir / "worker-1.log").start()
    state = Running(settings, workdir, worker, redis)
    try:
        yield state
    finally:
        state.worker.stop()
        redis.stop()


def get(settings: Settings, path: str) -> tuple[int, bytes]:
    """Status and body of GET `path` on the worker (0, b"" while it does not answer)."""
    url = f"http://127.0.0.1:{settings.web_port}{path}"
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def scrape(settings: Settings) -> dict[str, Any]:
    status, body = get(settings, "/metrics")
    assert status == 200, status
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def total(settings: Settings, family: str, sample: str | None = None, **labels: str) -> float:
    found = scrape(settings).get(family)
    if found is None:
        return 0.0
    name = sample or family
    return sum(
        s.value
        for s in found.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def lag_by_partition(settings: Settings) -> dict[str, float]:
    family = scrape(settings)["leadpulse_consumer_lag_messages"]
    return {s.labels["partition"]: s.value for s in family.samples}


def external_lag(settings: Settings) -> int:
    """End offsets minus the group's committed offsets, summed, read with kafka-python."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        parts = [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)]
        committed = admin.list_group_offsets({settings.app_id: parts})[settings.app_id]
        ends = consumer.end_offsets(parts)
        lag = 0
        for tp in parts:
            done = committed.get(tp)
            lag += max(0, ends[tp] - (done.offset if done is not None and done.offset >= 0 else 0))
        return lag
    finally:
        consumer.close()
        admin.close()


def body(kind: str, lead: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{lead}-{kind}-{n}",
        "type": kind,
        "lead_id": lead,
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }


def test_ready_is_503_before_assignment_then_200(running: Running) -> None:
    settings = running.settings
    unassigned: list[dict[str, Any]] = []
    deadline = time.monotonic() + 90
    while True:
        status, raw = get(settings, "/ready")
        if status == 200:
            break
        if status == 503:
            answer = json.loads(raw)
            if answer["assigned_partitions"] == 0:
                unassigned.append(answer)
        assert time.monotonic() < deadline, "never ready"
        time.sleep(0.1)
    assert unassigned, "the web server answered only after assignment"
    assert all(a["ready"] is False and "no partitions assigned" in a["reasons"] for a in unassigned)
    assert json.loads(raw)["assigned_partitions"] > 0
    assert get(settings, "/health")[0] == 200


def test_metric_families_and_traffic(running: Running) -> None:
    settings = running.settings
    found = scrape(settings)
    for name, kind in FAMILIES.items():
        assert name in found, name
        assert found[name].type == kind, (name, found[name].type)
    for name in found:
        assert name.startswith("leadpulse_"), name
    before = total(settings, "leadpulse_events_consumed", "leadpulse_events_consumed_total")
    bodies = [
        body("identify", "lead-m", 0, traits={"company_size": 100}),
        body("page_view", "lead-m", 1, properties={"url": "https://x.io/pricing"}),
        body("demo_request", "lead-m", 2),
        b"not json",
    ]
    produce(settings, bodies)
    wait_for(
        lambda: (
            total(settings, "leadpulse_events_consumed", "leadpulse_events_consumed_total")
            >= before + 4
        ),
        timeout=60,
        what="events consumed",
    )
    wait_for(
        lambda: (
            total(settings, "leadpulse_transitions", "leadpulse_transitions_total", to_stage="sal")
            >= 1
        ),
        timeout=30,
        what="a transition counted",
    )
    assert total(settings, "leadpulse_events_scored", "leadpulse_events_scored_total") >= 3
    assert total(settings, "leadpulse_handoffs", "leadpulse_handoffs_total") >= 1
    dead = "leadpulse_dead_letters_total"
    assert total(settings, "leadpulse_dead_letters", dead, reason="decode") >= 1
    count = "leadpulse_event_to_decision_seconds_count"
    assert total(settings, "leadpulse_event_to_decision_seconds", count) > 0
    count = "leadpulse_record_to_decision_seconds_count"
    assert total(settings, "leadpulse_record_to_decision_seconds", count) > 0
    count = "leadpulse_redis_call_seconds_count"
    assert total(settings, "leadpulse_redis_call_seconds", count, call="commit") > 0


def test_lag_rises_while_stopped_and_falls_when_resumed(running: Running) -> None:
    settings = running.settings
    consumed = "leadpulse_events_consumed_total"
    wait_for(
        lambda: all(v <= CAUGHT_UP_BOUND for v in lag_by_partition(settings).values()),
        timeout=30,
        what="caught up before the stop",
    )
    running.worker.stop()  # commits its offsets to the group on the way out
    for flush in range(BACKLOG_FLUSHES):  # several batches: Tansu's end offsets read low
        produce(
            settings,
            [body("page_view", f"lag-{n % 7}", flush * 1000 + n) for n in range(BACKLOG_PER_FLUSH)],
        )
    assert external_lag(settings) > 0
    running.worker = start_worker(settings, running.workdir / "worker-2.log")
    # a fresh process: its counter restarts, and reaches the whole backlog once caught up
    wait_for(
        lambda: (
            total(settings, "leadpulse_events_consumed", consumed)
            >= BACKLOG_FLUSHES * BACKLOG_PER_FLUSH
        ),
        timeout=60,
        what="backlog consumed",
    )
    wait_for(
        lambda: all(v <= CAUGHT_UP_BOUND for v in lag_by_partition(settings).values()),
        timeout=30,
        what="in-worker lag back within the bound",
    )
    assert lag_by_partition(settings), "no lag gauge for the assigned partitions"
    seconds = scrape(settings)["leadpulse_consumer_lag_seconds"]
    assert all(s.value < 60 for s in seconds.samples), seconds.samples
    wait_for(
        lambda: external_lag(settings) <= CAUGHT_UP_BOUND,
        timeout=30,
        what="committed offsets caught up",
    )


def test_ready_is_503_with_redis_frozen_while_health_stays_200(running: Running) -> None:
    settings = running.settings
    wait_for(lambda: get(settings, "/ready")[0] == 200, timeout=30, what="ready")
    with frozen(running.redis):
        status, raw = get(settings, "/ready")
        assert status == 503
        reasons = json.loads(raw)["reasons"]
        assert any(r.startswith("redis: ") for r in reasons), reasons
        assert get(settings, "/health")[0] == 200  # a failure shorter than unhealthy_after
    wait_for(lambda: get(settings, "/ready")[0] == 200, timeout=30, what="ready again")
