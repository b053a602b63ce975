"""`apply_many`, `evaluate` and `next_recycle_at` give exactly what the reference gives.

The reference below is the engine written plainly from the README's semantics
(one pydantic copy per step, fit on every event, the generic branch-and-bound
`recycle.first_below`), and it does not use the engine's own decay, threshold
or reason helpers: decay, the funnel thresholds, the move reasons and the
top reasons are re-implemented here. States and transitions must match it
field for field, floats to the bit. It still borrows fit matching and trait
merging (`fit_points`, `merge_traits`), the plain dip search and
`transition_id` (pinned by tests/unit/test_golden_ids.py).
"""

from __future__ import annotations

import math
from datetime import timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadpulse.schemas import BehaviorEvent, RuleContribution, Stage, StageTransition
from leadpulse.scoring import (
    Clamp,
    LeadState,
    RuleState,
    ScoringModel,
    apply,
    apply_many,
    default_model,
    evaluate,
    new_lead,
    next_recycle_at,
    parse_model,
    transition_id,
)
from leadpulse.scoring.epoch import from_epoch, to_epoch
from leadpulse.scoring.fit import fit_points, merge_traits
from leadpulse.scoring.recycle import Term, first_below, horizon, lower_bound
from tests.unit.test_scoring_engine import MODEL, MODEL_TEXT, T0

CHECK = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# -- the reference: the engine from its definition -----------------------------------

RECYCLABLE = (Stage.MQL, Stage.SAL)
TOP_REASONS = 5
Move = tuple[Stage, str]


def ref_decayed(value: float, elapsed: float, half_life: float) -> float:
    """points * 2^(-elapsed / half_life)."""
    return value * math.exp2(-elapsed / half_life)


def ref_add(pair: RuleState | None, points: float, at: float, half_life: float) -> RuleState:
    """One more event in a rule's sum, referred to the later of the two times."""
    if pair is None:
        return RuleState(points, at)
    ref = max(pair.ref, at)
    return RuleState(
        ref_decayed(pair.value, ref - pair.ref, half_life)
        + ref_decayed(points, ref - at, half_life),
        ref,
    )


def ref_contributions(state: LeadState, at: float, model: ScoringModel) -> list[tuple[str, float]]:
    """(rule, decayed points clamped to +-cap), in model order, at `at` (not before the clock)."""
    moment = max(at, state.clock)
    found = []
    for rule in model.engagement_rules:
        pair = state.rules.get(rule.name)
        if pair is not None:
            value = ref_decayed(pair.value, moment - pair.ref, rule.half_life)
            if rule.cap is not None:
                value = min(rule.cap, max(-rule.cap, value))
            found.append((rule.name, value))
    return found


def ref_engagement(state: LeadState, at: float, model: ScoringModel) -> float:
    return max(0.0, sum((points for _, points in ref_contributions(state, at, model)), 0.0))


def ref_top_reasons(state: LeadState, at: float, model: ScoringModel) -> list[RuleContribution]:
    """The rules contributing most (by size, then name), zeros left out."""
    ranked = sorted(
        ((name, points) for name, points in ref_contributions(state, at, model) if points != 0),
        key=lambda item: (-abs(item[1]), item[0]),
    )
    return [RuleContribution(rule=name, points=points) for name, points in ranked[:TOP_REASONS]]


def ref_grade(fit: float, model: ScoringModel) -> str:
    """The best letter whose threshold fit reaches, else the letter after the last."""
    for letter, threshold in model.spec.fit.grades.items():
        if fit >= threshold:
            return letter
    return chr(ord(list(model.spec.fit.grades)[-1]) + 1)


def ref_show(number: float) -> str:
    """A number in a reason: rounded down to 0.01, no trailing zeros."""
    text = f"{Decimal(number).quantize(Decimal('0.01'), rounding=ROUND_FLOOR):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def ref_recycle(score: float, model: ScoringModel, cause: str = "") -> Move:
    return (
        Stage.NURTURE,
        f"engagement {ref_show(score)} < recycle {ref_show(model.lifecycle.recycle)}{cause}",
    )


