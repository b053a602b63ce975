"""Every threshold at exact equality, and one step below it.

The model file's words (README, "The scoring model"): *reaching* ``mql`` makes
an MQL and *reaching* ``handoff.engagement`` with *at least* ``min_grade``
hands off (``>=``); *falling below* ``recycle`` recycles, by an event or by
decay alone (``<``: a lead exactly at recycle stays); the grade is the best
letter whose threshold fit *reaches*; tier conditions are minimums (``min_fit``,
``min_engagement``, ``rules: {rule: least points}``); the SQL rule needs *at
least* ``min_met`` criteria met; ``rejection_cooldown`` keeps a rejected lead
out of MQL *that long* (at the end of it, it may come back).

Every case runs at zero elapsed time: the lead's rule values are set at its
clock, and a scoreless event (``noop``) at that same clock makes the engine
decide, so engagement is exactly the literal given. "One step below" is the
next float down (`below`). Expected values are the model's literals below.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from leadpulse.schemas import BehaviorEvent, Stage, StageTransition
from leadpulse.scoring import (
    LeadState,
    RuleState,
    apply,
    evaluate,
    from_epoch,
    grade,
    next_recycle_at,
    parse_model,
    tier_of,
)
from leadpulse.scoring.recycle import TOLERANCE

MODEL = parse_model(
    """\
version: "edges-1"
engagement:
  rules:
    - {name: signal, event: signal, points: 10, half_life: 1h}
    - {name: drag, event: drag, points: -10, half_life: 1h}
fit:
  rules:
    - {name: size, trait: company_size, between: [50, 5000], points: 30}
    - {name: senior, trait: seniority, in: [vp], points: 20}
  grades: {A: 50, B: 30}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
  sql: {framework: meddic, require: [economic_buyer, champion], min_met: 4}
  rejection_cooldown: 1d
tiers:
  excellent: {min_fit: 50, min_engagement: 90, rules: {signal: 60}}
  good: {min_grade: A}
  else: risky
""",
    "edges.yaml",
)
MQL, HANDOFF, RECYCLE = 50.0, 70.0, 25.0
GRADE_A, GRADE_B = 50.0, 30.0
HOUR = 3600.0
E0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC).timestamp()
B_FIT = {"company_size": 800}  # fit 30: grade B exactly
A_FIT = {"company_size": 800, "seniority": "vp"}  # fit 50: grade A exactly


def below(value: float) -> float:
    """The largest float smaller than `value`: the smallest step under a threshold."""
    return math.nextafter(value, -math.inf)


def lead(
    signal: float,
    stage: Stage = Stage.IQL,
    *,
    drag: float | None = None,
    **fields: object,
) -> LeadState:
    """A known lead whose rules hold exactly these points at its clock E0."""
    rules = {"signal": RuleState(signal, E0)}
    if drag is not None:
        rules["drag"] = RuleState(drag, E0)
    return LeadState(lead_id="lead-1", stage=stage, clock=E0, rules=rules, **fields)


def poke(state: LeadState, **properties: object) -> tuple[LeadState, list[StageTransition]]:
    """An event at the lead's clock that scores nothing: the engine decides at zero elapsed."""
    return _at_clock(state, "noop", properties)


def _at_clock(
    state: LeadState, kind: str, properties: dict[str, object]
) -> tuple[LeadState, list[StageTransition]]:
    event = BehaviorEvent(
        event_id="edge-1",
        type=kind,
        lead_id=state.lead_id,
        occurred_at=from_epoch(state.clock),
        properties=properties,
    )
    after, made = apply(state, event, MODEL)
    return after, list(made)


def moves(made: list[StageTransition]) -> list[tuple[Stage, Stage]]:
    return [(t.from_stage, t.to_stage) for t in made]


# --- MQL: engagement >= mql ---------------------------------------------------------


def test_reaching_mql_exactly_makes_an_mql() -> None:
    _, made = poke(lead(MQL))
    assert moves(made) == [(Stage.IQL, Stage.MQL)]
    assert made[0].reason == "engagement 50 ≥ mql 50"
    assert made[0].engagement == 50.0


def test_one_step_below_mql_is_no_mql() -> None:
    after, made = poke(lead(below(MQL)))
    assert made == []
    assert after.stage is Stage.IQL


def test_a_nurture_lead_re_arms_into_mql_at_exactly_mql() -> None:
    _, made = poke(lead(MQL, Stage.NURTURE))
    assert moves(made) == [(Stage.NURTURE, Stage.MQL)]
    _, made = poke(lead(below(MQL), Stage.NURTURE))
    assert made == []


# --- handoff: engagement >= handoff.engagement and grade at least min_grade ---------


