"""The events topic is created with the retention a replay needs (issue 16, item 4).

Tansu answers DescribeConfigs with nothing, so what is checked here is what
leadpulse puts in the CreateTopics request; tests/integration/test_worker_start.py
creates the topics on Tansu with it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import kafka
import pytest
from kafka import KafkaAdminClient
from pydantic import ValidationError

from leadpulse.streams.kafka.topics import ensure_topics, topic_configs
from leadpulse.streams.settings import Settings


class FakeAdmin:
    """Records the topics asked for; the topics in `existing` exist already."""

    existing: ClassVar[set[str]] = set()
    asked: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **_options: Any) -> None:
        pass

    def __enter__(self) -> FakeAdmin:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def list_topics(self) -> list[str]:
        return sorted(self.existing)

    def create_topics(self, new_topics: dict[str, Any], **_: Any) -> dict[str, Any]:
        FakeAdmin.asked.append(new_topics)
        return {"topics": [{"name": name, "error_code": 0} for name in new_topics]}

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"name": name, "partitions": [0] * 12} for name in names]


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> type[FakeAdmin]:
    monkeypatch.setattr(kafka, "KafkaAdminClient", FakeAdmin)
    FakeAdmin.existing, FakeAdmin.asked = set(), []
    return FakeAdmin


@pytest.mark.parametrize(
    ("given", "seconds", "ms"),
    [
        (None, None, -1),
        ("unlimited", None, -1),
        ("Unlimited", None, -1),
        ("never", None, -1),
        ("-1", None, -1),
        (-1, None, -1),
        ("400d", 400 * 86400.0, 34_560_000_000),
        ("12h", 43200.0, 43_200_000),
        ("604800", 604800.0, 604_800_000),
        (1.5, 1.5, 1500),
    ],
)
def test_the_setting_and_its_retention_ms(given: Any, seconds: float | None, ms: int) -> None:
    settings = Settings() if given is None else Settings(events_retention=given)
    assert settings.events_retention == seconds
    assert settings.events_retention_ms == ms


@pytest.mark.parametrize("bad", ["0", "soon", "-5"])
def test_a_bad_retention_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="events_retention"):
        Settings(events_retention=bad)


def test_the_environment_sets_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADPULSE_EVENTS_RETENTION", "30d")
    assert Settings().events_retention_ms == 2_592_000_000


def test_only_the_events_topic_gets_a_retention() -> None:
    assert topic_configs(Settings()) == {"leadpulse.events": {"retention.ms": "-1"}}
    named = Settings(events_topic="ev.x", events_retention="90d")
    assert topic_configs(named) == {"ev.x": {"retention.ms": "7776000000"}}


def test_the_create_topics_request_carries_the_retention(admin: type[FakeAdmin]) -> None:
    created = ensure_topics(Settings(events_retention="400d"))
    assert created == [
        "leadpulse.events",
        "leadpulse.handoffs",
        "leadpulse.transitions",
        "leadpulse.events.dlq",
        "leadpulse.deliveries.dlq",
    ]
    (asked,) = admin.asked
    assert asked["leadpulse.events"] == {
        "num_partitions": 12,
        "replication_factor": 1,
        "configs": {"retention.ms": "34560000000"},
    }
    assert asked["leadpulse.handoffs"] == {"num_partitions": 12, "replication_factor": 1}
    # what kafka-python puts on the wire from these options: CreateTopics' config entries
    topics = {t.name: t for t in KafkaAdminClient._process_create_topics_input(asked)}
    assert [(c.name, c.value) for c in topics["leadpulse.events"].configs] == [
        ("retention.ms", "34560000000")
    ]
    assert list(topics["leadpulse.transitions"].configs) == []


def test_an_existing_events_topic_is_not_changed(admin: type[FakeAdmin]) -> None:
    admin.existing = {"leadpulse.events"}
    ensure_topics(Settings())  # FakeAdmin has no alter_configs: calling it would fail
    (asked,) = admin.asked
    assert "leadpulse.events" not in asked
    assert all("configs" not in options for options in asked.values())
