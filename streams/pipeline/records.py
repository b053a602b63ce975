"""What flows through the pipeline: records in, messages out, a report of each call.

`Report` is defined in `streams.observability.report` (observability reads it
and must not import the pipeline) and re-exported here for the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

from leadpulse.schemas import StageTransition
from leadpulse.streams.observability.report import Report

__all__ = ["Decided", "Record", "Report", "Topics"]


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


Decided = dict[tuple[str, str], StageTransition]
"""(subject, outbox message id) -> the transition a commit put there, this run."""