def ref_threshold_moves(
    stage: Stage, armed: bool, score: float, letter: str, model: ScoringModel
) -> tuple[list[Move], Stage, bool]:
    """Below recycle: recycle (and re-arm); reaching mql: MQL; reaching handoff with
    at least min_grade: SAL."""
    lifecycle = model.lifecycle
    if score < lifecycle.recycle:
        if stage in RECYCLABLE:
            return [ref_recycle(score, model)], Stage.NURTURE, True
        return [], stage, True
    moves: list[Move] = []
    if stage in (Stage.IQL, Stage.NURTURE) and armed and score >= lifecycle.mql:
        moves.append((Stage.MQL, f"engagement {ref_show(score)} ≥ mql {ref_show(lifecycle.mql)}"))
        stage = Stage.MQL
    handoff = lifecycle.handoff
    letters = [*model.spec.fit.grades, ref_grade(-math.inf, model)]
    good_enough = letters.index(letter) <= letters.index(handoff.min_grade)
    if stage is Stage.MQL and score >= handoff.engagement and good_enough:
        moves.append(
            (
                Stage.SAL,
                f"engagement {ref_show(score)} ≥ handoff {ref_show(handoff.engagement)} "
                f"and grade {letter} ≥ {handoff.min_grade}",
            )
        )
        stage = Stage.SAL
    return moves, stage, armed


def ref_sales_move(stage: Stage, kind: str, model: ScoringModel) -> Move | None:
    """The legacy verdicts: qualified moves a SAL to SQL, rejected a SAL/SQL to nurture."""
    if kind == "sales_qualified" and stage is Stage.SAL:
        return (Stage.SQL, "sales qualified the lead")
    if kind == "sales_rejected" and stage in (Stage.SAL, Stage.SQL):
        recycle = ref_show(model.lifecycle.recycle)
        return (
            Stage.NURTURE,
            f"sales rejected the lead; it re-arms once engagement falls below recycle {recycle}",
        )
    return None


def ref_clamp_note(event: BehaviorEvent) -> str:
    assert event.reported_at is not None
    return (
        f" (event time clamped from {event.reported_at.isoformat()} to "
        f"{event.occurred_at.isoformat()}, the record time + skew)"
    )


def ref_terms(state: LeadState, model: ScoringModel) -> list[Term]:
    found = []
    for rule in model.engagement_rules:
        pair = state.rules.get(rule.name)
        if pair is not None:
            found.append(Term(pair, rule.half_life, rule.cap))
    return found


def ref_first_dip(state: LeadState, model: ScoringModel, until: float | None) -> float | None:
    threshold = model.lifecycle.recycle
    if threshold <= 0:
        return None
    found = ref_terms(state, model)
    start = state.clock
    if until is not None and lower_bound(found, start, until) >= threshold:
        return None
    dip = first_below(found, threshold, start, horizon(found, start))
    if dip is None or (until is not None and dip > until):
        return None
    return dip


def ref_record(
    state: LeadState,
    moves: list[Move],
    *,
    at: float,
    score: float,
    fit: float,
    letter: str,
    model: ScoringModel,
    event_id: str | None,
) -> tuple[LeadState, list[StageTransition]]:
    reasons = ref_top_reasons(state, at, model)
    occurred_at = from_epoch(at)
    stage, seq = state.stage, state.transition_seq
    made = []
    for to_stage, reason in moves:
        seq += 1
        made.append(
            StageTransition(
                transition_id=transition_id(
                    state.lead_id,
                    stage,
                    to_stage,
                    event_id=event_id,
                    crossing=at if event_id is None else None,
                ),
                lead_id=state.lead_id,
                from_stage=stage,
                to_stage=to_stage,
                engagement=score,
                fit=fit,
                grade=letter,
                occurred_at=occurred_at,
                model_version=model.model_version,
                reason=reason,
                event_id=event_id,
                reasons=reasons,
            )
        )
        stage = to_stage
    return state.model_copy(update={"stage": stage, "transition_seq": seq}), made


def ref_decay_until(
    state: LeadState, until: float, model: ScoringModel
) -> tuple[LeadState, list[StageTransition]]:
    recyclable = state.stage in RECYCLABLE
    if not recyclable and (state.stage is not Stage.NURTURE or state.armed):
        return state, []
    dip = ref_first_dip(state, model, until)
    if dip is None:
        return state, []
    if not recyclable:
        return state.model_copy(update={"armed": True}), []
    score = ref_engagement(state, dip, model)
    fit = fit_points(state.traits, model)
    moved, made = ref_record(
        state,
        [ref_recycle(score, model, " (decay)")],
        at=dip,
        score=score,
        fit=fit,
        letter=ref_grade(fit, model),
        model=model,
        event_id=None,
    )
    return moved.model_copy(update={"armed": True, "clock": max(state.clock, dip)}), made


