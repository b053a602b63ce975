"""Running counters of one worker, served at /stats."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from leadpulse.streams.pipeline.records import Report


@dataclass
class Totals:
    """Running counters of one worker, served at /stats."""

    scored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    published: int = 0
    transitions: dict[str, int] = field(default_factory=dict)
    first_batch_at: float | None = None
    """Wall-clock time the scoring agent received its first batch (benchmarks)."""
    last_batch_at: float | None = None
    """Wall-clock time the scoring agent finished its latest batch (benchmarks)."""

    def add(self, report: Report) -> None:
        self.scored += report.scored
        self.duplicates += report.duplicates
        self.dead_lettered += report.dead_lettered
        self.published += report.published
        for t in report.transitions:
            name = f"{t.from_stage}->{t.to_stage}"
            self.transitions[name] = self.transitions.get(name, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "duplicates": self.duplicates,
            "dead_lettered": self.dead_lettered,
            "published": self.published,
            "transitions": dict(self.transitions),
            "first_batch_at": self.first_batch_at,
            "last_batch_at": self.last_batch_at,
        }