def test_reaching_the_handoff_exactly_hands_off() -> None:
    _, made = poke(lead(HANDOFF, Stage.MQL, traits=B_FIT))
    assert moves(made) == [(Stage.MQL, Stage.SAL)]
    assert made[0].reason == "engagement 70 ≥ handoff 70 and grade B ≥ B"
    assert (made[0].fit, made[0].grade) == (30.0, "B")


def test_one_step_below_the_handoff_is_no_handoff() -> None:
    after, made = poke(lead(below(HANDOFF), Stage.MQL, traits=B_FIT))
    assert made == []
    assert after.stage is Stage.MQL


def test_an_iql_at_exactly_the_handoff_becomes_mql_and_is_handed_off() -> None:
    _, made = poke(lead(HANDOFF, traits=B_FIT))
    assert moves(made) == [(Stage.IQL, Stage.MQL), (Stage.MQL, Stage.SAL)]
    _, made = poke(lead(below(HANDOFF), traits=B_FIT))
    assert moves(made) == [(Stage.IQL, Stage.MQL)]


def test_the_handoff_needs_min_grade_and_exactly_min_grade_is_enough() -> None:
    _, made = poke(lead(HANDOFF, Stage.MQL, traits={"company_size": 10}))  # fit 0: grade C
    assert made == []
    _, made = poke(lead(HANDOFF, Stage.MQL, traits=A_FIT))  # A is better than B
    assert moves(made) == [(Stage.MQL, Stage.SAL)]


# --- grades: the best letter whose threshold fit reaches ----------------------------


def test_grades_at_exactly_their_thresholds() -> None:
    assert grade(GRADE_A, MODEL) == "A"
    assert grade(below(GRADE_A), MODEL) == "B"
    assert grade(GRADE_B, MODEL) == "B"
    assert grade(below(GRADE_B), MODEL) == "C"


# --- recycle by an event: engagement < recycle --------------------------------------


@pytest.mark.parametrize("stage", [Stage.MQL, Stage.SAL])
def test_exactly_at_recycle_an_mql_or_sal_stays(stage: Stage) -> None:
    after, made = poke(lead(MQL, stage, drag=-RECYCLE))  # 50 - 25 = 25 exactly
    assert made == []
    assert after.stage is stage


@pytest.mark.parametrize("stage", [Stage.MQL, Stage.SAL])
def test_one_step_below_recycle_an_mql_or_sal_recycles(stage: Stage) -> None:
    after, made = poke(lead(below(RECYCLE), stage))
    assert moves(made) == [(stage, Stage.NURTURE)]
    assert made[0].reason == "engagement 24.99 < recycle 25"
    assert after.armed


def test_the_event_driven_recycle_threshold_is_recycle_not_less() -> None:
    """23 is 8 % under recycle 25: a threshold lowered by 10 % (22.5) would keep it."""
    after, made = poke(lead(23.0, Stage.MQL))
    assert moves(made) == [(Stage.MQL, Stage.NURTURE)]
    assert made[0].reason == "engagement 23 < recycle 25"
    assert after.stage is Stage.NURTURE


def test_a_disarmed_lead_re_arms_only_below_recycle() -> None:
    after, made = poke(lead(RECYCLE, Stage.NURTURE, armed=False))
    assert (made, after.armed) == ([], False)
    after, made = poke(lead(below(RECYCLE), Stage.NURTURE, armed=False))
    assert (made, after.armed) == ([], True)


# --- recycle by decay (the sweeper): the first moment engagement < recycle ----------


def test_a_sweep_at_exactly_recycle_recycles_nothing() -> None:
    at_recycle = lead(RECYCLE, Stage.MQL)
    assert evaluate(at_recycle, E0, MODEL) == (at_recycle, ())
    after, made = evaluate(lead(below(RECYCLE), Stage.MQL), E0, MODEL)
    assert moves(list(made)) == [(Stage.MQL, Stage.NURTURE)]
    assert made[0].reason == "engagement 24.99 < recycle 25 (decay)"
    assert made[0].occurred_at == from_epoch(E0)
    assert (after.stage, after.armed) == (Stage.NURTURE, True)


def test_decay_to_exactly_recycle_is_not_yet_a_recycle() -> None:
    """50 points with a 1 h half-life are exactly 25 an hour later: below only after that."""
    decaying = lead(MQL, Stage.MQL)
    exactly = E0 + HOUR
    assert evaluate(decaying, exactly, MODEL) == (decaying, ())
    _, made = evaluate(decaying, exactly + 1, MODEL)
    assert moves(list(made)) == [(Stage.MQL, Stage.NURTURE)]
    crossing = made[0].occurred_at.timestamp()
    assert exactly < crossing <= exactly + TOLERANCE
    due = next_recycle_at(decaying, MODEL)
    assert due is not None
    assert exactly < due <= exactly + TOLERANCE


