"""Success-ready tiers: how likely a handed-off lead is to succeed, from the model file.

``tiers:`` is an ordered mapping of tier name to conditions over fit,
engagement and their parts, best first; a handoff gets the first tier whose
every condition holds at the moment of the handoff, else the ``else:`` tier
(null: no tier). Conditions: ``min_fit`` (fit points), ``min_engagement``,
``min_grade`` (that grade or better), ``rules`` (engagement rule -> least
decayed, capped contribution), ``fit_rules`` (fit rules that must match).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from leadpulse.scoring.model import ScoringModel, TierRule


def tier_of(
    model: ScoringModel,
    *,
    engagement: float,
    fit: float,
    grade: str,
    contributions: Mapping[str, float],
    fit_matched: Collection[str],
) -> str | None:
    """The lead's tier, None when the model has no tiers (or its else is null)."""
    tiers = model.spec.tiers
    if tiers is None:
        return None
    for name, rule in tiers.ordered:
        if matches(
            rule,
            model,
            engagement=engagement,
            fit=fit,
            grade=grade,
            contributions=contributions,
            fit_matched=fit_matched,
        ):
            return name
    return tiers.otherwise


def matches(
    rule: TierRule,
    model: ScoringModel,
    *,
    engagement: float,
    fit: float,
    grade: str,
    contributions: Mapping[str, float],
    fit_matched: Collection[str],
) -> bool:
    if rule.min_fit is not None and fit < rule.min_fit:
        return False
    if rule.min_engagement is not None and engagement < rule.min_engagement:
        return False
    if rule.min_grade is not None and not model.grade_at_least(grade, rule.min_grade):
        return False
    for name, least in (rule.rules or {}).items():
        if contributions.get(name, 0.0) < least:
            return False
    return all(name in fit_matched for name in rule.fit_rules or ())
