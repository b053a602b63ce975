"""Why a score is what it is, in parts that add up to the number shown."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict

from leadpulse.schemas import Stage
from leadpulse.scoring.engine import contributions, engagement
from leadpulse.scoring.epoch import Instant, as_epoch, from_epoch
from leadpulse.scoring.fit import fit_parts, grade
from leadpulse.scoring.model import ScoringModel
from leadpulse.scoring.state import LeadState

FLOOR_PART: Final = "floor-at-zero"
NEGLIGIBLE: Final = 1e-9
"""Parts smaller than this (long-decayed rules) are left out of the listing."""

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class Part(BaseModel):
    """One rule's share; `raw_points` is the uncapped value when a cap bit."""

    model_config = _FROZEN

    rule: str
    points: float
    raw_points: float | None = None
    capped: bool = False


class Explanation(BaseModel):
    """Engagement parts always sum to `engagement`: when the rules add up to
    less than zero a `floor-at-zero` part makes up the difference. `notes`
    say what was bent to keep the state sane (clamped times, dropped traits)."""

    model_config = _FROZEN

    lead_id: str
    at: datetime
    stage: Stage
    engagement: float
    fit: float
    grade: str
    model_version: str
    parts: tuple[Part, ...]
    fit_parts: tuple[Part, ...]
    notes: tuple[str, ...] = ()


def explain(state: LeadState, at: Instant, model: ScoringModel) -> Explanation:
    moment = max(as_epoch(at), state.clock)
    parts = []
    for name, points, raw in contributions(state, moment, model):
        if abs(points) < NEGLIGIBLE:
            continue
        capped = points != raw
        parts.append(
            Part(rule=name, points=points, raw_points=raw if capped else None, capped=capped)
        )
    parts.sort(key=lambda part: (-abs(part.points), part.rule))
    score = engagement(state, moment, model)
    if score == 0.0:
        listed = sum(part.points for part in parts)
        if listed < 0:
            parts.append(Part(rule=FLOOR_PART, points=-listed))
    fits = fit_parts(state.traits, model)
    fit = sum((part.points for part in fits), 0.0)
    return Explanation(
        lead_id=state.lead_id,
        at=from_epoch(moment),
        stage=state.stage,
        engagement=score,
        fit=fit,
        grade=grade(fit, model),
        model_version=model.model_version,
        parts=tuple(parts),
        fit_parts=tuple(Part(rule=part.rule, points=part.points) for part in fits),
        notes=notes(state, model),
    )


def notes(state: LeadState, model: ScoringModel) -> tuple[str, ...]:
    """Plain-words notes on what the limits and the clock bound changed for this lead."""
    found = []
    clamp = state.last_clamp
    if state.clamped_events and clamp is not None:
        found.append(
            f"{state.clamped_events} event(s) reported a time later than their record time "
            f"+ skew and were scored at that bound; the last, {clamp.event_id}, reported "
            f"{from_epoch(clamp.reported_at).isoformat()} and was clamped to "
            f"{from_epoch(clamp.clamped_to).isoformat()}"
        )
    if state.traits_dropped:
        limits = model.limits
        found.append(
            f"{state.traits_dropped} trait value(s) were dropped by the model's limits "
            f"(max_traits {limits.max_traits} besides the traits the model reads, "
            f"max_trait_bytes {limits.max_trait_bytes})"
        )
    if state.window_events_dropped:
        found.append(
            f"{state.window_events_dropped} in-window event time(s) of window rules were "
            f"dropped, the oldest first, by the model's limits (max_window_events "
            f"{model.limits.window_events_kept}): those rules may count less than their events"
        )
    if state.account_traits_dropped:
        limits = model.limits
        found.append(
            f"{state.account_traits_dropped} account trait value(s) were dropped by the "
            f"model's limits (max_traits {limits.max_traits}, "
            f"max_trait_bytes {limits.max_trait_bytes})"
        )
    return tuple(found)


def explanation_dict(explanation: Explanation) -> dict[str, Any]:
    """JSON-ready, for the CLI and the HTTP endpoint."""
    return explanation.model_dump(mode="json")
