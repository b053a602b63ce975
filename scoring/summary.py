"""A model file read back in plain words, for ``leadpulse model check``."""

from __future__ import annotations

from leadpulse.scoring.durations import format_duration
from leadpulse.scoring.frameworks import LABELS
from leadpulse.scoring.matchers import number
from leadpulse.scoring.model import ScoringModel


def _points(points: float) -> str:
    return ("+" if points > 0 else "") + number(points)


def summary(model: ScoringModel) -> str:
    lines = [f"model {model.model_version} ({model.source})"]
    rules = model.engagement_rules
    lines.append(f"engagement rules ({len(rules)}):")
    name_width = max(len(rule.name) for rule in rules)
    event_width = max(len(rule.event) for rule in rules)
    for rule in rules:
        cap = f"  cap {number(rule.cap)}" if rule.cap is not None else ""
        when = f"  when {' and '.join(str(c) for c in rule.when)}" if rule.when else ""
        life = (
            "no decay" if rule.half_life is None else f"half-life {format_duration(rule.half_life)}"
        )
        window = f"  window {format_duration(rule.window)}" if rule.window is not None else ""
        lines.append(
            f"  {rule.name:<{name_width}}  {rule.event:<{event_width}}  "
            f"{_points(rule.points):>6}  {life:<14}{window}{cap}{when}"
        )
    fits = model.fit_rules
    lines.append(f"fit rules ({len(fits)}):")
    width = max((len(rule.name) for rule in fits), default=0)
    lines.extend(
        f"  {fit_rule.name:<{width}}  {_points(fit_rule.points):>6}  "
        f"{'.'.join(fit_rule.trait)} {fit_rule.describe_op()}"
        for fit_rule in fits
    )
    grades = ", ".join(f"{letter} ≥ {number(threshold)}" for letter, threshold in model.grades)
    lines.append(f"grades: {grades}, else {model.lowest_grade}")
    lifecycle = model.lifecycle
    lines.append(
        f"lifecycle: MQL at engagement ≥ {number(lifecycle.mql)}; handoff (MQL→SAL) at "
        f"≥ {number(lifecycle.handoff.engagement)} with grade {lifecycle.handoff.min_grade} or "
        f"better; recycle to nurture below {number(lifecycle.recycle)}"
    )
    sql = lifecycle.sql
    if sql is not None:
        required = f" with {', '.join(sql.require)} met" if sql.require else ""
        lines.append(
            f"sales qualified (SAL→SQL): {LABELS[sql.framework]} {sql.needed} of "
            f"{len(sql.criteria)} criteria met{required}"
        )
    if lifecycle.rejection_cooldown is not None:
        lines.append(
            f"a rejected lead stays out of MQL for {format_duration(lifecycle.rejection_cooldown)}"
        )
    if model.spec.tiers is not None:
        names = [name for name, _ in model.spec.tiers.ordered]
        otherwise = model.spec.tiers.otherwise or "none"
        lines.append(f"handoff tiers, first match: {', '.join(names)}; else {otherwise}")
    carried = ", ".join(model.profile_traits) or "no traits"
    source = "declared" if lifecycle.handoff.profile is not None else "default: the fit traits"
    lines.append(f"handoff profile ({source}): {carried}")
    limits = model.limits
    lines.append(
        f"limits: {limits.max_traits} traits besides the {len(model.declared_traits)} the model "
        f"reads; {limits.max_trait_bytes} bytes of JSON per trait value; the "
        f"{limits.max_merged_from} most recent merged ids; the {limits.feedback_kept} most "
        "recent feedback events"
        + (
            f"; the {limits.window_events_kept} most recent event times per window rule"
            if model.window_specs
            else ""
        )
    )
    if model.event_names:
        mapped = ", ".join(f"{name!r} → {kind}" for name, kind in model.event_names.items())
        lines.append(f"segment events: {mapped}")
    return "\n".join(line.rstrip() for line in lines)