def ref_apply(
    state: LeadState, event: BehaviorEvent, model: ScoringModel
) -> tuple[LeadState, tuple[StageTransition, ...]]:
    if event.subject != state.lead_id:
        raise ValueError(f"event {event.event_id} is for {event.subject!r}, not {state.lead_id!r}")
    moment = to_epoch(event.occurred_at)
    transitions: list[StageTransition] = []
    if not state.anonymous and moment > state.clock:
        state, transitions = ref_decay_until(state, moment, model)
    rules = state.rules
    matched = [
        rule for rule in model.rules_by_event.get(event.type, ()) if rule.matches(event.properties)
    ]
    if matched:
        rules = dict(rules)
        for rule in matched:
            rules[rule.name] = ref_add(rules.get(rule.name), rule.points, moment, rule.half_life)
    traits, dropped = (
        merge_traits(state.traits, event.traits, model) if event.traits else (state.traits, 0)
    )
    clamp = state.last_clamp
    if event.reported_at is not None:
        clamp = Clamp(
            event_id=event.event_id, reported_at=to_epoch(event.reported_at), clamped_to=moment
        )
    state = state.model_copy(
        update={
            "rules": rules,
            "traits": traits,
            "traits_dropped": state.traits_dropped + dropped,
            "clamped_events": state.clamped_events + (event.reported_at is not None),
            "last_clamp": clamp,
            "clock": max(state.clock, moment),
            "events_applied": state.events_applied + 1,
            "model_version": model.model_version,  # the model that folded it
        }
    )
    if state.anonymous:
        return state, tuple(transitions)
    score = ref_engagement(state, state.clock, model)
    fit = fit_points(state.traits, model)
    letter = ref_grade(fit, model)
    stage, armed = state.stage, state.armed
    moves: list[Move] = []
    verdict = ref_sales_move(stage, event.type, model)
    if verdict is not None:
        moves.append(verdict)
        stage = verdict[0]
        if stage is Stage.NURTURE:
            armed = False
    more, stage, armed = ref_threshold_moves(stage, armed, score, letter, model)
    moves += more
    if armed != state.armed:
        state = state.model_copy(update={"armed": armed})
    if not moves:
        return state, tuple(transitions)
    if event.reported_at is not None:
        moves = [(to_stage, reason + ref_clamp_note(event)) for to_stage, reason in moves]
    state, made = ref_record(
        state,
        moves,
        at=state.clock,
        score=score,
        fit=fit,
        letter=letter,
        model=model,
        event_id=event.event_id,
    )
    return state, (*transitions, *made)


def ref_evaluate(
    state: LeadState, at: float, model: ScoringModel
) -> tuple[LeadState, tuple[StageTransition, ...]]:
    if state.anonymous or at < state.clock:
        return state, ()
    updated, made = ref_decay_until(state, at, model)
    if updated is not state:  # a changed state records the model that changed it
        updated = updated.model_copy(update={"model_version": model.model_version})
    return updated, tuple(made)


def ref_next_recycle_at(state: LeadState, model: ScoringModel) -> float | None:
    if state.anonymous or state.stage not in RECYCLABLE:
        return None
    return ref_first_dip(state, model, None)


# -- event sequences -----------------------------------------------------------------

KINDS = ["ping", "ping", "big", "drop", "noop", "identify", "sales_qualified", "sales_rejected"]
TIERS = [None, "gold", "silver", "bronze"]

steps = st.lists(
    st.tuples(
        st.sampled_from(KINDS),
        st.floats(-2 * 3600, 3 * 86400),  # time step; negative = a late event
        st.integers(0, 9),
        st.booleans(),
        st.sampled_from(TIERS),
    ),
    min_size=1,
    max_size=40,
)


def build(items: list[tuple[str, float, int, bool, str | None]], anonymous: bool) -> list[Any]:
    events = []
    clock = 0.0
    for index, (kind, step, n, hard, tier) in enumerate(items):
        clock = max(0.0, clock + step)
        traits: dict[str, Any] = {}
        if kind == "identify" and not anonymous:
            traits = {"tier": tier, f"x{n}": n}  # None deletes the trait
        at = T0 + timedelta(seconds=clock)
        events.append(
            BehaviorEvent(
                event_id=f"e{index}",
                type=kind,
                lead_id=None if anonymous else "lead-1",
                anonymous_id="lead-1" if anonymous else None,
                occurred_at=at,
                # as decode_event leaves an event whose tracker clock ran ahead
                reported_at=at + timedelta(hours=n) if n > 6 else None,
                # feedback events carry feedback properties (none: the legacy verdicts)
                properties={} if kind.startswith("sales_") else {"n": n, "hard": hard},
                traits=traits,
            )
        )
    return events


