"""Time inside scoring is float epoch seconds: cheap to decay, exact to compare.

Callers pass time in; nothing here reads a clock.
"""

from __future__ import annotations

from datetime import UTC, datetime

Instant = float | datetime
"""A moment given either as epoch seconds or as a timezone-aware datetime."""


def to_epoch(moment: datetime) -> float:
    """Naive datetimes are refused: their meaning depends on the host's zone."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} has no timezone; scoring needs aware datetimes")
    return moment.timestamp()


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def as_epoch(moment: Instant) -> float:
    if isinstance(moment, datetime):
        return to_epoch(moment)
    return float(moment)
