"""What flows through the pipeline: records in, messages out, a report of each call."""

from __future__ import annotations

from dataclasses import dataclass, field

from leadpulse.schemas import StageTransition


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka record as received, enough to score it or dead-letter it."""

    key: bytes | None
    value: bytes | None
    topic: str
    partition: int
    offset: int
    timestamp: float | None = None
    """The record's Kafka timestamp (epoch seconds); bounds the event's time."""
    replay_of: str | None = None
    """The dead letter `leadpulse dlq replay` re-injected this record from (its header)."""


@dataclass(frozen=True, slots=True)
class Topics:
    handoffs: str = "leadpulse.handoffs"
    transitions: str = "leadpulse.transitions"
    dlq: str = "leadpulse.events.dlq"


@dataclass
class Report:
    """What one call did; the CLI and metrics read it."""

    scored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    transitions: list[StageTransition] = field(default_factory=list)
    """Transitions published by this call (including ones an earlier run decided)."""
    published: int = 0
    event_times: dict[int, float] = field(default_factory=dict)
    """Latest event time decoded per partition (epoch seconds), for watermarks."""
    record_times: dict[str, float] = field(default_factory=dict)
    """Kafka record time of each transition's causing event, by transition id (metrics)."""
    swept: int = 0
    """Due leads a sweep evaluated."""

    def add(self, other: Report) -> None:
        self.scored += other.scored
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.transitions.extend(other.transitions)
        self.published += other.published
        for partition, at in other.event_times.items():
            self.event_times[partition] = max(self.event_times.get(partition, at), at)
        self.record_times.update(other.record_times)
        self.swept += other.swept


Decided = dict[tuple[str, str], StageTransition]
"""(subject, outbox message id) -> the transition a commit put there, this run."""
