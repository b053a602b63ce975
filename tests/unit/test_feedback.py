"""Sales feedback: the event schemas, and what accept/reject/qualify/disqualify do to a lead."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadpulse.schemas import (
    SALES_ONLY_EVENTS,
    BehaviorEvent,
    DecodeError,
    Stage,
    StageTransition,
    decode_event,
    from_segment,
)
from leadpulse.schemas.feedback import (
    FEEDBACK_EVENTS,
    FRAMEWORK_CRITERIA,
    CriterionStatus,
    FeedbackError,
    Framework,
    Qualification,
    RejectionReason,
    SalesRejected,
    feedback_schemas,
    parse_feedback,
)
from leadpulse.scoring import RESERVED_EVENTS, LeadState, apply, evaluate, new_lead, parse_model
from leadpulse.scoring.frameworks import check_sql
from leadpulse.scoring.model import ScoringModel

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

MODEL_TEXT = """
version: "feedback-1"
engagement:
  rules:
    - {name: hot, event: ping, points: 40, half_life: 1d}
    - {name: pricing, event: pricing, points: 30, half_life: 1d, cap: 30}
    - {name: cold, event: drop, points: -100, half_life: 1d}
fit:
  rules:
    - {name: gold, trait: tier, equals: gold, points: 40}
    - {name: silver, trait: tier, equals: silver, points: 20}
  grades: {A: 40, B: 20}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
