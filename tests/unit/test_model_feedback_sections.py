"""The model file's feedback sections: lifecycle.sql, rejection_cooldown, tiers, max_feedback.

Each problem is reported as ``file:line: path: reason``, like every other
section (tests/unit/test_model_loader.py), and a valid section does what the
file says: tiers pick the handoff's success-ready tier.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadpulse.schemas import BehaviorEvent, Handoff, Stage, StageTransition
from leadpulse.schemas.feedback import Framework
from leadpulse.scoring import (
    ModelError,
    apply,
    default_model,
    load_model,
    new_lead,
    parse_model,
    summary,
)
from leadpulse.scoring.model import ScoringModel
from tests.unit.test_model_loader import BASE

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
SQL = "  sql: {framework: meddic, require: [economic_buyer, identify_pain, champion], min_met: 4}\n"
TIERS = """\
tiers:
  excellent: {min_grade: A, min_engagement: 90, rules: {pricing-page: 20}}
  good:
    min_fit: 20
    fit_rules: [mid-market]
  else: risky
"""


def issues_of(text: str) -> list[str]:
    with pytest.raises(ModelError) as caught:
        parse_model(text, "bad.yaml")
    return caught.value.issues


def with_lifecycle(extra: str) -> str:
    return BASE + extra


def test_the_sections_parse() -> None:
    model = parse_model(with_lifecycle(SQL + "  rejection_cooldown: 3d\n") + TIERS, "ok.yaml")
    rule = model.lifecycle.sql
    assert rule is not None
    assert (rule.framework, rule.require, rule.needed) == (
        Framework.MEDDIC,
        ("economic_buyer", "identify_pain", "champion"),
        4,
    )
    assert model.lifecycle.rejection_cooldown == 3 * 86400
    assert model.spec.tiers is not None
    assert [name for name, _ in model.spec.tiers.ordered] == ["excellent", "good"]
    assert model.spec.tiers.otherwise == "risky"


def test_min_met_defaults_to_the_required_or_all_criteria() -> None:
    required = parse_model(with_lifecycle("  sql: {framework: bant, require: [need]}\n"), "a")
    assert required.lifecycle.sql is not None
    assert required.lifecycle.sql.needed == 1
    every = parse_model(with_lifecycle("  sql: {framework: champ}\n"), "b")
    assert every.lifecycle.sql is not None
    assert every.lifecycle.sql.needed == 4


def test_the_new_sections_are_optional_and_keep_old_versions() -> None:
    """Files without them keep the model version they had (test_model_loader pins it)."""
    assert parse_model(BASE, "a.yaml").model_version == "t-1+c3783c985455"
    limited = BASE + "limits: {max_traits: 10}\n"
    assert parse_model(limited, "a").limits.feedback_kept == 20
    assert parse_model(BASE + "limits: {max_feedback: 5}\n", "a").limits.feedback_kept == 5


SECTION_EDITS: list[tuple[str, str, list[str]]] = [
    (
        "unknown framework",
        "  sql: {framework: spin}\n",
        [
            "bad.yaml:30: lifecycle.sql.framework: unknown framework 'spin': use one of "
            "bant, meddic, champ, anum, gpctba_ci"
        ],
    ),
    (
        "criterion of another framework",
        "  sql: {framework: bant, require: [need, champion]}\n",
        [
            "bad.yaml:30: lifecycle.sql.require[1]: 'champion' is not a bant criterion: use "
            "budget, authority, need, timeline"
        ],
    ),
    (
        "min_met above the criteria",
        "  sql: {framework: anum, min_met: 5}\n",
        [
            "bad.yaml:30: lifecycle.sql.min_met: min_met 5 is more than the 4 criteria of anum "
            "(authority, need, urgency, money)"
        ],
    ),
    (
        "min_met below the required",
        "  sql: {framework: meddic, require: [metrics, champion], min_met: 1}\n",
        [
            "bad.yaml:30: lifecycle.sql.min_met: min_met 1 is less than the 2 required "
            "criteria, which must all be met anyway"
        ],
    ),
    (
        "duplicate required criterion",
        "  sql: {framework: meddic, require: [metrics, metrics]}\n",
        ["bad.yaml:30: lifecycle.sql.require[1]: duplicate criterion 'metrics'"],
    ),
    (
        "misspelt sql key",
        "  sql: {framework: bant, requires: [need]}\n",
        [
            "bad.yaml:30: lifecycle.sql.requires: unknown key; did you mean 'require'? "
            "(allowed: framework, min_met, require)"
        ],
    ),
    (
        "cooldown without a unit",
        "  rejection_cooldown: 3\n",
        [
            "bad.yaml:30: lifecycle.rejection_cooldown: duration 3 has no unit "
            "(use e.g. 90s, 30m, 12h, 7d, 2w)"
        ],
    ),
]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [pytest.param(extra, expected, id=case) for case, extra, expected in SECTION_EDITS],
)
def test_bad_lifecycle_sections_name_file_line_and_reason(extra: str, expected: list[str]) -> None:
    assert issues_of(with_lifecycle(extra)) == expected


TIER_EDITS: list[tuple[str, str, list[str]]] = [
    (
        "unknown rule",
        "tiers:\n  good: {rules: {pricing: 5}}\n",
        ["bad.yaml:31: tiers.good.rules.pricing: no engagement rule is named 'pricing'"],
    ),
    (
        "unknown fit rule",
        "tiers:\n  good: {fit_rules: [enterprise]}\n",
        ["bad.yaml:31: tiers.good.fit_rules[0]: no fit rule is named 'enterprise'"],
    ),
    (
        "unknown grade",
        "tiers:\n  good: {min_grade: E}\n",
        ["bad.yaml:31: tiers.good.min_grade: unknown grade 'E': use one of A, B, C, D"],
    ),
    (
        "no conditions",
        "tiers:\n  good: {}\n",
        [
            "bad.yaml:31: tiers.good: a tier without conditions always matches: give min_fit, "
            "min_engagement, min_grade, rules or fit_rules (or use else:)"
        ],
    ),
    (
        "misspelt condition",
        "tiers:\n  good: {min_fitt: 3}\n",
        [
            "bad.yaml:31: tiers.good.min_fitt: unknown key; did you mean 'min_fit'? "
            "(allowed: fit_rules, min_engagement, min_fit, min_grade, rules)"
        ],
    ),
    (
        "bad tier name",
        "tiers:\n  Good Leads: {min_grade: A}\n",
        [
            "bad.yaml:31: tiers.Good Leads: invalid tier name 'Good Leads': use 1-64 lowercase "
            "letters, digits, '_', '.' or '-', starting with a letter or digit"
        ],
    ),
    (
        "bad else",
        "tiers:\n  good: {min_grade: A}\n  else: 7\n",
        [
            "bad.yaml:32: tiers.else: invalid tier name 7: use 1-64 lowercase letters, digits, "
            "'_', '.' or '-', starting with a letter or digit (or null for no tier)"
        ],
    ),
    (
        "only else",
        "tiers:\n  else: risky\n",
        ["bad.yaml:30: tiers: declare at least one tier, e.g. excellent: {min_grade: A}"],
    ),
    (
        "a number where points go",
        "tiers:\n  good: {min_engagement: lots}\n",
        ["bad.yaml:31: tiers.good.min_engagement: threshold must be a number, got 'lots'"],
    ),
]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [pytest.param(extra, expected, id=case) for case, extra, expected in TIER_EDITS],
)
def test_bad_tiers_name_file_line_and_reason(extra: str, expected: list[str]) -> None:
    assert issues_of(BASE + extra) == expected


# -- tiers on handoffs -----------------------------------------------------------------------


def handoff_of(model: ScoringModel, events: list[tuple[str, dict[str, object]]]) -> StageTransition:
    state = new_lead("lead-1")
    made: list[StageTransition] = []
    for n, (kind, properties) in enumerate(events):
        event = BehaviorEvent(
            event_id=f"e{n}",
            type=kind,
            lead_id="lead-1",
            occurred_at=T0 + timedelta(minutes=n),
            properties=properties if kind != "identify" else {},
            traits=properties if kind == "identify" else {},
        )
        state, caused = apply(state, event, model)
        made += caused
    (handoff,) = [t for t in made if t.is_handoff]
    assert state.stage is Stage.SAL
    return handoff


TIERED_TEXT = """\
version: "tiers-1"
engagement:
  rules:
    - {name: pricing-page, event: page_view, when: {url_contains: /pricing}, points: 10,
       half_life: 7d, cap: 30}
    - {name: demo, event: demo_request, points: 60, half_life: 14d}
