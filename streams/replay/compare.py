"""Two runs over one history, side by side: the arithmetic of `leadpulse model whatif`.

Pure: no I/O, nothing read from a clock. Definitions
(docs/architecture.md#replay-whatif):

- A lead's handoffs under the two models are paired in time order: its
  first handoff under the current model with its first under the new one,
  and so on. A current handoff with a partner is one the new model "also
  makes"; the shift is the partner's time minus its own (negative: earlier).
- Gained leads: handed off under the new model, never under the current
  one; lost leads: the reverse.
- The outcome backtest counts, per outcome, the current handoffs sales gave
  it and how many of them the new model also makes, with the median shift.
- Time from first touch to handoff: the handoff's time minus the lead's
  earliest event time (its merged visitors' included), median over handoffs.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from leadpulse.streams.replay.run import OUTCOMES, HandoffMade, RunResult, by_lead

SAMPLE = 5
"""Leads shown per side (gained, lost), with why."""
WHY_RULES = 4
"""Rule parts shown per sampled lead: the largest differences."""


@dataclass(frozen=True)
class Column:
    """One model's side of the comparison."""

    model_version: str
    handoffs: int
    mqls: int
    recycles: int
    stages: dict[str, int]
    outcomes: dict[str, int]
    per_week: dict[str, int]
    median_touch_to_handoff: float | None
    """Seconds; None without a handoff."""


@dataclass(frozen=True)
class Backtest:
    """One outcome: current handoffs sales gave it, how many the new model also makes."""

    handoffs: int
    also: int
    median_shift: float | None
    """Seconds the new model's handoff comes after the current one (negative: earlier)."""


@dataclass(frozen=True)
class Why:
    """A gained or lost lead: the handoff that differs and the rule parts at that moment."""

    lead_id: str
    handoff_id: str
    at: float
    parts: list[tuple[str, float, float]]
    """(rule, current model's points, new model's points), largest difference first."""
    current_engagement: float
    new_engagement: float


@dataclass(frozen=True)
class Comparison:
    events: int
    since: float | None
    current: Column
    new: Column
    backtest: dict[str, Backtest]
    gained: list[str]
    lost: list[str]
    gained_sample: list[Why] = field(default_factory=list)
    lost_sample: list[Why] = field(default_factory=list)


def iso_week(at: float) -> str:
    year, week, _ = datetime.fromtimestamp(at, UTC).isocalendar()
    return f"{year}-W{week:02d}"


def pairs(current: Sequence[HandoffMade], new: Sequence[HandoffMade]) -> dict[str, HandoffMade]:
    """Current handoff id -> the new model's handoff paired with it (same lead, same rank)."""
    theirs = by_lead(new)
    paired: dict[str, HandoffMade] = {}
    for lead, mine in by_lead(current).items():
        for a, b in zip(mine, theirs.get(lead, ()), strict=False):
            paired[a.handoff_id] = b
    return paired


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def column(run: RunResult, outcomes: Mapping[str, int]) -> Column:
    touches = [
        h.at - run.first_touch[h.lead_id] for h in run.handoffs if h.lead_id in run.first_touch
    ]
    return Column(
        model_version=run.model_version,
        handoffs=len(run.handoffs),
        mqls=run.mqls,
        recycles=run.recycles,
        stages=dict(run.stages),
        outcomes=dict(outcomes),
        per_week=dict(sorted(Counter(iso_week(h.at) for h in run.handoffs).items())),
        median_touch_to_handoff=median(touches),
    )


def _engagement(parts: Mapping[str, float]) -> float:
    return max(0.0, sum(parts.values()))


def why(lead: str, handoff: HandoffMade, current: RunResult, new: RunResult) -> Why:
    """The rule parts of both models at `handoff`'s moment that differ, largest first."""
    a = current.parts.get(handoff.handoff_id, {})
    b = new.parts.get(handoff.handoff_id, {})
    rules = sorted(set(a) | set(b))
    differing = [
        (rule, a.get(rule, 0.0), b.get(rule, 0.0))
        for rule in rules
        if abs(a.get(rule, 0.0) - b.get(rule, 0.0)) > 1e-9
    ]
    differing.sort(key=lambda item: (-abs(item[1] - item[2]), item[0]))
    return Why(
        lead_id=lead,
        handoff_id=handoff.handoff_id,
        at=handoff.at,
        parts=differing[:WHY_RULES],
        current_engagement=_engagement(a),
        new_engagement=_engagement(b),
    )


def compare(current: RunResult, new: RunResult, *, since: float | None) -> Comparison:
    """The side-by-side of two runs over the same history."""
    paired = pairs(current.handoffs, new.handoffs)
    backtest: dict[str, Backtest] = {}
    for outcome in OUTCOMES:
        answered = current.outcomes[outcome]
        shifts = [paired[h].at - h_at for h, h_at in _times(current, answered) if h in paired]
        backtest[outcome] = Backtest(
            handoffs=len(answered),
            also=sum(1 for h in answered if h in paired),
            median_shift=median(shifts),
        )
    mine, theirs = by_lead(current.handoffs), by_lead(new.handoffs)
    gained = sorted(set(theirs) - set(mine))
    lost = sorted(set(mine) - set(theirs))
    return Comparison(
        events=current.events,
        since=since,
        current=column(current, {k: len(v) for k, v in current.outcomes.items()}),
        new=column(new, {k: b.also for k, b in backtest.items()}),
        backtest=backtest,
        gained=gained,
        lost=lost,
        gained_sample=[why(lead, theirs[lead][0], current, new) for lead in gained[:SAMPLE]],
        lost_sample=[why(lead, mine[lead][0], current, new) for lead in lost[:SAMPLE]],
    )


def _times(run: RunResult, ids: set[str]) -> list[tuple[str, float]]:
    return [(h.handoff_id, h.at) for h in run.handoffs if h.handoff_id in ids]


def as_json(comparison: Comparison, *, history_starts: float | None, now: float) -> dict[str, Any]:
    """The `--json` object: the documented keys first, the details after."""

    def side(c: Column) -> dict[str, Any]:
        return {
            "model_version": c.model_version,
            "handoffs": c.handoffs,
            "mqls": c.mqls,
            "recycles": c.recycles,
            "stages": c.stages,
            "outcomes": c.outcomes,
            "handoffs_per_week": c.per_week,
            "median_touch_to_handoff_s": c.median_touch_to_handoff,
        }

    def sample(items: Sequence[Why]) -> list[dict[str, Any]]:
        return [
            {
                "lead_id": w.lead_id,
                "handoff_id": w.handoff_id,
                "at": _iso(w.at),
                "engagement": {"current": w.current_engagement, "new": w.new_engagement},
                "parts": [{"rule": rule, "current": a, "new": b} for rule, a, b in w.parts],
            }
            for w in items
        ]

    return {
        "events": comparison.events,
        "since": _iso(comparison.since),
        "current": side(comparison.current),
        "new": side(comparison.new),
        "gained": comparison.gained,
        "lost": comparison.lost,
        "backtest": {
            k: {"handoffs": b.handoffs, "also": b.also, "median_shift_s": b.median_shift}
            for k, b in comparison.backtest.items()
        },
        "sample": {
            "gained": sample(comparison.gained_sample),
            "lost": sample(comparison.lost_sample),
        },
        "history_starts": _iso(history_starts),
        "now": _iso(now),
    }


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()
