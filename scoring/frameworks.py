"""Qualification frameworks and the SQL rule: which criteria, and when they qualify.

The frameworks and their criteria are built in (`schemas.feedback`, where the
events that fill them in are validated): BANT, MEDDIC, CHAMP, ANUM and
GPCTBA/C&I, each criterion named snake_case as the framework names it. An
SDR's ``qualification`` events set criteria to met, not_met or unknown; the
statuses of one handoff accumulate (a later event updates the criteria it
names and leaves the others). The model file's ``lifecycle.sql`` rule says
when they make an SQL: every required criterion met, and at least `min_met`
met in all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NamedTuple

from leadpulse.schemas.feedback import FRAMEWORK_CRITERIA, CriterionStatus, Framework
from leadpulse.scoring.model import SqlRule

LABELS: Final[dict[Framework, str]] = {
    Framework.BANT: "BANT",
    Framework.MEDDIC: "MEDDIC",
    Framework.CHAMP: "CHAMP",
    Framework.ANUM: "ANUM",
    Framework.GPCTBA_CI: "GPCTBA/C&I",
}

__all__ = ["FRAMEWORK_CRITERIA", "LABELS", "Check", "check_sql", "criteria_of", "met"]


def criteria_of(framework: Framework) -> tuple[str, ...]:
    return FRAMEWORK_CRITERIA[framework]


def met(statuses: Mapping[str, CriterionStatus]) -> list[str]:
    """The met criteria, in the order given."""
    return [name for name, status in statuses.items() if status is CriterionStatus.MET]


class Check(NamedTuple):
    qualified: bool
    summary: str
    """What a person reads: how many met, what is missing."""


def check_sql(
    rule: SqlRule, framework: Framework, statuses: Mapping[str, CriterionStatus]
) -> Check:
    """Whether `statuses` (one handoff's, in `framework`) meet the SQL rule."""
    label = LABELS[framework]
    done = met(statuses)
    count = f"{label} {len(done)} of {len(criteria_of(framework))} met"
    if framework is not rule.framework:
        return Check(False, f"{count}; the model qualifies on {LABELS[rule.framework]}")
    missing = [name for name in rule.require if name not in done]
    short = rule.needed - len(done)
    if not missing and short <= 0:
        required = f", {', '.join(rule.require)} required" if rule.require else ""
        return Check(True, f"{count} ({', '.join(done)}){required}; min_met {rule.needed}")
    wants = []
    if missing:
        wants.append(f"{', '.join(missing)} met")
    if short > 0:
        wants.append(f"{short} more met (min_met {rule.needed})")
    return Check(False, f"{count}; SQL needs {' and '.join(wants)}")
