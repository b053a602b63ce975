"""The topic catalogue and topic creation: every leadpulse topic, configured partitions."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from leadpulse.streams.kafka.security import kafka_python_options
from leadpulse.streams.settings import Settings

log = logging.getLogger(__name__)

TOPIC_ALREADY_EXISTS = 36


class TopicError(RuntimeError):
    """Topics could not be created; the message names each topic and error."""


class PartitionMismatchError(RuntimeError):
    """The events topic's real partition count differs from `LEADPULSE_PARTITIONS`.

    The store shards its indexes by partition and a lead's shard must be the
    partition Kafka puts its events in: with another count, sweeps and outbox
    replays would look in the wrong shards and leads would never recycle.
    """

    def __init__(self, topic: str, actual: int, configured: int) -> None:
        self.topic, self.actual, self.configured = topic, actual, configured
        super().__init__(
            f"the events topic {topic} has {actual} partitions but LEADPULSE_PARTITIONS is "
            f"{configured}: set LEADPULSE_PARTITIONS={actual} (every worker, collector and "
            f"deliverer of this deployment), or use an events topic with {configured} "
            "partitions (LEADPULSE_EVENTS_TOPIC)"
        )


def topic_names(settings: Settings) -> list[str]:
    return [
        settings.events_topic,
        settings.handoffs_topic,
        settings.transitions_topic,
        settings.dlq_topic,
        settings.deliveries_dlq_topic,
    ]


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    *,
    replication_factor: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    client_options: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Create missing topics; existing ones are left alone. Returns those created now.

    `configs` maps a topic to the topic configs it is created with (e.g.
    ``retention.ms``); an existing topic's configs are not changed. Brokers
    that cannot change partition counts later (Tansu has no
    ``create_partitions``) make a mismatch a warning, not an error.
    """
    from kafka import KafkaAdminClient

    wanted = list(dict.fromkeys(names))
    if not wanted:
        return []
    timeout_ms = int(timeout * 1000)
    with KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="leadpulse-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        **dict(client_options or {}),
    ) as admin:
        existing = set(admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        created: list[str] = []
        if missing:
            result = admin.create_topics(
                {n: _new_topic(partitions, replication_factor, configs, n) for n in missing},
                timeout_ms=timeout_ms,
                raise_errors=False,
            )
            errors = []
            for topic in result["topics"]:
                code = topic["error_code"]
                if code == 0:
                    created.append(topic["name"])
                elif code != TOPIC_ALREADY_EXISTS:  # lost a race with another creator: fine
                    errors.append(f"{topic['name']}: error {code} {topic.get('error_message')}")
            if errors:
                raise TopicError("cannot create topics: " + "; ".join(errors))
        present = [n for n in wanted if n not in created]
        if present:
            for topic in admin.describe_topics(present):
                count = len(topic.get("partitions") or [])
                if count != partitions:
                    log.warning(
                        "topic %s exists with %d partitions, not %d",
                        topic["name"],
                        count,
                        partitions,
                    )
    return created


def _new_topic(
    partitions: int,
    replication_factor: int,
    configs: Mapping[str, Mapping[str, str]] | None,
    name: str,
) -> dict[str, Any]:
    """kafka-python's options of one new topic: partitions, replication, its configs."""
    options: dict[str, Any] = {
        "num_partitions": partitions,
        "replication_factor": replication_factor,
    }
    wanted = (configs or {}).get(name)
    if wanted:
        options["configs"] = dict(wanted)
    return options


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """The configs leadpulse creates its topics with: the events topic's retention.

    ``retention.ms`` is `Settings.events_retention_ms` (-1: unlimited), so the
    history a replay reads stays in Kafka; the other topics keep the broker's
    defaults.
    """
    return {settings.events_topic: {"retention.ms": str(settings.events_retention_ms)}}


def partition_count(
    bootstrap: str,
    topic: str,
    *,
    client_options: Mapping[str, Any] | None = None,
    timeout: float = 10.0,
) -> int | None:
    """How many partitions `topic` has on the broker (None: the topic does not exist)."""
    from kafka import KafkaAdminClient

    timeout_ms = int(timeout * 1000)
    with KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="leadpulse-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
        **dict(client_options or {}),
    ) as admin:
        if topic not in set(admin.list_topics()):
            return None
        (described,) = admin.describe_topics([topic])
        return len(described.get("partitions") or [])


def check_partitions(settings: Settings) -> None:
    """Raise `PartitionMismatchError` if the events topic's partitions differ from the setting.

    A missing topic passes: it is created (by `--create-topics` or the broker)
    with the configured count.
    """
    actual = partition_count(
        ",".join(settings.bootstrap_servers),
        settings.events_topic,
        client_options=kafka_python_options(settings),
    )
    if actual is not None and actual != settings.partitions:
        raise PartitionMismatchError(settings.events_topic, actual, settings.partitions)


def ensure_topics(settings: Settings) -> list[str]:
    """Create the missing leadpulse topics; returns the names created now."""
    return create_topics(
        ",".join(settings.bootstrap_servers),
        topic_names(settings),
        settings.partitions,
        replication_factor=settings.replication_factor,
        configs=topic_configs(settings),
        client_options=kafka_python_options(settings),
    )
