"""`/ready`'s decision: every condition that makes a worker unready says so."""

from __future__ import annotations

from typing import Any

from leadpulse.streams.observability.health import Health, readiness

NOW = 1_000.0


def ready(**changes: Any) -> dict[str, Any]:
    health = changes.pop("health", Health(unhealthy_after=30.0, clock=lambda: NOW))
    fields: dict[str, Any] = {
        "assigned": 2,
        "redis_error": None,
        "broker_error": None,
        "health": health,
        "lagging": False,
        "last_progress": None,
        "now": NOW,
        **changes,
    }
    return readiness(**fields)


def test_ready_when_assigned_connected_and_not_lagging() -> None:
    assert ready() == {"ready": True, "reasons": [], "assigned_partitions": 2}


def test_each_condition_is_a_reason() -> None:
    assert ready(assigned=0)["reasons"] == ["no partitions assigned"]
    assert ready(redis_error="ConnectionError: refused")["reasons"] == [
        "redis: ConnectionError: refused"
    ]
    assert ready(broker_error="no answer in 2s")["reasons"] == ["broker: no answer in 2s"]
    assert not ready(assigned=0, redis_error="x")["ready"]


def test_a_step_failing_past_unhealthy_after_is_a_reason() -> None:
    health = Health(unhealthy_after=30.0, clock=lambda: NOW)
    health.failed("scoring batch", ConnectionError("down"))
    assert ready(health=health)["ready"]  # failing, but not for long yet
    health.failing["scoring batch"].since = NOW - 31
    assert ready(health=health)["reasons"] == ["failing: scoring batch"]


def test_lagging_is_ready_only_while_batches_are_scored() -> None:
    assert ready(lagging=True, last_progress=NOW - 5)["ready"]
    assert ready(lagging=True, last_progress=NOW - 31)["reasons"] == ["lagging without progress"]
    assert ready(lagging=True, last_progress=None)["reasons"] == ["lagging without progress"]
    assert ready(lagging=False, last_progress=NOW - 3600)["ready"]
