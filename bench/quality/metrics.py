"""Qualification quality of one scorer against the funnel's ground truth.

Definitions (each lead's `LeadTruth`; times in epoch seconds):

- A **handoff** (an MQL -> SAL transition) is *correct* when the lead is
  truly sales-ready at its time (inside one of its ready intervals, ends
  included). **Precision** = correct handoffs / handoffs.
- A **ready episode** (one ready interval) is *caught* when at least one
  handoff falls inside it. **Recall** = caught episodes / ready episodes, so
  an evaluator who comes back is two chances, and a lead already handed off
  (still SAL) when it becomes ready is not caught again.
- **Lead time** of a caught episode: its first handoff's time minus the
  episode's start (how long a ready lead waited for sales); the median over
  caught episodes, in days.
- **Handoffs per 1,000 leads**: all handoffs, per 1,000 simulated leads.
- **Recycles**: all MQL/SAL -> NURTURE transitions. A handoff **went cold**
  when the lead's intent fell below COLD after it (or already was), before
  the lead's next handoff and within the period; it was **recycled cold** when
  a recycle followed at or after that moment (before the next handoff).
  A recycle after a handoff but before the lead went cold is **premature**.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bench.quality.funnel import DAY, LeadTruth
from bench.quality.scorers import Scored


@dataclass(frozen=True)
class Metrics:
    leads: int
    episodes: int
    handoffs: int
    correct: int
    caught: int
    lead_time_days: float | None
    recycles: int
    went_cold: int
    recycled_cold: int
    cold_to_recycle_days: float | None
    premature_recycles: int

    @property
    def precision(self) -> float | None:
        return self.correct / self.handoffs if self.handoffs else None

    @property
    def recall(self) -> float:
        return self.caught / self.episodes if self.episodes else 0.0

    @property
    def handoffs_per_1000(self) -> float:
        return 1000.0 * self.handoffs / self.leads if self.leads else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "precision": self.precision,
            "recall": self.recall,
            "handoffs_per_1000": self.handoffs_per_1000,
        }


def measure(scored: Scored, truth: Mapping[str, LeadTruth]) -> Metrics:
    """The metrics of the module docstring, for every lead in `truth`."""
    handoffs_of = scored.handoffs()
    recycles_of = scored.recycles()
    handoffs = correct = caught = episodes = recycles = 0
    went_cold = recycled_cold = premature = 0
    waits: list[float] = []
    cold_delays: list[float] = []
    for lead_id, lead in truth.items():
        times = handoffs_of.get(lead_id, [])
        recycled = recycles_of.get(lead_id, [])
        handoffs += len(times)
        recycles += len(recycled)
        correct += sum(1 for moment in times if lead.ready_at(moment))
        for start, end in lead.ready:
            episodes += 1
            inside = [moment for moment in times if start <= moment <= end]
            if inside:
                caught += 1
                waits.append((min(inside) - start) / DAY)
        for index, moment in enumerate(times):
            following = times[index + 1] if index + 1 < len(times) else float("inf")
            recycle = next((r for r in recycled if moment < r < following), None)
            cold = lead.cold_from(moment)
            if cold is not None and cold >= following:
                cold = None  # handed off again before it went cold
            if cold is not None:
                went_cold += 1
            if recycle is None:
                continue
            if cold is not None and recycle >= cold:
                recycled_cold += 1
                cold_delays.append((recycle - cold) / DAY)
            else:
                premature += 1
    return Metrics(
        leads=len(truth),
        episodes=episodes,
        handoffs=handoffs,
        correct=correct,
        caught=caught,
        lead_time_days=statistics.median(waits) if waits else None,
        recycles=recycles,
        went_cold=went_cold,
        recycled_cold=recycled_cold,
        cold_to_recycle_days=statistics.median(cold_delays) if cold_delays else None,
        premature_recycles=premature,
    )


@dataclass(frozen=True)
class Search:
    """The highest threshold found whose recall reaches the target, and what it gave."""

    threshold: float
    recall: float
    tried: dict[float, float]
    """Every threshold evaluated -> its recall."""


def search_threshold(
    recall_at: Callable[[float], float],
    target: float,
    *,
    low: float,
    high: float,
    tolerance: float = 0.01,
) -> Search:
    """Bisection for the boundary where recall falls below `target` as the threshold rises.

    `recall_at(low)` must reach the target and `recall_at(high)` must not.
    Returns a threshold t with recall_at(t) >= target and recall_at(t +
    tolerance) < target (or t + tolerance >= high): the strictest threshold
    that still reaches the target, to within `tolerance`. Recall is a step
    function of the threshold, so it equals the target exactly only where a
    step lands on it; otherwise it is the smallest recall above the target
    at that boundary.
    """
    if not low < high:
        raise ValueError(f"low ({low}) must be below high ({high})")
    tried: dict[float, float] = {}

    def at(threshold: float) -> float:
        if threshold not in tried:
            tried[threshold] = recall_at(threshold)
        return tried[threshold]

    if at(low) < target:
        raise ValueError(
            f"recall at the lowest threshold {low:g} is {tried[low]:.4f}, below the "
            f"target {target:.4f}: no threshold reaches it"
        )
    if at(high) >= target:
        raise ValueError(
            f"recall at the highest threshold {high:g} is {tried[high]:.4f}, still at or "
            f"above the target {target:.4f}: raise the search's upper bound"
        )
    while high - low > tolerance:
        middle = (low + high) / 2
        if at(middle) >= target:
            low = middle
        else:
            high = middle
    return Search(threshold=low, recall=tried[low], tried=tried)
