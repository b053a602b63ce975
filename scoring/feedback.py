"""What sales feedback does to a lead: the feedback half of the lifecycle.

A feedback event answers one handoff, the lead's current one (its latest
MQL->SAL transition id). Feedback naming another handoff id is *stale*: it
is recorded in the lead's history and changes nothing else. Otherwise:

- ``sales_accepted``: recorded with the time it took (the first acceptance of
  a handoff counts; later ones are recorded as repeats). No stage changes:
  an accepted SAL is still a SAL.
- ``qualification``: the criteria it names update the handoff's status in
  its framework (statuses accumulate per handoff). A SAL whose status meets
  the model's ``lifecycle.sql`` rule moves to SQL. Without that rule, or in
  another framework, nothing moves.
- ``sales_rejected``: a SAL or SQL moves to NURTURE *disarmed*: it cannot
  become an MQL again until its engagement falls below recycle, nor before
  ``lifecycle.rejection_cooldown`` has passed since the rejection.
- ``disqualified``: any stage but DISQUALIFIED moves to DISQUALIFIED,
  disarmed; a disqualified lead never moves on its own (no MQL, no handoff,
  no recycle).
- ``requalify``: DISQUALIFIED moves to NURTURE, keeping its arming: a lead
  whose engagement fell below recycle while disqualified is armed, one that
  did not must fall below recycle first.
- ``sales_qualified`` (legacy): a SAL moves to SQL on the SDR's word.

So no sequence of feedback can hand a lead off twice without its engagement
falling below recycle in between: every feedback move out of SAL disarms it
or keeps it out of the MQL stages. Feedback in a stage that does not allow it
(rejecting a lead already in nurture) is recorded as not applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Final

from leadpulse.schemas import Stage
from leadpulse.schemas.feedback import (
    FRAMEWORK_CRITERIA,
    CriterionStatus,
    Disqualified,
    Feedback,
    Framework,
    Qualification,
    Requalify,
    SalesAccepted,
    SalesQualified,
    SalesRejected,
)
from leadpulse.scoring.durations import format_duration
from leadpulse.scoring.epoch import from_epoch
from leadpulse.scoring.frameworks import LABELS, check_sql
from leadpulse.scoring.lifecycle import Move, show
from leadpulse.scoring.model import ScoringModel
from leadpulse.scoring.state import FeedbackEntry, LeadState

ANSWERED: Final = frozenset({Stage.SAL, Stage.SQL})
"""Stages in which sales can reject a lead."""


@dataclass(frozen=True)
class Funnel:
    """The part of a lead that feedback reads and changes."""

    stage: Stage
    armed: bool
    handoff_id: str | None
    handoff_at: float | None
    accepted_at: float | None
    qualification: dict[str, dict[str, CriterionStatus]] = field(default_factory=dict)
    cooldown_until: float | None = None


@dataclass(frozen=True)
class Judgement:
    funnel: Funnel
    move: Move | None
    entry: FeedbackEntry


def judge(
    funnel: Funnel,
    feedback: Feedback,
    *,
    event_id: str,
    event_type: str,
    at: float,
    model: ScoringModel,
) -> Judgement:
    """What `feedback` (event `event_id`, applied at the lead's clock `at`) does."""
    named = feedback.handoff_id
    entry = FeedbackEntry(
        event_id=event_id, type=event_type, at=at, handoff_id=named, applied=True, outcome=""
    )
    if named is not None and named != funnel.handoff_id:
        current = funnel.handoff_id or "none yet"
        return Judgement(
            funnel,
            None,
            _with(
                entry,
                feedback,
                applied=False,
                stale=True,
                outcome=f"not applied: answers handoff {named}, the current one is {current}",
            ),
        )
    if isinstance(feedback, SalesAccepted):
        return _accepted(funnel, feedback, entry, at)
    if isinstance(feedback, Qualification):
        return _qualification(funnel, feedback, entry, model)
    if isinstance(feedback, SalesRejected):
        return _rejected(funnel, feedback, entry, at, model)
    if isinstance(feedback, Disqualified):
        return _disqualified(funnel, feedback, entry)
    if isinstance(feedback, Requalify):
        return _requalify(funnel, feedback, entry, model)
    return _legacy_qualified(funnel, feedback, entry)


def _with(entry: FeedbackEntry, feedback: Feedback, **update: object) -> FeedbackEntry:
    """`entry` with what `feedback` says (reason, note, framework) and `update`."""
    details: dict[str, object] = {}
    if isinstance(feedback, SalesRejected | Disqualified):
        details["reason"] = None if feedback.reason is None else str(feedback.reason)
        details["note"] = feedback.note
    if isinstance(feedback, Qualification):
        details["framework"] = feedback.framework.value
        details["criteria"] = dict(feedback.criteria)
        details["note"] = feedback.notes
    return entry.model_copy(update={**details, **update})


def _not_applied(funnel: Funnel, feedback: Feedback, entry: FeedbackEntry, why: str) -> Judgement:
    return Judgement(
        funnel, None, _with(entry, feedback, applied=False, outcome=f"not applied: {why}")
    )


def _accepted(
    funnel: Funnel, feedback: SalesAccepted, entry: FeedbackEntry, at: float
) -> Judgement:
    if funnel.accepted_at is not None:
        when = from_epoch(funnel.accepted_at).isoformat()
        return _not_applied(funnel, feedback, entry, f"the handoff was already accepted at {when}")
    took = at - (funnel.handoff_at if funnel.handoff_at is not None else at)
    outcome = f"sales accepted the handoff {format_duration(took) if took > 0 else '0s'} after it"
    return Judgement(replace(funnel, accepted_at=at), None, _with(entry, feedback, outcome=outcome))


def _qualification(
    funnel: Funnel, feedback: Qualification, entry: FeedbackEntry, model: ScoringModel
) -> Judgement:
    framework = feedback.framework
    statuses = {**funnel.qualification.get(framework.value, {}), **feedback.criteria}
    qualification = {**funnel.qualification, framework.value: statuses}
    updated = replace(funnel, qualification=qualification)
    rule = model.lifecycle.sql
    if rule is None:
        summary = f"{LABELS[framework]} recorded; the model has no lifecycle.sql rule"
        return Judgement(updated, None, _with(entry, feedback, outcome=summary))
    check = check_sql(rule, framework, statuses)
    if check.qualified and funnel.stage is Stage.SAL:
        move = Move(Stage.SQL, f"sales qualified the lead: {check.summary}")
        return Judgement(
            replace(updated, stage=Stage.SQL), move, _with(entry, feedback, outcome=move.reason)
        )
    summary = check.summary
    if check.qualified:
        summary += f" (the lead is {funnel.stage.value.upper()}, not SAL: no move)"
    return Judgement(updated, None, _with(entry, feedback, outcome=summary))


def _rejected(
    funnel: Funnel, feedback: SalesRejected, entry: FeedbackEntry, at: float, model: ScoringModel
) -> Judgement:
    if funnel.stage not in ANSWERED:
        return _not_applied(
            funnel, feedback, entry, f"the lead is {funnel.stage.value.upper()}, not SAL or SQL"
        )
    why = f" ({feedback.reason.value})" if feedback.reason is not None else ""
    cooldown = model.lifecycle.rejection_cooldown
    until = None if cooldown is None else at + cooldown
    later = f" and not before {from_epoch(until).isoformat()}" if until is not None else ""
    move = Move(
        Stage.NURTURE,
        f"sales rejected the lead{why}; it re-arms once engagement falls below recycle "
        f"{show(model.lifecycle.recycle)}{later}",
    )
    if cooldown is not None:
        move = Move(
            move.to_stage, move.reason + f" (rejection_cooldown {format_duration(cooldown)})"
        )
    updated = replace(funnel, stage=Stage.NURTURE, armed=False, cooldown_until=until)
    return Judgement(updated, move, _with(entry, feedback, outcome=move.reason))


def _disqualified(funnel: Funnel, feedback: Disqualified, entry: FeedbackEntry) -> Judgement:
    if funnel.stage is Stage.DISQUALIFIED:
        return _not_applied(funnel, feedback, entry, "the lead is already disqualified")
    move = Move(
        Stage.DISQUALIFIED,
        f"sales disqualified the lead ({feedback.reason}); it never hands off again until a "
        "requalify",
    )
    updated = replace(funnel, stage=Stage.DISQUALIFIED, armed=False)
    return Judgement(updated, move, _with(entry, feedback, outcome=move.reason))


def _requalify(
    funnel: Funnel, feedback: Requalify, entry: FeedbackEntry, model: ScoringModel
) -> Judgement:
    if funnel.stage is not Stage.DISQUALIFIED:
        return _not_applied(
            funnel, feedback, entry, f"the lead is {funnel.stage.value.upper()}, not disqualified"
        )
    if funnel.armed:
        arming = "armed: its engagement fell below recycle while it was disqualified"
    else:
        arming = f"it re-arms once engagement falls below recycle {show(model.lifecycle.recycle)}"
    move = Move(Stage.NURTURE, f"sales requalified the lead; {arming}")
    updated = replace(funnel, stage=Stage.NURTURE)
    return Judgement(updated, move, _with(entry, feedback, outcome=move.reason))


def _legacy_qualified(funnel: Funnel, feedback: SalesQualified, entry: FeedbackEntry) -> Judgement:
    if funnel.stage is not Stage.SAL:
        return _not_applied(
            funnel, feedback, entry, f"the lead is {funnel.stage.value.upper()}, not SAL"
        )
    move = Move(Stage.SQL, "sales qualified the lead")
    return Judgement(
        replace(funnel, stage=Stage.SQL), move, _with(entry, feedback, outcome=move.reason)
    )


def sales_view(state: LeadState, model: ScoringModel) -> dict[str, Any]:
    """The lead's feedback as JSON: current handoff, acceptance, framework status, history.

    What ``GET /leads/{id}`` and ``leadpulse lead`` show under ``sales``. Times
    are ISO 8601; `time_to_accept_seconds` is None until sales accepted.
    Framework status lists every criterion of each framework sales used on
    the current handoff (and the model's SQL framework), unknown when not given.
    """
    rule = model.lifecycle.sql
    used = list(state.qualification)
    if rule is not None and rule.framework.value not in used:
        used.insert(0, rule.framework.value)
    frameworks = []
    for name in used:
        framework = Framework(name)
        given = state.qualification.get(name, {})
        statuses = {c: given.get(c, CriterionStatus.UNKNOWN) for c in FRAMEWORK_CRITERIA[framework]}
        entry: dict[str, Any] = {
            "framework": name,
            "label": LABELS[framework],
            "criteria": {c: s.value for c, s in statuses.items()},
            "met": sum(s is CriterionStatus.MET for s in statuses.values()),
            "of": len(statuses),
        }
        if rule is not None:
            check = check_sql(rule, framework, given)
            entry["sql"] = {"qualified": check.qualified, "summary": check.summary}
        frameworks.append(entry)
    took = (
        state.accepted_at - state.handoff_at
        if state.accepted_at is not None and state.handoff_at is not None
        else None
    )
    return {
        "handoff_id": state.handoff_id,
        "handed_off_at": _iso(state.handoff_at),
        "tier": state.handoff_tier,
        "accepted_at": _iso(state.accepted_at),
        "time_to_accept_seconds": took,
        "armed": state.armed,
        "cooldown_until": _iso(state.cooldown_until),
        "rearmed_at": _iso(state.rearmed_at),
        "frameworks": frameworks,
        "history": [
            {**entry.model_dump(mode="json", exclude={"at"}), "at": _iso(entry.at)}
            for entry in state.feedback
        ],
    }


def _iso(moment: float | None) -> str | None:
    return None if moment is None else from_epoch(moment).isoformat()