def test_decay_to_exactly_recycle_with_a_negative_rule() -> None:
    """60 - 10 points, both halving hourly, are 30 - 5 = 25 an hour later (the reference search)."""
    decaying = lead(60.0, Stage.MQL, drag=-10.0)
    exactly = E0 + HOUR
    assert evaluate(decaying, exactly, MODEL) == (decaying, ())
    due = next_recycle_at(decaying, MODEL)
    assert due is not None
    assert exactly < due <= exactly + TOLERANCE


def test_the_sweep_threshold_is_recycle_not_less() -> None:
    """A threshold lowered by 10 % (22.5) is crossed 547 s after 25 is: too late here."""
    _, made = evaluate(lead(MQL, Stage.MQL), E0 + HOUR + 60, MODEL)
    assert moves(list(made)) == [(Stage.MQL, Stage.NURTURE)]


@pytest.mark.parametrize("drag", [None, -10.0])
def test_when_decay_recycles_a_lead_exactly_at_recycle(drag: float | None) -> None:
    """Positive-only rules take the fast search, a negative rule the reference one."""
    extra = 0.0 if drag is None else -drag
    at_recycle = lead(RECYCLE + extra, Stage.MQL, drag=drag)
    due = next_recycle_at(at_recycle, MODEL)
    assert due is not None
    assert E0 < due <= E0 + TOLERANCE  # still 25 at E0: below only after it
    assert next_recycle_at(lead(below(RECYCLE + extra), Stage.MQL, drag=drag), MODEL) == E0


# --- tiers: every condition a minimum ------------------------------------------------


def tier(engagement: float = 90.0, fit: float = 50.0, signal: float = 60.0) -> str | None:
    return tier_of(
        MODEL,
        engagement=engagement,
        fit=fit,
        grade=grade(fit, MODEL),
        contributions={"signal": signal},
        fit_matched=set(),
    )


def test_tier_conditions_at_exactly_their_minimums() -> None:
    assert tier() == "excellent"
    assert tier(engagement=below(90.0)) == "good"
    assert tier(fit=below(50.0)) == "risky"  # grade B now: not good either
    assert tier(signal=below(60.0)) == "good"


def test_a_handoff_at_exactly_the_tier_minimums_gets_that_tier() -> None:
    _, made = poke(lead(90.0, Stage.MQL, traits=A_FIT))
    assert moves(made) == [(Stage.MQL, Stage.SAL)]
    assert made[0].tier == "excellent"
    _, made = poke(lead(below(90.0), Stage.MQL, traits=A_FIT))
    assert made[0].tier == "good"


# --- the SQL rule: required criteria met and at least min_met met -----------------


def qualify(**criteria: str) -> tuple[LeadState, list[StageTransition]]:
    sal = lead(80.0, Stage.SAL, handoff_id="h-1", handoff_at=E0)
    properties = {"handoff_id": "h-1", "framework": "meddic", "criteria": criteria}
    return _at_clock(sal, "qualification", properties)


REQUIRED = {"economic_buyer": "met", "champion": "met"}


def test_exactly_min_met_criteria_make_an_sql() -> None:
    _, made = qualify(**REQUIRED, metrics="met", identify_pain="met")
    assert moves(made) == [(Stage.SAL, Stage.SQL)]
    assert made[0].reason == (
        "sales qualified the lead: MEDDIC 4 of 6 met "
        "(economic_buyer, champion, metrics, identify_pain), economic_buyer, champion required; "
        "min_met 4"
    )


def test_one_criterion_short_of_min_met_is_no_sql() -> None:
    after, made = qualify(**REQUIRED, metrics="met", identify_pain="not_met")
    assert made == []
    assert after.stage is Stage.SAL
    assert after.feedback[-1].outcome == "MEDDIC 3 of 6 met; SQL needs 1 more met (min_met 4)"


def test_min_met_without_a_required_criterion_is_no_sql() -> None:
    after, made = qualify(
        economic_buyer="met", metrics="met", identify_pain="met", decision_process="met"
    )
    assert made == []
    assert after.feedback[-1].outcome == "MEDDIC 4 of 6 met; SQL needs champion met"


# --- rejection_cooldown: out of MQL that long, and no longer ------------------------


def test_mql_again_exactly_when_the_cooldown_ends() -> None:
    _, made = poke(lead(MQL, Stage.NURTURE, cooldown_until=E0))
    assert moves(made) == [(Stage.NURTURE, Stage.MQL)]
    _, made = poke(lead(MQL, Stage.NURTURE, cooldown_until=math.nextafter(E0, math.inf)))
    assert made == []
