"""The deliverer's pure rules: next delay (schedule, jitter, Retry-After), who gets what, keys."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from leadpulse.schemas.messages import Handoff, Stage, StageTransition
from leadpulse.streams.delivery.config import parse_destinations
from leadpulse.streams.delivery.deliverer import MAX_RETRY_AFTER, Deliverer
from leadpulse.streams.delivery.outbound import Answer
from leadpulse.streams.observability.metrics import DeliveryMetrics
from leadpulse.streams.store.redis import keys

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FILE = f"""
allow_hosts: [crm.example.com]
destinations:
  - {{name: crm, url: 'https://crm.example.com/h', secret: {SECRET},
      retry_schedule: [0s, 5s, 5m], min_grade: B}}
  - {{name: audit, url: 'https://crm.example.com/a', secret: {SECRET},
      messages: [transitions]}}
  - {{name: both, url: 'https://crm.example.com/b', secret: {SECRET},
      messages: [handoffs, transitions]}}
"""
AT = datetime(2026, 12, 1, tzinfo=UTC)


async def _publish(messages: object) -> None:
    raise AssertionError("nothing is published here")


def deliverer(jitter: float) -> Deliverer:
    return Deliverer(
        parse_destinations(FILE),
        store=None,  # type: ignore[arg-type]  # these rules never touch the store
        publish=_publish,
        dlq_topic="dlq",
        metrics=DeliveryMetrics(CollectorRegistry()),
        jitter=lambda low, high: low + (high - low) * jitter,
    )


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.9), (0.5, 1.0), (1.0, 1.1)])
def test_the_schedule_with_ten_percent_jitter(jitter: float, factor: float) -> None:
    d = deliverer(jitter)
    crm = d.destinations.named("crm")
    failed = Answer(500, "HTTP 500", 0.1)
    assert d.next_delay(crm, 1, failed) == pytest.approx(5 * factor)
    assert d.next_delay(crm, 2, failed) == pytest.approx(300 * factor)
    assert d.next_delay(crm, 0, failed) == 0  # "0s" stays immediate


def test_retry_after_replaces_the_schedule_up_to_an_hour() -> None:
    d = deliverer(0.5)
    crm = d.destinations.named("crm")
    assert d.next_delay(crm, 1, Answer(429, "HTTP 429", 0.1, retry_after=42)) == 42
    assert d.next_delay(crm, 1, Answer(503, "", 0.1, retry_after=1e9)) == MAX_RETRY_AFTER
    assert d.next_delay(crm, 1, Answer(429, "", 0.1, retry_after=-5)) == 0


def handoff(grade: str) -> Handoff:
    return Handoff(
        handoff_id="h-1",
        lead_id="l-1",
        engagement=80,
        fit=40,
        grade=grade,
        occurred_at=AT,
        model_version="m",
    )


def transition(from_stage: Stage, to_stage: Stage) -> StageTransition:
    return StageTransition(
        transition_id="t-1",
        lead_id="l-1",
        from_stage=from_stage,
        to_stage=to_stage,
        engagement=60,
        fit=40,
        grade="A",
        occurred_at=AT,
        model_version="m",
        reason="r",
    )


def names(d: Deliverer, kind: str, message: Handoff | StageTransition) -> list[str]:
    return [t.name for t in d.targets(kind, message)]


def test_who_gets_what() -> None:
    d = deliverer(0.5)
    assert names(d, "handoffs", handoff("A")) == ["crm", "both"]
    assert names(d, "handoffs", handoff("C")) == ["both"]  # crm wants B and better
    assert names(d, "transitions", transition(Stage.IQL, Stage.MQL)) == ["audit", "both"]
    # the MQL->SAL transition is the handoff: `both` gets it once, as the handoff
    assert names(d, "transitions", transition(Stage.MQL, Stage.SAL)) == ["audit"]


def _slot_tag(key: str) -> str:
    """What Redis Cluster hashes: the text of the first {...} (the whole key if none)."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return key[start + 1 : end] if start >= 0 and end > start + 1 else key


@pytest.mark.parametrize("webhook_id", ["h-1", "weird}{id", "{x}"])
def test_a_destinations_keys_share_one_cluster_slot(webhook_id: str) -> None:
    tags = {
        _slot_tag(k)
        for k in (
            keys.DEFAULT.delivery_due("crm"),
            keys.DEFAULT.delivery_jobs("crm"),
            keys.DEFAULT.delivered("crm", webhook_id),
            keys.DEFAULT.destination_disabled("crm"),
        )
    }
    assert tags == {"dlv:crm"}
    assert all(
        k.startswith("lp:")
        for k in (keys.DEFAULT.delivery_due("crm"), keys.DEFAULT.delivered("a", "b"))
    )