def reference_fold(
    state: LeadState, events: list[BehaviorEvent], model: ScoringModel
) -> tuple[LeadState, list[StageTransition]]:
    made: list[StageTransition] = []
    for event in events:
        state, caused = ref_apply(state, event, model)
        made += caused
    return state, made


FEEDBACK_FIELDS = {
    "handoff_id",
    "handoff_at",
    "handoff_tier",
    "accepted_at",
    "qualification",
    "feedback",
    "cooldown_until",
    "rearmed_at",
}
"""What the reference leaves out: the feedback record (tests/unit/test_feedback.py)."""


def same(left: tuple[LeadState, Any], right: tuple[LeadState, Any]) -> None:
    assert left[0].model_dump(exclude=FEEDBACK_FIELDS) == right[0].model_dump(
        exclude=FEEDBACK_FIELDS
    )
    # nor the handoff's tier (tests/unit/test_model_feedback_sections.py)
    assert [t.model_dump(exclude={"tier"}) for t in left[1]] == [
        t.model_dump(exclude={"tier"}) for t in right[1]
    ]


LIMITED = parse_model(MODEL_TEXT + "limits: {max_traits: 2, max_merged_from: 1}\n", "tight.yaml")


@CHECK
@given(steps, st.booleans(), st.integers(1, 5), st.sampled_from([MODEL, LIMITED]))
def test_apply_many_equals_the_reference_fold(
    items: list[tuple[str, float, int, bool, str | None]],
    anonymous: bool,
    chunk: int,
    model: ScoringModel,
) -> None:
    events = build(items, anonymous)
    start = new_lead("lead-1", anonymous=anonymous)
    expected = reference_fold(start, events, model)
    # in one call, in chunks (as the processor's batches cut them), and one by one
    same(apply_many(start, events, model), expected)
    state, made = start, []
    for i in range(0, len(events), chunk):
        state, caused = apply_many(state, events[i : i + chunk], model)
        made += caused
    same((state, made), expected)
    state, made = start, []
    for event in events:
        state, caused = apply(state, event, model)
        made += caused
    same((state, made), expected)


@CHECK
@given(steps, st.floats(0, 30 * 86400))
def test_evaluate_and_next_recycle_at_equal_the_reference(
    items: list[tuple[str, float, int, bool, str | None]], later: float
) -> None:
    state, _ = reference_fold(new_lead("lead-1"), build(items, False), MODEL)
    at = state.clock + later
    same(evaluate(state, at, MODEL), ref_evaluate(state, at, MODEL))
    assert next_recycle_at(state, MODEL) == ref_next_recycle_at(state, MODEL)


def test_apply_many_refuses_other_subjects_before_changing_anything() -> None:
    events = build([("ping", 0, 1, False, None)], anonymous=False)
    other = events[0].model_copy(update={"lead_id": "lead-2"})
    state = new_lead("lead-1")
    with pytest.raises(ValueError, match="lead-2"):
        apply_many(state, [*events, other], MODEL)
    assert apply_many(state, [], MODEL) == (state, ())


def test_default_model_journeys_match_the_reference() -> None:
    """The demo's buyer journey on the default model, with a sweep and a late event."""
    model = default_model()
    traits = {"company_size": 800, "industry": "software", "seniority": "vp", "country": "DE"}
    kinds = [
        ("identify", {}),
        ("email_click", {}),
        ("webinar_attended", {}),
        ("page_view", {"url": "https://example.com/pricing"}),
        ("demo_request", {}),
        ("page_view", {"url": "https://example.com/careers"}),
    ]
    events = [
        BehaviorEvent(
            event_id=f"e{i}",
            type=kind,
            lead_id="lead-9",
            occurred_at=T0 + timedelta(hours=i * 7),
            properties=props,
            traits=traits if kind == "identify" else {},
        )
        for i, (kind, props) in enumerate(kinds)
    ]
    late = events[2].model_copy(update={"event_id": "late", "occurred_at": T0})
    events.append(late)
    start = new_lead("lead-9")
    expected = reference_fold(start, events, model)
    same(apply_many(start, events, model), expected)
    due = next_recycle_at(expected[0], model)
    assert due is not None
    assert due == ref_next_recycle_at(expected[0], model)
    same(evaluate(expected[0], due, model), ref_evaluate(expected[0], due, model))
