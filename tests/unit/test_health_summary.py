"""The open /health body names what fails and counts it; details are the token's."""

from __future__ import annotations

import json

from leadpulse.streams.observability.health import Health

NOW = 1_000.0
SECRET = "sk_live_51HxQ7Jc2eZvKYlo2C8PQ"


def failing_health() -> Health:
    health = Health(unhealthy_after=30.0, clock=lambda: NOW)
    health.failed("scoring batch", ConnectionError(f"redis://:{SECRET}@10.0.0.7:6379 refused"))
    health.dead_letter(
        f"traits.{SECRET}: Extra inputs are not permitted",
        kind="decode",
        lead_id="lead-7f3a",
        topic="leadpulse.events",
        partition=3,
        offset=41_217,
    )
    health.unknown_error()
    health.stale_watermarks = (2,)
    return health


def test_the_summary_keeps_names_and_counts_only() -> None:
    assert failing_health().summary() == {
        "healthy": True,
        "failing": {"scoring batch": {"for_seconds": 0.0, "attempts": 1}},
        "dead_lettered": 1,
        "unknown_errors": 1,
        "stale_watermarks": [2],
        "last_dead_letter": {"kind": "decode", "at": NOW},
    }


def test_the_details_keep_the_error_texts_and_where_the_letter_came_from() -> None:
    detail = failing_health().as_dict()
    assert detail["failing"]["scoring batch"]["error"] == (
        f"ConnectionError: redis://:{SECRET}@10.0.0.7:6379 refused"
    )
    assert detail["last_dead_letter"] == {
        "reason": f"traits.{SECRET}: Extra inputs are not permitted",
        "kind": "decode",
        "at": NOW,
        "lead_id": "lead-7f3a",
        "topic": "leadpulse.events",
        "partition": 3,
        "offset": 41_217,
    }
    assert SECRET not in json.dumps(failing_health().summary())


def test_no_letter_yet_is_none_in_both() -> None:
    health = Health(clock=lambda: NOW)
    assert health.summary()["last_dead_letter"] is None
    assert health.as_dict()["last_dead_letter"] is None
