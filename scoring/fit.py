"""Fit: who the lead is against the ideal customer profile. No decay: traits
are facts about the lead, so fit is recomputed from the current profile."""

from __future__ import annotations

import json

from pydantic import JsonValue

from leadpulse.schemas import RuleContribution
from leadpulse.scoring.model import ScoringModel


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
    current: dict[str, JsonValue], update: dict[str, JsonValue], model: ScoringModel
) -> tuple[dict[str, JsonValue], int]:
    """Later values win and JSON null deletes, so a tracker can clear a trait.

    Bounded by `model.limits` (see `Limits`): an oversize value is dropped and
    the key keeps its old value; a new key the model does not read is dropped
    once max_traits such keys are held. Returns the traits and how many values
    were dropped.
    """
    return _merge_bounded(current, update, model, model.declared_traits)


def merge_account_traits(
    current: dict[str, JsonValue], update: dict[str, JsonValue], model: ScoringModel
) -> tuple[dict[str, JsonValue], int]:
    """`merge_traits` for the traits of a lead's account (a ``group`` call's traits).

    The same rules and limits, except that no key is exempt from max_traits:
    the model reads no account traits, so an account holds at most max_traits
    of them. Returns the traits and how many values were dropped.
    """
    return _merge_bounded(current, update, model, frozenset())


def _merge_bounded(
    current: dict[str, JsonValue],
    update: dict[str, JsonValue],
    model: ScoringModel,
    declared: frozenset[str],
) -> tuple[dict[str, JsonValue], int]:
    """`current` updated by `update`; keys in `declared` never count against max_traits."""
    limits = model.limits
    merged = dict(current)
    dropped = 0
    room: int | None = None  # undeclared keys that still fit, counted when first needed
    for key, value in update.items():
        if value is None:
            if merged.pop(key, None) is not None and room is not None and key not in declared:
                room += 1
        elif not fits(value, limits.max_trait_bytes):
            dropped += 1
        elif key in merged or key in declared:
            merged[key] = value
        else:
            if room is None:
                room = limits.max_traits - sum(1 for k in merged if k not in declared)
            if room > 0:
                merged[key] = value
                room -= 1
            else:
                dropped += 1
    return merged, dropped


def fits(value: JsonValue, limit: int) -> bool:
    """Whether `value` is at most `limit` bytes as compact JSON (UTF-8)."""
    if isinstance(value, str) and 6 * len(value) + 2 <= limit:
        return True  # no character's JSON form is longer than 6 bytes
    if limit >= 24 and (
        isinstance(value, bool | float) or (isinstance(value, int) and abs(value) < 10**15)
    ):
        return True  # a float's JSON form is at most 24 bytes
    encoded = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return len(encoded.encode()) <= limit
