"""Scoring a lead: fold events in, read engagement, and decide funnel moves.

Idempotency per event id is not handled here: the state store drops an event
id it has already applied before calling `apply`. Applying one event twice
counts it twice.

Decay-driven recycling is exact and independent of when anyone looks: before
an event is applied, and whenever `evaluate` runs, the first moment decay alone
took the lead below `recycle` is searched for, and the NURTURE transition is
dated at that moment. A sweeper that runs late, early or not at all therefore
yields the same transitions (ids included) for events that arrive in time order.
"""

from __future__ import annotations

from schemas import BehaviorEvent, RuleContribution, Stage, StageTransition
from scoring.decay import add
from scoring.epoch import Instant, as_epoch, from_epoch, to_epoch
from scoring.fit import fit_points, grade, merge_traits
from scoring.lifecycle import (
    RECYCLABLE,
    Move,
    recycle_move,
    sales_move,
    threshold_moves,
    transition_id,
)
from scoring.model import ScoringModel
from scoring.recycle import Term, first_below, horizon, lower_bound, total
from scoring.state import LeadState

TOP_REASONS = 5


def terms(state: LeadState, model: ScoringModel) -> list[Term]:
    """Scoring rules the lead has state for, in model order (a fixed summation order)."""
    found = []
    for rule in model.engagement_rules:
        pair = state.rules.get(rule.name)
        if pair is not None:
            found.append(Term(pair, rule.half_life, rule.cap))
    return found


def engagement(state: LeadState, at: Instant, model: ScoringModel) -> float:
    """Times before `state.clock` read as `state.clock`: later events are folded in."""
    return max(0.0, total(terms(state, model), max(as_epoch(at), state.clock)))


def contributions(
    state: LeadState, at: Instant, model: ScoringModel
) -> list[tuple[str, float, float]]:
    """(rule, capped points, uncapped points) per rule with state, in model order."""
    moment = max(as_epoch(at), state.clock)
    result = []
    for rule in model.engagement_rules:
        pair = state.rules.get(rule.name)
        if pair is not None:
            raw = Term(pair, rule.half_life, None).at(moment)
            result.append((rule.name, Term(pair, rule.half_life, rule.cap).at(moment), raw))
    return result


def top_reasons(state: LeadState, at: float, model: ScoringModel) -> list[RuleContribution]:
    ranked = sorted(
        (item for item in contributions(state, at, model) if item[1] != 0),
        key=lambda item: (-abs(item[1]), item[0]),
    )
    return [RuleContribution(rule=name, points=points) for name, points, _ in ranked[:TOP_REASONS]]


def apply(
    state: LeadState, event: BehaviorEvent, model: ScoringModel
) -> tuple[LeadState, tuple[StageTransition, ...]]:
    """Fold one event into a lead and return the funnel moves, in order.

    A recycle that decay caused before the event comes first (dated at the
    crossing, no event id); then the moves the event causes at the lead's
    clock, which stays put for a late event so history is never re-judged.
    """
    if event.subject != state.lead_id:
        raise ValueError(f"event {event.event_id} is for {event.subject!r}, not {state.lead_id!r}")
    moment = to_epoch(event.occurred_at)
    transitions: list[StageTransition] = []
    if not state.anonymous and moment > state.clock:
        state, transitions = _decay_until(state, moment, model)

    rules = state.rules
    matched = [
        rule for rule in model.rules_by_event.get(event.type, ()) if rule.matches(event.properties)
    ]
    if matched:
        rules = dict(rules)
        for rule in matched:
            rules[rule.name] = add(rules.get(rule.name), rule.points, moment, rule.half_life)
    state = state.model_copy(
        update={
            "rules": rules,
            "traits": merge_traits(state.traits, event.traits) if event.traits else state.traits,
            "clock": max(state.clock, moment),
            "events_applied": state.events_applied + 1,
        }
    )
    if state.anonymous:
        return state, tuple(transitions)

    score = engagement(state, state.clock, model)
    fit = fit_points(state.traits, model)
    letter = grade(fit, model)
    stage, armed = state.stage, state.armed
    moves: list[Move] = []
    verdict = sales_move(stage, event.type, model)
    if verdict is not None:
        moves.append(verdict)
        stage = verdict.to_stage
        if stage is Stage.NURTURE:
            armed = False
    more, stage, armed = threshold_moves(stage, armed, score, letter, model)
    moves += more
    if armed != state.armed:
        state = state.model_copy(update={"armed": armed})
    if not moves:
        return state, tuple(transitions)
    state, made = _record(
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


def evaluate(
    state: LeadState, at: Instant, model: ScoringModel
) -> tuple[LeadState, tuple[StageTransition, ...]]:
    """The moves decay alone causes up to `at`; what the sweeper calls.

    Only downward moves happen without an event. The clock never moves back
    and only moves forward to a crossing, so sweeping never changes how later
    events score.
    """
    if state.anonymous:
        return state, ()
    moment = as_epoch(at)
    if moment < state.clock:
        return state, ()
    updated, made = _decay_until(state, moment, model)
    return updated, tuple(made)


def next_recycle_at(state: LeadState, model: ScoringModel) -> float | None:
    """When decay alone will recycle this MQL/SAL lead, or None if it never will.

    The result t satisfies engagement(t) < recycle and, unless t is the clock,
    engagement(t - 1) >= recycle; it is at most 0.5 s late.
    """
    if state.anonymous or state.stage not in RECYCLABLE:
        return None
    return _first_dip(state, model, None)


def _first_dip(state: LeadState, model: ScoringModel, until: float | None) -> float | None:
    threshold = model.lifecycle.recycle
    if threshold <= 0:
        return None  # engagement is never negative, so it cannot go below 0
    found = terms(state, model)
    start = state.clock
    if until is not None and lower_bound(found, start, until) >= threshold:
        return None  # cheap common case: no dip possible before the next event
    dip = first_below(found, threshold, start, horizon(found, start))
    if dip is None or (until is not None and dip > until):
        return None
    return dip


def _decay_until(
    state: LeadState, until: float, model: ScoringModel
) -> tuple[LeadState, list[StageTransition]]:
    recyclable = state.stage in RECYCLABLE
    if not recyclable and (state.stage is not Stage.NURTURE or state.armed):
        return state, []
    dip = _first_dip(state, model, until)
    if dip is None:
        return state, []
    if not recyclable:  # a rejected lead re-arms silently once it has cooled down
        return state.model_copy(update={"armed": True}), []
    score = engagement(state, dip, model)
    fit = fit_points(state.traits, model)
    moved, made = _record(
        state,
        [recycle_move(score, model, by_decay=True)],
        at=dip,
        score=score,
        fit=fit,
        letter=grade(fit, model),
        model=model,
        event_id=None,
    )
    return moved.model_copy(update={"armed": True, "clock": max(state.clock, dip)}), made


def _record(
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
    reasons = top_reasons(state, at, model)
    occurred_at = from_epoch(at)
    stage, seq = state.stage, state.transition_seq
    made = []
    for move in moves:
        seq += 1
        made.append(
            StageTransition(
                transition_id=transition_id(state.lead_id, seq),
                lead_id=state.lead_id,
                from_stage=stage,
                to_stage=move.to_stage,
                engagement=score,
                fit=fit,
                grade=letter,
                occurred_at=occurred_at,
                model_version=model.model_version,
                reason=move.reason,
                event_id=event_id,
                reasons=reasons,
            )
        )
        stage = move.to_stage
    return state.model_copy(update={"stage": stage, "transition_seq": seq}), made
