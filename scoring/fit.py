"""Fit: who the lead is against the ideal customer profile. No decay: traits
are facts about the lead, so fit is recomputed from the current profile."""

from __future__ import annotations

from pydantic import JsonValue

from schemas import RuleContribution
from scoring.model import ScoringModel


def fit_parts(traits: dict[str, JsonValue], model: ScoringModel) -> tuple[RuleContribution, ...]:
    """Matched fit rules in model order, so explanations read like the file."""
    return tuple(
        RuleContribution(rule=rule.name, points=rule.points)
        for rule in model.fit_rules
        if rule.matches(traits)
    )


def fit_points(traits: dict[str, JsonValue], model: ScoringModel) -> float:
    return sum((check.points for check in model.fit_checks if check.matches(traits)), 0.0)


def grade(fit: float, model: ScoringModel) -> str:
    """The best letter whose threshold `fit` reaches, else the implicit lowest."""
    for letter, threshold in model.grades:
        if fit >= threshold:
            return letter
    return model.lowest_grade


def merge_traits(
    current: dict[str, JsonValue], update: dict[str, JsonValue]
) -> dict[str, JsonValue]:
    """Later values win and JSON null deletes, so a tracker can clear a trait."""
    merged = dict(current)
    for key, value in update.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged
