"""Property: no sequence of feedback events hands a lead off twice without a re-arm between.

Random sequences of scoring events (raising and lowering engagement), feedback
events (accept, reject, qualify, disqualify, requalify, legacy verdicts) naming
the current handoff, an earlier one, an unknown one or none, sweeps, and time
moving on (sometimes back: late events), through the pure engine. Between any
two handoffs of the lead, its engagement fell below recycle: a recycle
transition (to NURTURE, "< recycle") or a silent re-arm (`rearmed_at` moved)
of a lead that feedback had disarmed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from leadpulse.schemas import BehaviorEvent, Stage, StageTransition
from leadpulse.schemas.feedback import FRAMEWORK_CRITERIA, CriterionStatus, Framework
from leadpulse.scoring import LeadState, apply, evaluate, new_lead, parse_model

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

MODEL = parse_model(
    """
version: "feedback-property"
engagement:
  rules:
    - {name: hot, event: ping, points: 30, half_life: 12h}
    - {name: big, event: big, points: 75, half_life: 1d, cap: 150}
    - {name: cold, event: drop, points: -40, half_life: 6h}
fit:
  rules:
    - {name: gold, trait: tier, equals: gold, points: 40}
  grades: {A: 40, B: 20}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
  sql: {framework: meddic, require: [champion], min_met: 2}
  rejection_cooldown: 1h
""",
    "property.yaml",
)

SCORING = ["ping", "ping", "ping", "big", "big", "drop", "identify", "sweep"]
FEEDBACK = [
    "sales_accepted",
    "sales_rejected",
    "qualification",
    "disqualified",
    "requalify",
    "sales_qualified",
]
WHICH = ["current", "current", "earlier", "unknown", "none"]
MEDDIC = FRAMEWORK_CRITERIA[Framework.MEDDIC]

steps = st.lists(
    st.tuples(
        st.sampled_from(SCORING + FEEDBACK + ["sales_rejected", "sales_accepted", "qualification"]),
        # the time step in seconds (negative: a late event); mostly short, so leads get hot
        st.sampled_from(
            [0.0, 30.0, 300.0, 1800.0, 3600.0, 4 * 3600.0, 86400.0, 3 * 86400.0, -600.0]
        ),
        st.sampled_from(WHICH),
        st.dictionaries(st.sampled_from(MEDDIC), st.sampled_from(list(CriterionStatus))),
    ),
    min_size=1,
    max_size=60,
)


def feedback_properties(
    kind: str, which: str, criteria: dict[str, CriterionStatus], state: LeadState, seen: list[str]
) -> dict[str, Any]:
    handoff: str | None = {
        "current": state.handoff_id,
        "earlier": seen[0] if seen else None,
        "unknown": "h-unknown",
        "none": None,
    }[which]
    needs_id = kind in ("sales_accepted", "qualification")
    if handoff is None and needs_id:
        handoff = state.handoff_id or "h-unknown"
    properties: dict[str, Any] = {} if handoff is None else {"handoff_id": handoff}
    if kind == "sales_rejected" and handoff is not None:
        properties["reason"] = "not_ready"
    if kind == "disqualified":
        properties["reason"] = "no budget"
    if kind == "qualification":
        properties["framework"] = "meddic"
        properties["criteria"] = {k: v.value for k, v in criteria.items()} or {"champion": "met"}
    return properties


def is_recycle(t: StageTransition) -> bool:
    return t.to_stage is Stage.NURTURE and "< recycle" in t.reason


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_no_second_handoff_without_a_rearm_between(
    items: list[tuple[str, float, str, dict[str, CriterionStatus]]],
) -> None:
    state = new_lead("lead-1").model_copy(update={"traits": {"tier": "gold"}})  # an A fit
    clock = 0.0
    handoffs: list[str] = []
    rearmed_since_handoff = True  # the first handoff needs none
    for index, (kind, step, which, criteria) in enumerate(items):
        clock = max(0.0, clock + step)
        at = T0 + timedelta(seconds=clock)
        before = state.rearmed_at
        if kind == "sweep":
            state, made = evaluate(state, at, MODEL)
        else:
            properties = (
                feedback_properties(kind, which, criteria, state, handoffs)
                if kind in FEEDBACK
                else {}
            )
            message = BehaviorEvent(
                event_id=f"e{index}",
                type=kind,
                lead_id="lead-1",
                occurred_at=at,
                properties=properties,
                traits={"tier": "gold"} if kind == "identify" else {},
            )
            state, made = apply(state, message, MODEL)
        if state.rearmed_at != before:
            rearmed_since_handoff = True  # re-arms happen before any handoff of the step
        for transition in made:
            if is_recycle(transition):
                rearmed_since_handoff = True
            if transition.is_handoff:
                event(f"handoff #{len(handoffs) + 1}")
                assert rearmed_since_handoff, (
                    f"step {index} ({kind}) handed off again without a re-arm since "
                    f"handoff {handoffs[-1]}"
                )
                handoffs.append(transition.transition_id)
                rearmed_since_handoff = False
        if state.stage is Stage.DISQUALIFIED:
            assert not any(t.is_handoff for t in made)
        assert state.handoff_id == (handoffs[-1] if handoffs else None)
        # feedback about another handoff than the current one moves nothing itself
        if kind in FEEDBACK and state.feedback[-1].applied:
            event(f"{kind} applied")
        if kind in FEEDBACK and state.feedback[-1].stale:
            assert not any(t.reason.startswith("sales ") for t in made)