fit:
  rules:
    - {name: mid-market, trait: company_size, between: [50, 5000], points: 30}
    - {name: decision-maker, trait: seniority, in: [vp, director], points: 20}
  grades: {A: 50, B: 30, C: 10}
lifecycle: {mql: 50, handoff: {engagement: 70, min_grade: C}, recycle: 25}
"""
TIERED_TIERS = """\
tiers:
  excellent: {min_grade: A, min_engagement: 85, rules: {pricing-page: 20}}
  good: {fit_rules: [mid-market]}
  else: risky
"""
TIERED = parse_model(TIERED_TEXT + TIERED_TIERS, "tiered.yaml")
PRICING = ("page_view", {"url": "https://x.io/pricing"})
DEMO = ("demo_request", {})
VP = ("identify", {"company_size": 400, "seniority": "vp"})  # fit 50: A, mid-market
MANAGER = ("identify", {"company_size": 400, "seniority": "manager"})  # fit 30: B, mid-market
SMALL = ("identify", {"company_size": 8, "seniority": "director"})  # fit 20: C


@pytest.mark.parametrize(
    ("events", "tier"),
    [
        ([VP, PRICING, PRICING, PRICING, DEMO], "excellent"),  # engagement 90, pricing 30, A
        ([VP, PRICING, PRICING, DEMO], "good"),  # engagement 80 < 85
        ([MANAGER, PRICING, PRICING, PRICING, DEMO], "good"),  # grade B, mid-market
        ([SMALL, PRICING, PRICING, PRICING, DEMO], "risky"),  # no tier: else
    ],
)
def test_the_first_tier_whose_every_condition_holds_is_the_handoffs(
    events: list[tuple[str, dict[str, object]]], tier: str
) -> None:
    handoff = handoff_of(TIERED, events)
    assert handoff.tier == tier
    assert Handoff.from_transition(handoff).tier == tier


def test_else_null_and_no_tiers_give_no_tier() -> None:
    null = parse_model(TIERED_TEXT + TIERED_TIERS.replace("else: risky", "else: null"), "n")
    assert handoff_of(null, [SMALL, PRICING, PRICING, DEMO]).tier is None
    plain = parse_model(TIERED_TEXT, "plain.yaml")
    assert handoff_of(plain, [VP, PRICING, PRICING, PRICING, DEMO]).tier is None


def test_only_handoffs_carry_a_tier() -> None:
    state = new_lead("lead-1")
    made: list[StageTransition] = []
    for n, (kind, body) in enumerate([VP, PRICING, PRICING, PRICING, DEMO]):
        event = BehaviorEvent(
            event_id=f"e{n}",
            type=kind,
            lead_id="lead-1",
            occurred_at=T0 + timedelta(minutes=n),
            properties={} if kind == "identify" else body,
            traits=body if kind == "identify" else {},
        )
        state, caused = apply(state, event, TIERED)
        made += caused
    assert [(t.to_stage, t.tier) for t in made] == [(Stage.MQL, None), (Stage.SAL, "excellent")]


@pytest.mark.parametrize("name", ["default", "demo"])
def test_the_shipped_models_have_sql_rules_and_tiers(name: str) -> None:
    if name == "default":
        model = default_model()
    else:
        model = load_model(Path(__file__).resolve().parents[2] / "streams/dev/demo_model.yaml")
    assert model.lifecycle.sql is not None
    assert model.lifecycle.rejection_cooldown is not None
    assert model.spec.tiers is not None
    assert [tier for tier, _ in model.spec.tiers.ordered] == ["excellent", "good", "risky"]


def test_model_check_summarises_the_feedback_sections() -> None:
    text = summary(default_model())
    assert (
        "sales qualified (SAL→SQL): MEDDIC 4 of 6 criteria met with economic_buyer, "
        "identify_pain, champion met"
    ) in text
    assert "a rejected lead stays out of MQL for 14d" in text
    assert "handoff tiers, first match: excellent, good, risky; else none" in text
    assert "the 20 most recent feedback events" in text
    assert "sales qualified" not in summary(parse_model(BASE, "plain.yaml"))