"""

# (framework, lifecycle.sql, criteria that meet it, criteria one short of it)
SQL_RULES: list[tuple[str, str, dict[str, str], dict[str, str]]] = [
    (
        "bant",
        "{framework: bant, require: [need, authority], min_met: 3}",
        {"need": "met", "authority": "met", "timeline": "met", "budget": "unknown"},
        {"need": "met", "authority": "met", "timeline": "not_met", "budget": "unknown"},
    ),
    (
        "meddic",
        "{framework: meddic, require: [economic_buyer, identify_pain, champion], min_met: 4}",
        {"economic_buyer": "met", "identify_pain": "met", "champion": "met", "metrics": "met"},
        {"economic_buyer": "met", "identify_pain": "met", "champion": "not_met", "metrics": "met"},
    ),
    (
        "champ",
        "{framework: champ, require: [challenges]}",
        {"challenges": "met"},
        {"challenges": "unknown", "money": "met"},
    ),
    (
        "anum",
        "{framework: anum, min_met: 2}",
        {"authority": "met", "urgency": "met"},
        {"authority": "met", "need": "not_met"},
    ),
    (
        "gpctba_ci",
        "{framework: gpctba_ci, require: [goals, budget, authority], min_met: 5}",
        {"goals": "met", "budget": "met", "authority": "met", "plans": "met", "timeline": "met"},
        {"goals": "met", "budget": "met", "authority": "met", "plans": "met"},
    ),
]


def model_with(sql: str | None = None, extra: str = "") -> ScoringModel:
    text = MODEL_TEXT
    if sql is not None:
        text += f"  sql: {sql}\n"
    return parse_model(text + extra, "feedback.yaml")


MEDDIC = model_with(SQL_RULES[1][1], "  rejection_cooldown: 2h\n")


class Lead:
    """A lead driven through the pure engine, keeping every transition."""

    def __init__(self, model: ScoringModel = MEDDIC) -> None:
        self.model = model
        self.state: LeadState = new_lead("lead-1")
        self.made: list[StageTransition] = []
        self.n = 0
        self.at = 0.0

    def send(self, kind: str, after: float = 60.0, **properties: Any) -> list[StageTransition]:
        self.n += 1
        self.at += after
        event = BehaviorEvent(
            event_id=f"e{self.n}",
            type=kind,
            lead_id="lead-1",
            occurred_at=T0 + timedelta(seconds=self.at),
            properties=properties,
            traits={"tier": "gold"} if kind == "identify" else {},
        )
        self.state, made = apply(self.state, event, self.model)
        self.made += made
        return list(made)

    def hand_off(self) -> str:
        self.send("identify")
        self.send("ping")
        (_, handoff) = self.send("ping")
        assert (handoff.from_stage, handoff.to_stage) == (Stage.MQL, Stage.SAL)
        assert self.state.handoff_id == handoff.transition_id
        return handoff.transition_id

    @property
    def handoffs(self) -> list[StageTransition]:
        return [t for t in self.made if t.is_handoff]


# -- the schemas -----------------------------------------------------------------------------


def feedback_event(kind: str, properties: dict[str, Any]) -> BehaviorEvent:
    return BehaviorEvent(
        event_id="f-1", type=kind, lead_id="lead-1", occurred_at=T0, properties=properties
    )


def wire(kind: str, properties: dict[str, Any]) -> str:
    return json.dumps(
        {
            "event_id": "f-1",
            "type": kind,
            "lead_id": "lead-1",
            "occurred_at": T0.isoformat(),
            "properties": properties,
        }
    )


def test_feedback_types_are_the_sales_only_and_reserved_sets() -> None:
    assert FEEDBACK_EVENTS == SALES_ONLY_EVENTS == RESERVED_EVENTS


@pytest.mark.parametrize(
    ("kind", "properties"),
    [
        ("sales_accepted", {"handoff_id": "h-1"}),
        ("sales_rejected", {"handoff_id": "h-1", "reason": "no_response"}),
        ("sales_rejected", {"handoff_id": "h-1", "reason": "other", "note": "left the company"}),
        ("sales_rejected", {}),  # legacy
        ("sales_qualified", {}),  # legacy
        (
            "qualification",
            {"handoff_id": "h-1", "framework": "bant", "criteria": {"budget": "met"}},
        ),
        ("disqualified", {"reason": "competitor", "note": "works for one"}),
        ("requalify", {}),
        ("requalify", {"context": {"ip": "10.0.0.1"}}),  # the collector's context is allowed
    ],
)
def test_valid_feedback_decodes(kind: str, properties: dict[str, Any]) -> None:
    event = decode_event(wire(kind, properties))
    assert parse_feedback(event) is not None


@pytest.mark.parametrize(
    ("kind", "properties", "error"),
    [
        ("sales_accepted", {}, "properties.handoff_id: required for sales_accepted"),
        ("sales_accepted", {"handoff_id": ""}, "properties.handoff_id: "),
        ("sales_accepted", {"handoff_id": "h", "x": 1}, "properties.x: unknown property"),
        ("sales_rejected", {"handoff_id": "h-1"}, "properties.reason: required with a handoff_id"),
        ("sales_rejected", {"handoff_id": "h-1", "reason": "busy"}, "properties.reason: "),
        (
            "sales_rejected",
            {"handoff_id": "h-1", "reason": "other", "note": "x" * 1001},
            "properties.note: ",
        ),
        (
            "qualification",
            {"handoff_id": "h-1", "framework": "spin", "criteria": {"budget": "met"}},
            "properties.framework: ",
        ),
        (
            "qualification",
            {"handoff_id": "h-1", "framework": "bant", "criteria": {"budget": "yes"}},
            "properties.criteria.budget: ",
        ),
        (
            "qualification",
            {"handoff_id": "h-1", "framework": "bant", "criteria": {}},
            "properties.criteria: ",
        ),
        ("qualification", {"framework": "bant", "criteria": {"need": "met"}}, "handoff_id"),
        ("disqualified", {}, "properties.reason: required for disqualified"),
        ("requalify", {"reason": "x"}, "properties.reason: unknown property for requalify"),
    ],
)
def test_bad_feedback_is_an_invalid_event_naming_the_property(
    kind: str, properties: dict[str, Any], error: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_event(wire(kind, properties))
    assert any(error in line for line in caught.value.errors), caught.value.errors
    with pytest.raises(FeedbackError):
        parse_feedback(feedback_event(kind, properties))


@pytest.mark.parametrize("framework", list(Framework))
def test_each_framework_takes_its_own_criteria_and_refuses_others(framework: Framework) -> None:
    own = dict.fromkeys(FRAMEWORK_CRITERIA[framework], "met")
    parsed = parse_feedback(
        feedback_event(
            "qualification", {"handoff_id": "h", "framework": framework.value, "criteria": own}
        )
    )
    assert isinstance(parsed, Qualification)
    assert set(parsed.criteria) == set(FRAMEWORK_CRITERIA[framework])
    foreign = {"economic_buyer": "met"} if framework is not Framework.MEDDIC else {"budget": "met"}
    with pytest.raises(DecodeError) as caught:
        decode_event(
            wire("qualification", {"handoff_id": "h", "framework": framework, "criteria": foreign})
        )
    (line,) = caught.value.errors
    assert line.startswith("properties.criteria: unknown ")
    assert ", ".join(FRAMEWORK_CRITERIA[framework]) in line


def test_legacy_rejection_has_no_handoff_and_no_reason() -> None:
    parsed = parse_feedback(feedback_event("sales_rejected", {}))
    assert isinstance(parsed, SalesRejected)
    assert (parsed.handoff_id, parsed.reason) == (None, None)


@pytest.mark.parametrize("kind", sorted(FEEDBACK_EVENTS))
def test_untrusted_sources_cannot_send_feedback(kind: str) -> None:
    message = {"type": "track", "event": kind, "userId": "lead-1", "properties": {}}
    with pytest.raises(DecodeError) as caught:
        from_segment(message, received_at=T0)
    assert caught.value.errors == [
        f"event: {kind!r} ({kind}) may only be sent by a sales tool's write key"
    ]


def test_a_trusted_source_with_bad_properties_is_refused_at_the_collector() -> None:
    message = {
        "type": "track",
        "event": "Sales Accepted",
        "userId": "lead-1",
        "properties": {"handoff": "h-1"},
    }
    with pytest.raises(DecodeError) as caught:
        from_segment(message, received_at=T0, trusted=True)
    assert any(
        line.startswith("properties.handoff: unknown property for sales_accepted")
        for line in caught.value.errors
    ), caught.value.errors


# -- the SQL rule ----------------------------------------------------------------------------


@pytest.mark.parametrize(("framework", "sql", "meets", "short"), SQL_RULES)
def test_sql_rule_of_each_framework(
    framework: str, sql: str, meets: dict[str, str], short: dict[str, str]
) -> None:
    rule = model_with(sql).lifecycle.sql
    assert rule is not None
    statuses = {k: CriterionStatus(v) for k, v in meets.items()}
    assert check_sql(rule, Framework(framework), statuses).qualified
    shorter = {k: CriterionStatus(v) for k, v in short.items()}
    check = check_sql(rule, Framework(framework), shorter)
    assert not check.qualified
    assert "SQL needs" in check.summary


# -- sequences on a lead ---------------------------------------------------------------------


def test_accept_records_the_time_to_accept_and_moves_nothing() -> None:
    lead = Lead()
    handoff = lead.hand_off()
    assert lead.send("sales_accepted", after=600, handoff_id=handoff) == []
    assert lead.state.stage is Stage.SAL
    assert lead.state.accepted_at == lead.state.handoff_at + 600  # type: ignore[operator]
    (entry,) = lead.state.feedback
    assert (entry.type, entry.applied, entry.handoff_id) == ("sales_accepted", True, handoff)
    assert entry.outcome == "sales accepted the handoff 10m after it"
    first = lead.state.accepted_at
    assert lead.send("sales_accepted", handoff_id=handoff) == []
    assert lead.state.accepted_at == first  # the first acceptance counts
    assert not lead.state.feedback[-1].applied


@pytest.mark.parametrize(("framework", "sql", "meets", "short"), SQL_RULES)
def test_qualification_moves_sal_to_sql_for_each_framework(
    framework: str, sql: str, meets: dict[str, str], short: dict[str, str]
) -> None:
    lead = Lead(model_with(sql))
    handoff = lead.hand_off()
    lead.send("sales_accepted", handoff_id=handoff)
    assert lead.send("qualification", handoff_id=handoff, framework=framework, criteria=short) == []
    assert lead.state.stage is Stage.SAL
    assert lead.state.qualification == {framework: short}
    # statuses accumulate: the next event names only what changed
    changed = {k: v for k, v in meets.items() if short.get(k) != v}
    (move,) = lead.send("qualification", handoff_id=handoff, framework=framework, criteria=changed)
    assert (move.from_stage, move.to_stage) == (Stage.SAL, Stage.SQL)
    assert move.reason.startswith("sales qualified the lead: ")
    assert lead.state.stage is Stage.SQL
    assert lead.state.qualification[framework] == {**short, **meets}
    assert [e.applied for e in lead.state.feedback] == [True, True, True]


def test_qualification_in_another_framework_is_recorded_and_moves_nothing() -> None:
    lead = Lead()
    handoff = lead.hand_off()
    criteria = dict.fromkeys(FRAMEWORK_CRITERIA[Framework.BANT], "met")
    assert lead.send("qualification", handoff_id=handoff, framework="bant", criteria=criteria) == []
    assert lead.state.stage is Stage.SAL
    assert lead.state.qualification == {"bant": criteria}
    assert "the model qualifies on MEDDIC" in lead.state.feedback[-1].outcome


def test_without_an_sql_rule_qualification_is_only_recorded() -> None:
    lead = Lead(model_with(None))
    handoff = lead.hand_off()
    criteria = dict.fromkeys(FRAMEWORK_CRITERIA[Framework.MEDDIC], "met")
    lead.send("qualification", handoff_id=handoff, framework="meddic", criteria=criteria)
    assert lead.state.stage is Stage.SAL
    assert "no lifecycle.sql rule" in lead.state.feedback[-1].outcome


def test_reject_nurtures_disarmed_with_a_cooldown_then_hands_off_again() -> None:
    lead = Lead()
    handoff = lead.hand_off()
    (move,) = lead.send("sales_rejected", handoff_id=handoff, reason="not_ready", note="Q3")
    assert (move.from_stage, move.to_stage) == (Stage.SAL, Stage.NURTURE)
    assert "(not_ready)" in move.reason
    assert "rejection_cooldown 2h" in move.reason
    assert (lead.state.armed, lead.state.cooldown_until) == (False, lead.state.clock + 7200)
    entry = lead.state.feedback[-1]
    assert (entry.reason, entry.note, entry.applied) == ("not_ready", "Q3", True)
    # still hot: more activity does not make it an MQL again
    assert lead.send("ping") == []
    assert lead.state.stage is Stage.NURTURE
    # it cools below recycle (re-arms) but the cooldown has not passed yet
    lead.send("drop", after=60)
    assert lead.state.armed
    assert lead.state.rearmed_at == lead.state.clock
    lead.send("ping", after=60)
    lead.send("ping", after=60)
    lead.send("ping", after=60)
    assert lead.state.stage is Stage.NURTURE
    assert lead.state.clock < lead.state.cooldown_until  # type: ignore[operator]
    # after the cooldown the next event hands it off again: a new handoff id
    lead.send("ping", after=7200)
    assert lead.state.stage is Stage.SAL
    assert len(lead.handoffs) == 2
    assert lead.state.handoff_id == lead.handoffs[-1].transition_id != handoff
    assert (lead.state.accepted_at, lead.state.qualification) == (None, {})


def test_feedback_on_a_superseded_handoff_is_recorded_not_applied() -> None:
    lead = Lead(model_with(SQL_RULES[1][1]))
    first = lead.hand_off()
    lead.send("drop")  # recycles
    lead.send("ping", after=3600)
    lead.send("ping")
    lead.send("ping")
    assert len(lead.handoffs) == 2
    current = lead.state.handoff_id
    assert current != first
    before = lead.state
    for kind, props in [
        ("sales_accepted", {}),
        ("sales_rejected", {"reason": "bad_fit"}),
        ("qualification", {"framework": "meddic", "criteria": SQL_RULES[1][2]}),
        ("disqualified", {"reason": "spam"}),
        ("requalify", {}),
        ("sales_qualified", {}),
    ]:
        assert lead.send(kind, handoff_id=first, **props) == []
        entry = lead.state.feedback[-1]
        assert (entry.type, entry.applied, entry.stale, entry.handoff_id) == (
            kind,
            False,
            True,
            first,
        )
        assert (
            entry.outcome == f"not applied: answers handoff {first}, the current one is {current}"
        )
    after = lead.state
    assert (after.stage, after.armed, after.accepted_at, after.qualification) == (
        before.stage,
        before.armed,
        before.accepted_at,
        before.qualification,
    )


def test_feedback_before_any_handoff_is_stale() -> None:
    lead = Lead()
    lead.send("ping")
    assert lead.send("sales_accepted", handoff_id="h-x") == []
    entry = lead.state.feedback[-1]
    assert entry.stale
    assert entry.outcome == "not applied: answers handoff h-x, the current one is none yet"


def test_disqualified_never_hands_off_until_requalify() -> None:
    lead = Lead()
    handoff = lead.hand_off()
    (move,) = lead.send("disqualified", reason="student", handoff_id=handoff)
    assert (move.from_stage, move.to_stage) == (Stage.SAL, Stage.DISQUALIFIED)
    assert "(student)" in move.reason
    for _ in range(5):
        assert lead.send("ping", after=3600) == []
    # decay never recycles it either
    later, made = evaluate(lead.state, lead.state.clock + 30 * 86400, MEDDIC)
    assert made == ()
    assert later.stage is Stage.DISQUALIFIED
    assert lead.send("disqualified", reason="again") == []
    assert not lead.state.feedback[-1].applied
    # requalified while still hot: nurture, disarmed until it cools below recycle
    (back,) = lead.send("requalify")
    assert (back.from_stage, back.to_stage) == (Stage.DISQUALIFIED, Stage.NURTURE)
    assert lead.send("ping") == []
    assert not lead.state.armed
    lead.send("ping", after=30 * 86400)  # cooled below recycle on the way: re-armed
    assert lead.state.armed
    made = lead.send("ping")
    assert [(t.from_stage, t.to_stage) for t in made] == [
        (Stage.NURTURE, Stage.MQL),
        (Stage.MQL, Stage.SAL),
    ]


def test_requalify_of_a_lead_that_cooled_while_disqualified_is_armed() -> None:
    lead = Lead()
    lead.hand_off()
    lead.send("disqualified", reason="budget")
    lead.send("ping", after=30 * 86400)  # long decayed: re-armed on the way
    assert lead.state.armed
    (back,) = lead.send("requalify")
    assert "armed: its engagement fell below recycle" in back.reason
    lead.send("ping")
    assert lead.state.stage is Stage.SAL


def test_feedback_in_a_stage_that_does_not_allow_it_is_recorded_not_applied() -> None:
    lead = Lead()
    lead.send("ping")
    assert lead.send("sales_rejected") == []  # legacy, but nothing to reject
    assert lead.send("requalify") == []
    assert lead.send("sales_qualified") == []
    assert [e.applied for e in lead.state.feedback] == [False, False, False]
    assert lead.state.feedback[0].outcome == "not applied: the lead is IQL, not SAL or SQL"


def test_legacy_verdicts_still_work() -> None:
    lead = Lead()
    lead.hand_off()
    (move,) = lead.send("sales_qualified")
    assert (move.from_stage, move.to_stage, move.reason) == (
        Stage.SAL,
        Stage.SQL,
        "sales qualified the lead",
    )
    (move,) = lead.send("sales_rejected")
    assert (move.from_stage, move.to_stage) == (Stage.SQL, Stage.NURTURE)


def test_invalid_properties_built_in_code_are_recorded_not_applied() -> None:
    lead = Lead()
    lead.hand_off()
    assert lead.send("sales_accepted", handoff="typo") == []
    entry = lead.state.feedback[-1]
    assert not entry.applied
    assert entry.outcome.startswith("not applied: invalid properties (properties.")
    assert lead.state.accepted_at is None


def test_the_history_is_bounded_by_max_feedback() -> None:
    lead = Lead(model_with(None, "limits: {max_feedback: 3}\n"))
    for n in range(6):
        if n % 2 == 0:
            lead.send("disqualified", reason="x")
        else:
            lead.send("requalify")
    assert [e.event_id for e in lead.state.feedback] == ["e4", "e5", "e6"]


def test_feedback_is_deterministic_and_transition_ids_derive_from_the_event() -> None:
    def run() -> tuple[LeadState, list[StageTransition]]:
        lead = Lead()
        handoff = lead.hand_off()
        lead.send("sales_accepted", handoff_id=handoff)
        lead.send("qualification", handoff_id=handoff, framework="meddic", criteria=SQL_RULES[1][2])
        lead.send("sales_rejected", handoff_id=handoff, reason="duplicate")
        return lead.state, lead.made

    first, second = run(), run()
    assert first[0] == second[0]
    assert [t.transition_id for t in first[1]] == [t.transition_id for t in second[1]]
    assert len({t.transition_id for t in first[1]}) == len(first[1])


def test_anonymous_profiles_record_no_feedback() -> None:
    state = new_lead("anon-1", anonymous=True)
    event = BehaviorEvent(
        event_id="a",
        type="sales_accepted",
        anonymous_id="anon-1",
        occurred_at=T0,
        properties={"handoff_id": "h"},
    )
    after, made = apply(state, event, MEDDIC)
    assert (after.feedback, made) == ((), ())


def test_a_state_without_the_feedback_fields_decodes() -> None:
    old = '{"lead_id":"lead-42","stage":"sal","armed":true,"clock":1795341780.0}'
    state = LeadState.model_validate_json(old)
    assert (state.handoff_id, state.accepted_at, state.feedback, state.qualification) == (
        None,
        None,
        (),
        {},
    )
    assert (state.cooldown_until, state.rearmed_at, state.handoff_at) == (None, None, None)


def test_each_feedback_type_has_a_json_schema_of_its_properties() -> None:
    schemas = feedback_schemas()
    assert set(schemas) == FEEDBACK_EVENTS
    assert schemas["sales_rejected"]["additionalProperties"] is False
    rejected = json.dumps(schemas["sales_rejected"])
    assert all(reason.value in rejected for reason in RejectionReason)
    assert schemas["qualification"]["required"] == ["handoff_id", "framework", "criteria"]


@pytest.mark.parametrize(("framework", "sql", "meets", "short"), SQL_RULES)
def test_a_whole_sequence_for_each_framework(
    framework: str, sql: str, meets: dict[str, str], short: dict[str, str]
) -> None:
    """Accept, qualify short, reject; a new handoff; qualify (SQL), disqualify, requalify."""
    lead = Lead(model_with(sql, "  rejection_cooldown: 1h\n"))
    first = lead.hand_off()
    lead.send("sales_accepted", after=120, handoff_id=first)
    lead.send("qualification", handoff_id=first, framework=framework, criteria=short)
    (rejected,) = lead.send("sales_rejected", handoff_id=first, reason="no_response")
    assert rejected.to_stage is Stage.NURTURE
    lead.send("ping", after=4 * 86400)  # cooled (re-armed) and past the cooldown
    lead.send("ping")
    second = lead.state.handoff_id
    assert second is not None
    assert second != first
    assert (lead.state.accepted_at, lead.state.qualification) == (None, {})  # a fresh handoff
    # the qualification of the first handoff no longer counts, nor does late feedback on it
    lead.send("qualification", handoff_id=first, framework=framework, criteria=meets)
    assert lead.state.stage is Stage.SAL
    (qualified,) = lead.send(
        "qualification", handoff_id=second, framework=framework, criteria=meets
    )
    assert (qualified.from_stage, qualified.to_stage) == (Stage.SAL, Stage.SQL)
    (parked,) = lead.send("disqualified", reason="went with a competitor")
    assert (parked.from_stage, parked.to_stage) == (Stage.SQL, Stage.DISQUALIFIED)
    (back,) = lead.send("requalify", handoff_id=second)
    assert (back.from_stage, back.to_stage) == (Stage.DISQUALIFIED, Stage.NURTURE)
    assert [(t.from_stage, t.to_stage) for t in lead.made] == [
        (Stage.IQL, Stage.MQL),
        (Stage.MQL, Stage.SAL),
        (Stage.SAL, Stage.NURTURE),
        (Stage.NURTURE, Stage.MQL),
        (Stage.MQL, Stage.SAL),
        (Stage.SAL, Stage.SQL),
        (Stage.SQL, Stage.DISQUALIFIED),
        (Stage.DISQUALIFIED, Stage.NURTURE),
    ]
    assert [(e.type, e.applied, e.stale) for e in lead.state.feedback] == [
        ("sales_accepted", True, False),
        ("qualification", True, False),
        ("sales_rejected", True, False),
        ("qualification", False, True),
        ("qualification", True, False),
        ("disqualified", True, False),
        ("requalify", True, False),
    ]
