"""Pinned behaviour of scoring/ that `make mutate` showed no other test holds.

Each test names the mutants it kills (docs/mutation.md lists what survives and
why). Expected values are literals worked out by hand from the rule the code
implements, never taken from the code under test.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import JsonValue

from leadpulse.schemas import BehaviorEvent, Stage
from leadpulse.schemas.feedback import CriterionStatus, Feedback, Framework, parse_feedback
from leadpulse.scoring import ModelError, apply, evaluate, explain, parse_model, summary
from leadpulse.scoring.decay import RuleState, decayed
from leadpulse.scoring.durations import format_duration, parse_duration
from leadpulse.scoring.engine import is_account_id, next_recycle_at
from leadpulse.scoring.epoch import from_epoch, to_epoch
from leadpulse.scoring.explain import notes
from leadpulse.scoring.feedback import Funnel, Judgement, judge, sales_view
from leadpulse.scoring.fit import merge_traits
from leadpulse.scoring.frameworks import check_sql
from leadpulse.scoring.lifecycle import Move, clamp_note, show, threshold_moves, transition_id
from leadpulse.scoring.loader import _allowed_keys, _pydantic_issue, load_model
from leadpulse.scoring.matchers import Condition, Ops, describe, number
from leadpulse.scoring.model import ModelSpecError, ScoringModel, canonical_json
from leadpulse.scoring.recycle import Term, horizon
from leadpulse.scoring.state import Clamp, FeedbackEntry, LeadState, merge
from leadpulse.scoring.tiers import tier_of
from tests.unit.test_feedback import Lead, model_with
from tests.unit.test_model_loader import BASE

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def issues_of(text: str) -> list[str]:
    with pytest.raises(ModelError) as caught:
        parse_model(text, "bad.yaml")
    return caught.value.issues


# --- engine.is_account_id ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a", True),  # one character is enough (x_is_account_id__mutmut_3: 1 < len)
        ("acme corp", True),  # a space (32) is printable (mutmut_10: <= 32, mutmut_11: < 33)
        ("~", True),  # 126, the last printable ASCII
        ("a" * 128, True),  # MAX_ID_LENGTH
        ("a" * 129, False),
        ("", False),
        ("acme\x1f", False),  # 31, a control character
        ("acme\x7f", False),  # DEL
        (42, False),
        (None, False),
    ],
)
def test_which_account_ids_name_an_account(value: object, expected: bool) -> None:
    assert is_account_id(value) is expected


# --- lifecycle.clamp_note ------------------------------------------------------------


def test_a_clamp_note_without_a_reported_time_says_question_mark() -> None:
    """x_clamp_note__mutmut_3: the placeholder for an unknown reported time."""
    event = BehaviorEvent(event_id="e-1", type="page_view", lead_id="lead-1", occurred_at=T0)
    assert clamp_note(event) == (
        " (event time clamped from ? to 2026-11-22T10:00:00+00:00, the record time + skew)"
    )


# --- matchers: how values read back in messages and summaries -------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (False, "false"),  # x_describe__mutmut_6, 7
        ("x", "'x'"),
        (math.nan, ".nan"),
        (math.inf, ".inf"),  # mutmut_14, 15
        (-math.inf, "-.inf"),  # mutmut_18, 19
        (2.5, "2.5"),
        (50.0, "50"),
        ([1, "a", False], "[1, 'a', false]"),
        ({"a": 1}, "a mapping"),  # mutmut_28, 29
        (7, "7"),
    ],
)
def test_describe_reads_values_as_yaml(value: object, expected: str) -> None:
    assert describe(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (50.0, "50"),
        (999_999_999_999_999.0, "999999999999999"),
        (1e15, "1000000000000000.0"),  # the first shown as a float (x_number__mutmut_4, 5)
        (-1e15, "-1000000000000000.0"),
        (0.25, "0.25"),
    ],
)
def test_number_shows_whole_numbers_below_1e15_without_a_point(value: float, expected: str) -> None:
    assert number(value) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"exists": True}, "exists"),  # xǁOpsǁdescribe_op__mutmut_2, 3
        ({"exists": False}, "is missing"),  # mutmut_4, 5
        ({"equals": "pro"}, "= 'pro'"),
        ({"in": ["a", "b"]}, "in ['a', 'b']"),  # mutmut_8, 9
        ({"between": [50, 5000.5]}, "between [50, 5000.5]"),  # mutmut_10, 12
        ({}, "?"),  # mutmut_15
    ],
)
def test_an_operator_reads_back_as_written(spec: dict[str, object], expected: str) -> None:
    assert Ops.model_validate(spec).describe_op() == expected


def test_conditions_read_back_as_written() -> None:
    """xǁConditionǁ__str____mutmut_2."""
    assert str(Condition.model_validate({"url_contains": "/pricing"})) == "url contains '/pricing'"
    condition = Condition.model_validate({"property": "plan.tier", "in": ["pro"]})
    assert str(condition) == "plan.tier in ['pro']"


def test_a_property_condition_built_at_parse_time_reads_the_property() -> None:
    """xǁConditionǁcompiled__mutmut_12: the compiled test is given the property's value.

    The model is parsed inside the test: mutmut activates a mutant only in
    calls made while the test runs, not at import time.
    """
    model = parse_model(
        BASE.replace('when: {url_contains: "/pricing"}', "when: {property: plan, equals: pro}"),
        "a.yaml",
    )
    check = dict(model.checks_by_event["page_view"])
    rule = model.rules_by_name["pricing-page"]
    assert check[rule]({"plan": "pro"}) is True
    assert check[rule]({"plan": "free"}) is False
    assert check[rule]({}) is False


# --- model file messages ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "old", "new", "expected"),
    [
        (
            "url_contains not a string",
            'url_contains: "/pricing"',
            "url_contains: 5",
            ["bad.yaml:6: engagement.rules[0].when.url_contains: expected a string, got 5"],
        ),
        (
            "url_contains empty",
            'url_contains: "/pricing"',
            'url_contains: ""',
            ["bad.yaml:6: engagement.rules[0].when.url_contains: must not be empty"],
        ),
        (
            "equals infinite",
            'when: {url_contains: "/pricing"}',
            "when: {property: plan, equals: .inf}",
            [
                "bad.yaml:6: engagement.rules[0].when.equals: "
                "expected a finite number, got .inf"  # x__scalar__mutmut_3, 4
            ],
        ),
        (
            "equals a mapping",
            'when: {url_contains: "/pricing"}',
            "when: {property: plan, equals: {a: 1}}",
            [
                "bad.yaml:6: engagement.rules[0].when.equals: "
                "expected a string, number or boolean, got a mapping"  # x__scalar__mutmut_6
            ],
        ),
        (
            "tier rule points not a number",
            "  recycle: 25\n",
            "  recycle: 25\ntiers:\n  good: {rules: {pricing-page: lots}}\n",
            [
                "bad.yaml:31: tiers.good.rules.pricing-page: "
                "a rule's minimum points must be a number, got 'lots'"  # x__tier_points__*
            ],
        ),
        (
            "criterion not a string",
            "  recycle: 25\n",
            "  recycle: 25\n  sql: {framework: bant, require: [5]}\n",
            ["bad.yaml:30: lifecycle.sql.require[0]: expected a criterion name, got 5"],
        ),
        (
            "criterion empty",
            "  recycle: 25\n",
            "  recycle: 25\n  sql: {framework: bant, require: ['']}\n",
            ["bad.yaml:30: lifecycle.sql.require[0]: expected a criterion name, got ''"],
        ),
        (
            "event name with a control character",
            "  recycle: 25\n",
            '  recycle: 25\nevents: {"Signed\\x01Up": trial_signup}\n',
            [
                "bad.yaml:30: events.Signed\x01Up: invalid event name 'Signed\x01Up': "
                "use the name as the "
                "tracker sends it (1-128 characters, no control characters)"  # _tracker_key 9
            ],
        ),
        (
            "event name with DEL",
            "  recycle: 25\n",
            '  recycle: 25\nevents: {"Signed\\x7fUp": trial_signup}\n',
            [
                "bad.yaml:30: events.Signed\x7fUp: invalid event name 'Signed\x7fUp': "
                "use the name as the "
                "tracker sends it (1-128 characters, no control characters)"  # _tracker_key 15
            ],
        ),
        (
            "max_traits a boolean",
            "  recycle: 25\n",
            "  recycle: 25\nlimits: {max_traits: true}\n",
            [
                "bad.yaml:30: limits.max_traits: "
                "max_traits must be a whole number from 0 to 10000, "
                "got true"
            ],
        ),
        (
            "max_trait_bytes zero",
            "  recycle: 25\n",
            "  recycle: 25\nlimits: {max_trait_bytes: 0}\n",
            [
                "bad.yaml:30: limits.max_trait_bytes: "
                "max_trait_bytes must be a whole number from 1 "
                "to 262144, got 0"
            ],
        ),
        (
            "max_feedback above its range",
            "  recycle: 25\n",
            "  recycle: 25\nlimits: {max_feedback: 1001}\n",
            [
                "bad.yaml:30: limits.max_feedback: max_feedback must be a whole number from 0 to "
                "1000, got 1001"
            ],
        ),
    ],
)
def test_model_file_messages(case: str, old: str, new: str, expected: list[str]) -> None:
    assert old in BASE
    assert issues_of(BASE.replace(old, new, 1)) == expected


def test_limits_accept_both_ends_of_their_ranges() -> None:
    """The `_count` bounds are inclusive (x__count__mutmut_5, 6)."""
    low = parse_model(BASE + "limits: {max_traits: 0, max_trait_bytes: 1, max_feedback: 0}\n")
    assert (low.limits.max_traits, low.limits.max_trait_bytes, low.limits.feedback_kept) == (
        0,
        1,
        0,
    )
    high = parse_model(BASE + "limits: {max_traits: 10000, max_feedback: 1000}\n")
    assert (high.limits.max_traits, high.limits.feedback_kept) == (10000, 1000)


def test_names_of_exactly_128_characters_are_accepted() -> None:
    """x__tracker_key__mutmut_7: MAX_KEY_LENGTH itself is allowed."""
    name = "E" * 128
    model = parse_model(BASE + f"events: {{{name}: trial_signup}}\n", "a.yaml")
    assert dict(model.event_names) == {name: "trial_signup"}
    too_long = issues_of(BASE + f"events: {{{name}E: trial_signup}}\n")
    assert len(too_long) == 1
    assert "(1-128 characters, no control characters)" in too_long[0]


@pytest.mark.parametrize(
    ("sql", "min_met"),
    [
        ("{framework: bant, min_met: 4}", 4),  # all four BANT criteria (x__sql_issues__mutmut_22)
        ("{framework: bant, require: [budget, need], min_met: 2}", 2),  # = required (mutmut_28)
    ],
)
def test_min_met_may_equal_its_bounds(sql: str, min_met: int) -> None:
    model = parse_model(BASE.replace("  recycle: 25\n", f"  recycle: 25\n  sql: {sql}\n"))
    assert model.lifecycle.sql is not None
    assert model.lifecycle.sql.min_met == min_met


def test_a_model_error_from_code_names_the_dotted_path() -> None:
    """x__dotted__mutmut_2: the path starts with its first key, no prefix."""
    spec = parse_model(BASE, "a.yaml").spec
    broken = spec.model_copy(
        update={"lifecycle": spec.lifecycle.model_copy(update={"recycle": 60.0})}
    )
    with pytest.raises(ModelSpecError) as caught:
        ScoringModel.from_spec(broken)
    assert str(caught.value).startswith("lifecycle.recycle: recycle (60) ")


# --- loader: reading the file, locating issues, wording pydantic's errors -----------


def test_the_line_of_a_non_utf8_byte_counts_newlines_before_it_only(tmp_path: Path) -> None:
    """x_load_model__mutmut_21 (counts from the byte on) and 24 (skips a leading newline)."""
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"\nversion: x\n# caf\xe9\nengagement: {}\n\n")
    with pytest.raises(ModelError) as caught:
        load_model(path)
    assert caught.value.issues == [f"{path}:3: the model file is not UTF-8 text"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("''\n", "(got nothing)"),  # x__kind__mutmut_5, 6
        ("[1, 2]\n", "(got a list)"),
        ("hello\n", "(got the value 'hello')"),
    ],
)
def test_a_model_file_that_is_not_a_mapping_says_what_it_is(text: str, expected: str) -> None:
    assert issues_of(text) == [
        "bad.yaml:1: the model file must be a mapping with keys version, engagement, fit, "
        f"lifecycle {expected}"
    ]


def test_a_key_that_is_a_mapping_is_reported_as_one() -> None:
    """x__kind__mutmut_3, 4."""
    assert issues_of(BASE + "? {a: 1}\n: 2\n") == [
        "bad.yaml:30: (top level): keys must be names, got a mapping"
    ]


ROOT = yaml.compose(BASE)


def issue(error: dict[str, Any]) -> tuple[int, str]:
    return _pydantic_issue(ROOT, "bad.yaml", error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # kinds pydantic gives for other schemas than today's spec: worded all the same
        (
            {"type": "model_attributes_type", "loc": ("fit",), "msg": "m", "input": 5},
            (14, "bad.yaml:14: fit: expected a mapping, got 5"),  # mutmut_94, 95
        ),
        (
            {"type": "list_type", "loc": ("fit", "rules"), "msg": "m", "input": "x"},
            (15, "bad.yaml:15: fit.rules: expected a list, got 'x'"),  # mutmut_101, 102
        ),
        (
            {"type": "string_type", "loc": ("version",), "msg": "m", "input": 1},
            (1, "bad.yaml:1: version: expected a string, got 1"),  # mutmut_107-111
        ),
        (
            {
                "type": "too_short",
                "loc": ("fit", "rules"),
                "msg": "m",
                "input": [],
                "ctx": {"field_type": "Tuple", "min_length": 3, "actual_length": 0},
            },
            (15, "bad.yaml:15: fit.rules: expected at least 3 item(s)"),  # mutmut_112-127
        ),
        (
            {"type": "too_short", "loc": ("fit", "rules"), "msg": "m", "input": []},
            (15, "bad.yaml:15: fit.rules: expected at least 1 item(s)"),  # mutmut_117-128
        ),
        (
            {"type": "string_too_short", "loc": ("version",), "msg": "m", "input": ""},
            (1, "bad.yaml:1: version: must not be empty"),  # mutmut_129-134
        ),
        (
            {
                "type": "bool_parsing",
                "loc": ("version",),
                "msg": "Input should be true",
                "input": 2,
            },
            (1, "bad.yaml:1: version: input should be true"),  # mutmut_135-142
        ),
        (
            {"type": "value_error", "loc": ("version",), "msg": "Value error, bad", "input": 2},
            (1, "bad.yaml:1: version: Value error, bad"),  # no ctx: mutmut_78-84
        ),
        (
            # a location past the file: the nearest line that exists (x__locate__mutmut_21, 23)
            {"type": "value_error", "loc": ("fit", "nosuch", 0), "msg": "m", "ctx": {"error": "x"}},
            (14, "bad.yaml:14: fit.nosuch[0]: x"),
        ),
        (
            {
                "type": "value_error",
                "loc": ("engagement", "rules", 2),
                "msg": "m",
                "ctx": {"error": "x"},
            },
            (3, "bad.yaml:3: engagement.rules[2]: x"),
        ),
        (
            {"type": "extra_forbidden", "loc": ("fit", "nosuch", "x"), "msg": "m", "input": 1},
            (14, "bad.yaml:14: fit.nosuch.x: unknown key"),  # no known keys: mutmut_43-45
        ),
    ],
)
def test_pydantic_errors_are_worded_for_the_file(
    error: dict[str, Any], expected: tuple[int, str]
) -> None:
    assert issue(error) == expected


@pytest.mark.parametrize(
    ("loc", "expected"),
    [
        (("tiers", "good"), ["min_fit", "min_engagement", "min_grade", "rules", "fit_rules"]),
        (("lifecycle", "sql"), ["framework", "require", "min_met"]),
        (
            ("engagement", "rules", 0, "when", 0),
            ["equals", "in", "between", "exists", "url_contains", "property"],
        ),
        (("tiers", "good", "min_fit"), None),  # an Annotated number: no keys (x__strip__*)
        (("fit", "grades", "A"), None),  # a dict of numbers
        (("fit", "grades"), None),
        (("fit", 0), None),  # an index into a model
        (("version", "x"), None),
    ],
)
def test_the_keys_a_location_accepts(
    loc: tuple[str | int, ...], expected: list[str] | None
) -> None:
    assert _allowed_keys(loc) == expected


# --- summary, explanations, tiers, the sales view ------------------------------------

FULL = """\
version: "s-1"
engagement:
  rules:
    - name: pricing
      event: page_view
      when: [{url_contains: /pricing}, {property: plan, equals: pro}]
      points: 0.5
      half_life: 7d
      cap: 30
    - {name: unsubscribe, event: email_unsubscribe, points: -40, half_life: 90d}
fit:
  rules:
    - {name: big, trait: company.size, between: [50, 5000], points: 20}
    - {name: vp, trait: seniority, in: [vp, cxo], points: 10}
  grades: {A: 30, B: 10}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
  sql: {framework: bant, require: [budget, need]}
  rejection_cooldown: 2d
tiers:
  hot: {min_fit: 30}
  engaged: {rules: {pricing: 0.5}}
  else: warm
events: {Signed Up: trial_signup}
"""


def test_the_summary_of_a_model_with_every_section() -> None:
    """x__points__mutmut_2-5 and x_summary__mutmut_8-35, 84, 85: every line, spaced as shown."""
    lines = summary(parse_model(FULL, "s.yaml")).split("\n")
    assert lines[0].startswith("model s-1+")
    assert lines[0].endswith(" (s.yaml)")
    assert lines[1:] == [
        "engagement rules (2):",
        "  pricing      page_view            +0.5  half-life 7d    cap 30"
        "  when url contains '/pricing' and plan = 'pro'",
        "  unsubscribe  email_unsubscribe     -40  half-life 90d",
        "fit rules (2):",
        "  big     +20  company.size between [50, 5000]",
        "  vp      +10  seniority in ['vp', 'cxo']",
        "grades: A ≥ 30, B ≥ 10, else C",
        "lifecycle: MQL at engagement ≥ 50; handoff (MQL→SAL) at ≥ 70 with grade B or better; "
        "recycle to nurture below 25",
        "sales qualified (SAL→SQL): BANT 2 of 4 criteria met with budget, need met",
        "a rejected lead stays out of MQL for 2d",
        "handoff tiers, first match: hot, engaged; else warm",
        "handoff profile (default: the fit traits): company, seniority",
        "limits: 100 traits besides the 2 the model reads; 1024 bytes of JSON per trait value; "
        "the 50 most recent merged ids; the 20 most recent feedback events",
        "segment events: 'Signed Up' → trial_signup",
    ]


MINIMAL = """\
version: "m-1"
engagement:
  rules:
    - {name: demo, event: demo_request, points: 80, half_life: 1d}
fit:
  grades: {A: 40}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: A}
  recycle: 25
  sql: {framework: champ}
"""


def test_the_summary_of_a_model_without_fit_rules() -> None:
    """x_summary__mutmut_27 (no fit rules to size) and 48 (no required criteria)."""
    lines = summary(parse_model(MINIMAL, "m.yaml")).split("\n")
    assert lines[1:] == [
        "engagement rules (1):",
        "  demo  demo_request     +80  half-life 1d",
        "fit rules (0):",
        "grades: A ≥ 40, else B",
        "lifecycle: MQL at engagement ≥ 50; handoff (MQL→SAL) at ≥ 70 with grade A or better; "
        "recycle to nurture below 25",
        "sales qualified (SAL→SQL): CHAMP 4 of 4 criteria met",
        "handoff profile (default: the fit traits): no traits",
        "limits: 100 traits besides the 0 the model reads; 1024 bytes of JSON per trait value; "
        "the 50 most recent merged ids; the 20 most recent feedback events",
    ]


E0 = T0.timestamp()


def test_explanation_parts_are_largest_first_with_the_floor_last() -> None:
    """x_explain__mutmut_30 (order) and 61 (fit starts at 0)."""
    model = parse_model(FULL, "s.yaml")
    state = LeadState(
        lead_id="lead-1",
        clock=E0,
        rules={"pricing": RuleState(20.0, E0), "unsubscribe": RuleState(-25.0, E0)},
        traits={"seniority": "vp"},
    )
    made = explain(state, E0, model)
    assert [(part.rule, part.points) for part in made.parts] == [
        ("unsubscribe", -25.0),
        ("pricing", 20.0),
        ("floor-at-zero", 5.0),
    ]
    assert (made.engagement, made.fit, made.grade) == (0.0, 10.0, "B")


def test_an_empty_lead_is_explained_by_no_parts() -> None:
    """x_explain__mutmut_43, 44 (no floor part for a sum of 0) and 61."""
    made = explain(LeadState(lead_id="lead-1", clock=E0), E0, parse_model(FULL, "s.yaml"))
    assert made.parts == ()
    assert made.fit_parts == ()
    assert (made.engagement, made.fit, made.grade) == (0.0, 0.0, "C")


def test_a_part_of_exactly_the_negligible_size_is_listed() -> None:
    """x_explain__mutmut_15: parts below 1e-9 are left out, 1e-9 itself is not."""
    state = LeadState(
        lead_id="lead-1",
        clock=E0,
        rules={"pricing": RuleState(1e-9, E0), "unsubscribe": RuleState(-1e-10, E0)},
    )
    made = explain(state, E0, parse_model(FULL, "s.yaml"))
    assert [(part.rule, part.points) for part in made.parts] == [("pricing", 1e-9)]


def test_a_last_clamp_without_clamped_events_is_no_note() -> None:
    """x_notes__mutmut_3: the note needs both the count and the last clamp."""
    state = LeadState(
        lead_id="lead-1",
        clock=E0,
        last_clamp=Clamp(event_id="e-1", reported_at=E0 + 60, clamped_to=E0),
    )
    assert notes(state, parse_model(FULL, "s.yaml")) == ()


@pytest.mark.parametrize(
    ("contributions", "fit", "expected"),
    [
        ({}, 0.0, "warm"),  # a rule the lead has no state for counts 0 (x_matches__19-22)
        ({"pricing": 0.49}, 0.0, "warm"),
        ({"pricing": 0.5}, 0.0, "engaged"),
        ({}, 30.0, "hot"),
    ],
)
def test_tier_rule_minimums(contributions: dict[str, float], fit: float, expected: str) -> None:
    model = parse_model(FULL, "s.yaml")
    tier = tier_of(
        model,
        engagement=80.0,
        fit=fit,
        grade="B",
        contributions=contributions,
        fit_matched=(),
    )
    assert tier == expected


def test_the_sales_view_names_times_arming_and_frameworks_in_order() -> None:
    """x_sales_view__mutmut_11 (the model's framework first), 61-78 (keys), 83-90 (history)."""
    model = parse_model(
        FULL.replace("framework: bant", "framework: meddic").replace(
            "require: [budget, need]", "require: [champion]"
        ),
        "s.yaml",
    )
    entry = FeedbackEntry(
        event_id="q-1",
        type="qualification",
        at=E0 + 120,
        handoff_id="h-1",
        applied=True,
        outcome="criteria recorded",
        framework="bant",
        criteria={"budget": CriterionStatus.MET},
    )
    state = LeadState(
        lead_id="lead-1",
        stage=Stage.NURTURE,
        armed=False,
        clock=E0 + 120,
        handoff_id="h-1",
        handoff_at=E0,
        cooldown_until=E0 + 86_400,
        rearmed_at=E0 + 60,
        qualification={"bant": {"budget": CriterionStatus.MET}},
        feedback=(entry,),
    )
    view = sales_view(state, model)
    assert [framework["framework"] for framework in view["frameworks"]] == ["meddic", "bant"]
    assert {
        key: view[key] for key in ("handed_off_at", "armed", "cooldown_until", "rearmed_at")
    } == {
        "handed_off_at": "2026-11-22T10:00:00+00:00",
        "armed": False,
        "cooldown_until": "2026-11-23T10:00:00+00:00",
        "rearmed_at": "2026-11-22T10:01:00+00:00",
    }
    (history,) = view["history"]
    assert list(history) == [
        "event_id",
        "type",
        "handoff_id",
        "applied",
        "stale",
        "outcome",
        "reason",
        "note",
        "framework",
        "criteria",
        "at",
    ]
    assert history["at"] == "2026-11-22T10:02:00+00:00"
    assert type(history["criteria"]["budget"]) is str  # JSON, not the enum


# --- state.merge, feedback ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("mine", "other", "kept"),
    [
        # the newer pair wins, whatever the values (x_merge__mutmut_12-19)
        (RuleState(9.0, E0), RuleState(7.0, E0 + 60), RuleState(7.0, E0 + 60)),
        (RuleState(3.0, E0 + 60), RuleState(9.0, E0), RuleState(3.0, E0 + 60)),
    ],
)
def test_merging_a_rule_the_model_no_longer_has_keeps_the_newer_pair(
    mine: RuleState, other: RuleState, kept: RuleState
) -> None:
    model = parse_model(FULL, "s.yaml")
    known = LeadState(lead_id="lead-1", clock=E0 + 60, rules={"retired": mine})
    anonymous = LeadState(lead_id="anon-1", anonymous=True, clock=E0 + 60, rules={"retired": other})
    assert merge(known, anonymous, model).rules == {"retired": kept}


def test_merged_from_keeps_the_anonymous_profiles_own_merges() -> None:
    """x_merge__mutmut_37: ids the anonymous profile merged earlier are kept once, in order."""
    model = parse_model(FULL, "s.yaml")
    known = LeadState(lead_id="lead-1", clock=E0, merged_from=("anon-a",))
    anonymous = LeadState(
        lead_id="anon-1", anonymous=True, clock=E0, merged_from=("anon-b", "anon-a", "anon-c")
    )
    assert merge(known, anonymous, model).merged_from == ("anon-a", "anon-b", "anon-c", "anon-1")


def test_disqualifying_a_disqualified_lead_is_recorded_as_not_applied() -> None:
    """x__disqualified__mutmut_3, 5, 10, 11."""
    lead = Lead()
    lead.send("disqualified", reason="bad_fit")
    assert lead.state.stage is Stage.DISQUALIFIED
    assert lead.send("disqualified", reason="duplicate", note="again") == []
    last = lead.state.feedback[-1]
    assert (last.applied, last.outcome, last.reason, last.note) == (
        False,
        "not applied: the lead is already disqualified",
        "duplicate",
        "again",
    )


# --- engine: evaluate, decide, answer -------------------------------------------------


def test_evaluate_returns_a_silent_re_arm() -> None:
    """x_evaluate__mutmut_14: no transition, but the arming changed, so the state is new.

    A rejected (disarmed) NURTURE lead re-arms when decay alone takes it below
    recycle: 30 points with a 1-day half-life fall below 25 after
    1d * log2(30 / 25) seconds, found at most TOLERANCE (0.5 s) late.
    """
    hot = Lead().model.rules_by_name["hot"]
    state = LeadState(
        lead_id="lead-1",
        stage=Stage.NURTURE,
        armed=False,
        clock=E0,
        rules={"hot": RuleState(30.0, E0)},
    )
    after, made = evaluate(state, E0 + 86_400, Lead().model)
    assert made == ()
    assert after.armed is True
    assert after.stage is Stage.NURTURE
    crossing = E0 + hot.half_life * math.log2(30 / 25)
    assert after.rearmed_at is not None
    assert crossing <= after.rearmed_at <= crossing + 0.5


def test_a_requalified_lead_that_is_hot_again_becomes_an_mql_on_the_same_event() -> None:
    """xǁ_Workǁdecide__mutmut_18: the thresholds start from the stage the verdict left."""
    lead = Lead()
    lead.hand_off()  # engagement 80 at 180 s
    lead.send("disqualified", reason="bad_fit")
    # two days later 80 has decayed to about 20 (< recycle 25: re-armed while disqualified)
    lead.send("ping", after=2 * 86_400)  # + 40: about 60, but a disqualified lead never moves
    assert lead.state.stage is Stage.DISQUALIFIED
    assert lead.state.armed is True
    made = lead.send("requalify")
    assert [(t.from_stage, t.to_stage) for t in made] == [
        (Stage.DISQUALIFIED, Stage.NURTURE),
        (Stage.NURTURE, Stage.MQL),
    ]


def test_feedback_after_a_rejection_keeps_the_cooldown() -> None:
    """xǁ_Workǁanswer__mutmut_26, 33: judge is given the lead's cooldown, and hands it back."""
    lead = Lead()  # rejection_cooldown: 2h
    handoff = lead.hand_off()
    lead.send("sales_rejected", handoff_id=handoff, reason="not_ready")  # at 240 s
    assert lead.state.cooldown_until == E0 + 240 + 7200
    lead.send("sales_accepted", handoff_id=handoff)
    lead.send("requalify")
    assert lead.state.cooldown_until == E0 + 240 + 7200


def test_a_lead_that_was_never_disarmed_has_no_re_arm_time() -> None:
    """xǁ_Workǁdecide__mutmut_47: rearmed_at is set only when an event re-arms the lead."""
    lead = Lead()
    lead.hand_off()
    lead.send("ping")
    assert lead.state.armed is True
    assert lead.state.rearmed_at is None


def test_threshold_moves_are_cooled_unless_told_otherwise() -> None:
    """x_threshold_moves__mutmut_1: `cooled` defaults to True."""
    model = Lead().model
    moves, stage, armed = threshold_moves(Stage.IQL, True, 50.0, "C", model)
    assert moves == [Move(Stage.MQL, "engagement 50 ≥ mql 50")]
    assert (stage, armed) == (Stage.MQL, True)
    assert threshold_moves(Stage.IQL, True, 50.0, "C", model, cooled=False) == (
        [],
        Stage.IQL,
        True,
    )


def test_threshold_moves_leave_a_handed_off_lead_in_sal() -> None:
    """x_threshold_moves__mutmut_44: the stage returned after a handoff."""
    moves, stage, armed = threshold_moves(Stage.MQL, True, 70.0, "B", Lead().model)
    assert moves == [Move(Stage.SAL, "engagement 70 ≥ handoff 70 and grade B ≥ B")]
    assert (stage, armed) == (Stage.SAL, True)


# --- epoch, the recycle search ---------------------------------------------------------


class _NoOffset(tzinfo):
    """A tzinfo that does not know its offset: as naive as no tzinfo at all."""

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None


@pytest.mark.parametrize("zone", [None, _NoOffset()])
def test_a_datetime_without_an_offset_is_refused(zone: tzinfo | None) -> None:
    """x_to_epoch__mutmut_1 (a tzinfo whose offset is None), 4 (the message)."""
    with pytest.raises(ValueError) as caught:
        to_epoch(datetime(2026, 11, 22, 10, 0, tzinfo=zone))
    assert str(caught.value) == (
        "2026-11-22T10:00:00 has no timezone; scoring needs aware datetimes"
    )


ZERO_RECYCLE = parse_model(
    """\
version: "zero-1"
engagement:
  rules:
    - {name: signal, event: signal, points: 10, half_life: 1h}
    - {name: drag, event: drag, points: -10, half_life: 1d}
fit:
  grades: {A: 10}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: A}
  recycle: 0
""",
    "zero.yaml",
)


def test_with_recycle_0_decay_never_recycles_even_when_the_rules_sum_below_0() -> None:
    """x__dip__mutmut_2: engagement is floored at 0, so it is never below a recycle of 0.

    60 points halving hourly against -30 halving daily: the rules sum to below
    0 after about an hour, engagement stays 0.
    """
    state = LeadState(
        lead_id="lead-1",
        stage=Stage.MQL,
        clock=E0,
        rules={"signal": RuleState(60.0, E0), "drag": RuleState(-30.0, E0)},
    )
    assert next_recycle_at(state, ZERO_RECYCLE) is None
    after, made = evaluate(state, E0 + 86_400, ZERO_RECYCLE)
    assert made == ()
    assert after.stage is Stage.MQL


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (24.996, "24.99"),  # rounded down: never "25 < 25"
        (25.0, "25"),
        (100.0, "100"),
        (10.1, "10.09"),  # the double nearest 10.1 is a little below it
        (-0.001, "-0.01"),
        (999_999_999_999_999.9, "999999999999999.87"),  # the double is ...999.875
        (1e15, "1e+15"),  # from 1e15 on, six significant digits (x_show__mutmut_3, 4)
        (-1e15, "-1e+15"),
        (math.inf, "inf"),
    ],
)
def test_show_rounds_down_to_a_hundredth(value: float, expected: str) -> None:
    assert show(value) == expected


def feedback_of(kind: str, **properties: object) -> Feedback:
    parsed = parse_feedback(
        BehaviorEvent(
            event_id="f-1", type=kind, lead_id="lead-1", occurred_at=T0, properties=properties
        )
    )
    assert parsed is not None
    return parsed


def judged(stage: Stage, armed: bool, kind: str, **properties: object) -> Judgement:
    funnel = Funnel(stage=stage, armed=armed, handoff_id="h-1", handoff_at=E0, accepted_at=None)
    return judge(
        funnel,
        feedback_of(kind, **properties),
        event_id="f-1",
        event_type=kind,
        at=E0 + 60,
        model=Lead().model,
    )


def test_judging_a_disqualification() -> None:
    """x__disqualified__mutmut_17-38: the funnel it leaves, the move and the entry."""
    verdict = judged(Stage.SAL, True, "disqualified", reason="bad_fit", note="a student")
    assert (verdict.funnel.stage, verdict.funnel.armed) == (Stage.DISQUALIFIED, False)
    reason = "sales disqualified the lead (bad_fit); it never hands off again until a requalify"
    assert verdict.move == Move(Stage.DISQUALIFIED, reason)
    entry = verdict.entry
    assert (entry.applied, entry.outcome, entry.reason, entry.note) == (
        True,
        reason,
        "bad_fit",
        "a student",
    )
    again = judged(Stage.DISQUALIFIED, False, "disqualified", reason="other")
    assert again.move is None
    assert (again.entry.applied, again.entry.outcome, again.entry.reason) == (
        False,
        "not applied: the lead is already disqualified",
        "other",
    )


@pytest.mark.parametrize(
    ("armed", "arming"),
    [
        (True, "armed: its engagement fell below recycle while it was disqualified"),
        (False, "it re-arms once engagement falls below recycle 25"),
    ],
)
def test_judging_a_requalify(armed: bool, arming: str) -> None:
    """x__requalify__mutmut_12, 14 (the arming said), 23, 25 (the stage it leaves)."""
    verdict = judged(Stage.DISQUALIFIED, armed, "requalify")
    assert verdict.move == Move(Stage.NURTURE, f"sales requalified the lead; {arming}")
    assert (verdict.funnel.stage, verdict.funnel.armed) == (Stage.NURTURE, armed)
    assert (verdict.entry.applied, verdict.entry.outcome) == (True, verdict.move.reason)


def test_requalifying_a_lead_that_is_not_disqualified_names_its_stage() -> None:
    """x__requalify__mutmut_5, 10."""
    verdict = judged(Stage.SAL, True, "requalify")
    assert verdict.move is None
    assert verdict.funnel.stage is Stage.SAL
    assert verdict.entry.outcome == "not applied: the lead is SAL, not disqualified"


# --- loader: YAML structure and size ------------------------------------------------------


def test_a_default_source_name_is_string() -> None:
    """x_parse_model__mutmut_1, 2."""
    with pytest.raises(ModelError) as caught:
        parse_model("hello\n")
    assert caught.value.issues[0].startswith("<string>:1: the model file must be a mapping")


def test_a_deeply_nested_file_is_an_issue_not_a_crash() -> None:
    """x__compose__mutmut_49."""
    assert issues_of("[" * 3000 + "]" * 3000) == ["bad.yaml:1: the model file is nested too deeply"]


def test_an_alias_cycle_is_walked_once() -> None:
    """x__size_issues__mutmut_4, 5 and x__structure_issues__mutmut_3, 5, 6: a cycle ends."""
    found = issues_of("a: &a {b: *a}\n")
    assert found[:4] == [
        "bad.yaml:1: (top level): missing required key 'version'",
        "bad.yaml:1: (top level): missing required key 'engagement'",
        "bad.yaml:1: (top level): missing required key 'fit'",
        "bad.yaml:1: (top level): missing required key 'lifecycle'",
    ]


def sized(extra: str) -> str:
    """A file of exactly 100,000 values once aliases are expanded (`extra` adds to it).

    Values: the root mapping 1; key b 1 and its list 1 + 33 = 34; key c 1 and
    its list 1 + 2940 aliases of b's list (34 each); key d 1 and a list holding
    only itself, which counts 1: 1 + 35 + 1 + 1 + 2940 * 34 + 2 = 100,000.
    """
    b = ", ".join(["x"] * 33)
    c = ", ".join(["*b"] * 2940)
    return f"b: &b [{b}]\nc: [{c}{extra}]\nd: &d [*d]\n"


def test_the_size_limit_allows_exactly_max_nodes_values() -> None:
    """x__size_issues__mutmut_6, 19, 20, 25: the count and the boundary, to one value."""
    too_big = ["bad.yaml:1: more than 100000 values once aliases are expanded"]
    assert issues_of(sized(", x")) == too_big
    at_limit = issues_of(sized(""))
    assert at_limit != too_big
    assert "bad.yaml:1: (top level): missing required key 'version'" in at_limit


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            "1: x\nversion: again\n",
            [
                "bad.yaml:30: (top level): keys must be names, got 1",
                "bad.yaml:31: version: duplicate key 'version' (first on line 1)",
            ],
        ),
        (
            "<<: {a: 1}\nversion: again\n",
            [
                "bad.yaml:30: (top level): merge keys (<<) are not supported",
                "bad.yaml:31: version: duplicate key 'version' (first on line 1)",
            ],
        ),
    ],
)
def test_structure_issues_go_on_after_a_bad_key(extra: str, expected: list[str]) -> None:
    """x__structure_issues__mutmut_21, 28: the keys after a bad one are checked too."""
    assert issues_of(BASE + extra) == expected


# --- matchers: field paths and ranges -----------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            "5",
            ["bad.yaml:17: fit.rules[0].trait: expected a field name, got 5"],  # _path 1, 4, 5
        ),
        (
            "'" + "a" * 64 + "." + "b" * 64 + "'",
            [
                f"bad.yaml:17: fit.rules[0].trait: invalid field name '{'a' * 64}.{'b' * 64}': "
                "use a name or a dotted path like utm.source"  # 129 characters: _path 10-17
            ],
        ),
    ],
)
def test_field_path_messages(path: str, expected: list[str]) -> None:
    assert issues_of(BASE.replace("trait: company_size", f"trait: {path}")) == expected


def test_a_field_path_of_128_characters_is_accepted() -> None:
    """x__path__mutmut_11: 128 characters is the longest path."""
    path = "a" * 64 + "." + "b" * 63
    model = parse_model(BASE.replace("trait: company_size", f"trait: {path}"), "a.yaml")
    assert model.fit_rules[0].trait == ("a" * 64, "b" * 63)


def test_between_messages_and_a_range_of_one_value() -> None:
    """x__range__mutmut_2 (not a list), 18 (low == high is a range)."""
    assert issues_of(BASE.replace("between: [50, 5000]", "between: 5")) == [
        "bad.yaml:18: fit.rules[0].between: expected [low, high] with two numbers, got 5"
    ]
    model = parse_model(BASE.replace("between: [50, 5000]", "between: [50, 50]"), "a.yaml")
    assert model.fit_rules[0].between == (50.0, 50.0)


REASONS = parse_model(
    """\
version: "reasons-1"
engagement:
  rules:
    - {name: zulu, event: zulu, points: -10, half_life: 1h}
    - {name: big, event: big, points: 10, half_life: 1h, cap: 30}
    - {name: tick, event: tick, points: 1, half_life: 1h}
    - {name: alpha, event: alpha, points: 10, half_life: 1h}
fit:
  grades: {A: 10}
lifecycle:
  mql: 30
  handoff: {engagement: 70, min_grade: A}
  recycle: 25
""",
    "reasons.yaml",
)


def test_transition_reasons_rank_capped_points_then_names() -> None:
    """x__top_reasons__mutmut_19 (a 1-point reason stays), 23 (capped, not raw, points rank)
    and 24 (equal sizes by name): alpha +40 and zulu -40 tie, big is 100 capped to 30."""
    state = LeadState(
        lead_id="lead-1",
        clock=E0,
        rules={
            "zulu": RuleState(-40.0, E0),
            "big": RuleState(100.0, E0),
            "tick": RuleState(1.0, E0),
            "alpha": RuleState(40.0, E0),
        },
    )
    noop = BehaviorEvent(event_id="n-1", type="noop", lead_id="lead-1", occurred_at=T0)
    _, made = apply(state, noop, REASONS)
    (mql,) = made
    assert (mql.to_stage, mql.engagement) == (Stage.MQL, 31.0)
    assert [(reason.rule, reason.points) for reason in mql.reasons] == [
        ("alpha", 40.0),
        ("zulu", -40.0),
        ("big", 30.0),
        ("tick", 1.0),
    ]


def test_decay_re_arms_only_disarmed_nurture_and_disqualified_leads() -> None:
    """xǁ_Workǁdecay_until__mutmut_5, both ways its condition can go wrong.

    An armed NURTURE lead is not re-armed again (its re-arm time stays unset),
    and an SQL, which sales owns, is never re-armed by decay.
    """
    model = Lead().model
    noop = BehaviorEvent(
        event_id="n-1", type="noop", lead_id="lead-1", occurred_at=from_epoch(E0 + 3600)
    )
    armed = LeadState(
        lead_id="lead-1", stage=Stage.NURTURE, clock=E0, rules={"hot": RuleState(10.0, E0)}
    )
    after, made = apply(armed, noop, model)
    assert made == ()
    assert (after.armed, after.rearmed_at) == (True, None)
    owned = LeadState(
        lead_id="lead-1",
        stage=Stage.SQL,
        armed=False,
        clock=E0,
        rules={"hot": RuleState(30.0, E0)},
    )
    after, made = evaluate(owned, E0 + 86_400, model)
    assert made == ()
    assert (after.stage, after.armed, after.rearmed_at) == (Stage.SQL, False, None)


@pytest.mark.parametrize(("event_id", "crossing"), [(None, None), ("e-1", 1795341600.0)])
def test_a_transition_id_needs_exactly_one_cause(
    event_id: str | None, crossing: float | None
) -> None:
    """x_transition_id__mutmut_5: the message."""
    with pytest.raises(ValueError) as caught:
        transition_id("lead-1", Stage.IQL, Stage.MQL, event_id=event_id, crossing=crossing)
    assert str(caught.value) == (
        "a move is caused by an event, by decay or by a rescore: give one of "
        "event_id, crossing, rescore"
    )


TIERED = parse_model(
    """\
version: "tiered-1"
engagement:
  rules:
    - {name: demo, event: demo_request, points: 80, half_life: 1d}
fit:
  rules:
    - {name: size, trait: company_size, between: [50, 5000], points: 40}
  grades: {A: 40, B: 20}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
tiers:
  hot: {min_fit: 40}
  else: warm
""",
    "tiered.yaml",
)


def test_a_handoff_stores_its_tier_and_later_events_keep_the_re_arm_time() -> None:
    """xǁ_Workǁresult__mutmut_32, 33 (the tier stored) and __init____mutmut_25 (rearmed_at
    carried through an event that does not re-arm)."""
    state = LeadState(
        lead_id="lead-1",
        stage=Stage.MQL,
        clock=E0,
        rules={"demo": RuleState(80.0, E0)},
        traits={"company_size": 800},
        rearmed_at=E0 - 60,
    )
    noop = BehaviorEvent(event_id="n-1", type="noop", lead_id="lead-1", occurred_at=T0)
    after, made = apply(state, noop, TIERED)
    assert [(t.to_stage, t.tier) for t in made] == [(Stage.SAL, "hot")]
    assert after.handoff_tier == "hot"
    assert after.rearmed_at == E0 - 60


def test_a_zero_value_stays_zero_however_far_back_it_is_read() -> None:
    """x_decayed__mutmut_1: 0 is returned as is, never multiplied by 2^2000 (an overflow)."""
    assert decayed(0.0, -2000 * 3600.0, 3600.0) == 0.0
    assert decayed(5.0, 0.0, 3600.0) == 5.0
    assert decayed(8.0, 7200.0, 3600.0) == 2.0


# --- model file: grades, duplicates, the canonical form ------------------------------------

GRADES = "  grades:\n    A: 50\n    B: 30\n    C: 10\n"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def with_grades(grades: str) -> str:
    assert GRADES in BASE
    return BASE.replace(GRADES, f"  grades: {grades}\n")


def many_grades(count: int, last: int | None = None) -> str:
    """`count` grades A, B, ... with thresholds 10 * count down to 10 (`last` for the last)."""
    thresholds = [10 * (count - index) for index in range(count)]
    if last is not None:
        thresholds[-1] = last
    return "{" + ", ".join(f"{LETTERS[i]}: {t}" for i, t in enumerate(thresholds)) + "}"


@pytest.mark.parametrize(
    ("grades", "expected"),
    [
        (
            "{}",  # x_semantic_issues__mutmut_20, 23-30: no min_grade check without grades
            ["bad.yaml:20: fit.grades: declare at least one grade, e.g. {A: 50, B: 30}"],
        ),
        (
            "{A: 50}",  # one grade is enough to check min_grade (mutmut_19): B is the implied
            [],
        ),
        (
            "{A: 50, C: 30}",  # a wrong letter stops the checks (mutmut_52)
            [
                "bad.yaml:20: fit.grades.C: grades must be A, B, C, ... in order, best first; "
                "expected 'B' here, got 'C'"
            ],
        ),
        (
            many_grades(26, last=20),  # Z is not checked (mutmut_21, 31-41)
            ["bad.yaml:20: fit.grades: at most 25 grades (A to Y; the next letter is implied)"],
        ),
        (
            many_grades(25, last=20),  # Y is (mutmut_42)
            [
                "bad.yaml:20: fit.grades.Y: threshold 20 must be below X's 20 "
                "(thresholds strictly decrease from A)"
            ],
        ),
    ],
)
def test_grade_issues(grades: str, expected: list[str]) -> None:
    text = with_grades(grades)
    if not expected:
        assert parse_model(text, "a.yaml").grades == (("A", 50.0),)
    else:
        assert issues_of(text) == expected


def test_an_unknown_min_grade_with_one_grade() -> None:
    """x_semantic_issues__mutmut_19: with one grade, the known letters are A and B."""
    text = with_grades("{A: 50}").replace("min_grade: B", "min_grade: C")
    assert issues_of(text) == [
        "bad.yaml:25: lifecycle.handoff.min_grade: unknown grade 'C': use one of A, B "
        "(B is the grade below the last threshold)"
    ]


def test_duplicate_fit_rule_names() -> None:
    """x_semantic_issues__mutmut_10, 14, 15."""
    text = BASE.replace(
        "      points: 20\n",
        "      points: 20\n    - {name: mid-market, trait: industry, equals: saas, points: 5}\n",
    )
    assert issues_of(text) == [
        "bad.yaml:20: fit.rules[1].name: duplicate rule name 'mid-market' (also fit.rules[0])"
    ]


def test_the_canonical_form_uses_the_files_keys_and_keeps_unicode() -> None:
    """x_canonical_json__mutmut_4, 9, 12, 15, 19, 24: the form the model version hashes."""
    text = BASE.replace('"/pricing"', '"/précis"').replace(
        "      between: [50, 5000]\n", "      in: [50, 500]\n"
    )
    form = canonical_json(parse_model(text, "a.yaml").spec)
    assert '"url_contains":"/précis"' in form
    assert '"in":[50,500]' in form
    assert '"in_"' not in form


# --- feedback: acceptance, qualification, the SQL check -----------------------------------


@pytest.mark.parametrize(("after", "took"), [(0, "0s"), (1, "1s"), (5400, "90m")])
def test_acceptance_says_how_long_after_the_handoff(after: int, took: str) -> None:
    """x__accepted__mutmut_18-20: the time to accept in words, 0s at the handoff itself."""
    funnel = Funnel(stage=Stage.SAL, armed=True, handoff_id="h-1", handoff_at=E0, accepted_at=None)
    verdict = judge(
        funnel,
        feedback_of("sales_accepted", handoff_id="h-1"),
        event_id="f-1",
        event_type="sales_accepted",
        at=E0 + after,
        model=Lead().model,
    )
    assert verdict.funnel.accepted_at == E0 + after
    assert verdict.entry.outcome == f"sales accepted the handoff {took} after it"


def test_a_second_acceptance_names_the_first() -> None:
    """x__accepted__mutmut_2, 7."""
    funnel = Funnel(stage=Stage.SAL, armed=True, handoff_id="h-1", handoff_at=E0, accepted_at=E0)
    verdict = judge(
        funnel,
        feedback_of("sales_accepted", handoff_id="h-1"),
        event_id="f-2",
        event_type="sales_accepted",
        at=E0 + 60,
        model=Lead().model,
    )
    assert verdict.funnel.accepted_at == E0
    assert verdict.entry.outcome == (
        "not applied: the handoff was already accepted at 2026-11-22T10:00:00+00:00"
    )


MEDDIC_MET = {
    "economic_buyer": "met",
    "identify_pain": "met",
    "champion": "met",
    "metrics": "met",
}


def qualify(stage: Stage, criteria: dict[str, str], model: ScoringModel) -> Judgement:
    funnel = Funnel(stage=stage, armed=True, handoff_id="h-1", handoff_at=E0, accepted_at=None)
    return judge(
        funnel,
        feedback_of("qualification", handoff_id="h-1", framework="meddic", criteria=criteria),
        event_id="q-1",
        event_type="qualification",
        at=E0 + 60,
        model=model,
    )


def test_a_qualification_that_meets_the_rule_moves_a_sal_to_sql() -> None:
    """x__qualification__mutmut_48-56: the funnel, the move and the entry."""
    verdict = qualify(Stage.SAL, MEDDIC_MET, Lead().model)
    reason = (
        "sales qualified the lead: MEDDIC 4 of 6 met (economic_buyer, identify_pain, champion, "
        "metrics), economic_buyer, identify_pain, champion required; min_met 4"
    )
    assert verdict.move == Move(Stage.SQL, reason)
    assert verdict.funnel.stage is Stage.SQL
    entry = verdict.entry
    assert (entry.outcome, entry.framework, entry.criteria["champion"]) == (
        reason,
        "meddic",
        CriterionStatus.MET,
    )


def test_a_qualification_that_meets_the_rule_outside_sal_says_so() -> None:
    """x__qualification__mutmut_58, 60."""
    verdict = qualify(Stage.SQL, MEDDIC_MET, Lead().model)
    assert verdict.move is None
    assert verdict.entry.outcome == (
        "MEDDIC 4 of 6 met (economic_buyer, identify_pain, champion, metrics), economic_buyer, "
        "identify_pain, champion required; min_met 4 (the lead is SQL, not SAL: no move)"
    )


def test_a_qualification_without_an_sql_rule_is_recorded() -> None:
    """x__qualification__mutmut_22: the entry keeps the framework and criteria."""
    verdict = qualify(
        Stage.SAL,
        {"champion": "met"},
        parse_model(
            FULL.replace("  sql: {framework: bant, require: [budget, need]}\n", ""), "s.yaml"
        ),
    )
    assert verdict.move is None
    entry = verdict.entry
    assert (entry.outcome, entry.framework, entry.criteria) == (
        "MEDDIC recorded; the model has no lifecycle.sql rule",
        "meddic",
        {"champion": CriterionStatus.MET},
    )


def test_the_sql_check_in_words() -> None:
    """x_check_sql__mutmut_6 (False, not None), 22 (no required list), 43, 44 (' and ')."""
    meddic = Lead().model.lifecycle.sql
    assert meddic is not None
    other = check_sql(meddic, Framework.BANT, {"budget": CriterionStatus.MET})
    assert other.qualified is False
    assert other.summary == "BANT 1 of 4 met; the model qualifies on MEDDIC"
    short = check_sql(meddic, Framework.MEDDIC, {"economic_buyer": CriterionStatus.MET})
    assert short == (
        False,
        "MEDDIC 1 of 6 met; SQL needs identify_pain, champion met and 3 more met (min_met 4)",
    )
    every = parse_model(FULL.replace("require: [budget, need]", "min_met: 2"), "s.yaml")
    assert every.lifecycle.sql is not None
    done = {"budget": CriterionStatus.MET, "need": CriterionStatus.MET}
    assert check_sql(every.lifecycle.sql, Framework.BANT, done) == (
        True,
        "BANT 2 of 4 met (budget, need); min_met 2",
    )


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (604_800.0, "7d"),
        (7_776_000.000001, "90d"),  # a microsecond off 90d is 90d (mutmut_22: abs_tol)
        (315_360_000.01, "3.1536e+08s"),  # 10 ms past 3650d is not 3650d (mutmut_21: rel_tol)
        (5400.0, "90m"),
        (0.5, "0.5s"),
    ],
)
def test_format_duration_names_only_whole_units(seconds: float, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "cap: 30",
            "cap: lots",
            "bad.yaml:9: engagement.rules[0].cap: cap must be a number, got 'lots'",
        ),  # x__cap__mutmut_3, 6, 7
        (
            "cap: 30",
            "cap: 0",
            "bad.yaml:9: engagement.rules[0].cap: cap must be greater than 0, got 0",
        ),  # x__cap__mutmut_8
        (
            "    A: 50",
            "    A: high",
            "bad.yaml:21: fit.grades.A: grade threshold must be a number, got 'high'",
        ),  # x__grade_threshold__*
        (
            "min_grade: B",
            "min_grade: AB",
            "bad.yaml:28: lifecycle.handoff.min_grade: expected a grade letter A-Z, got 'AB'",
        ),  # x__grade_letter__mutmut_1 ('AB' is in 'ABC...')
        (
            "min_grade: B",
            "min_grade: 5",
            "bad.yaml:28: lifecycle.handoff.min_grade: expected a grade letter A-Z, got 5",
        ),  # x__grade_letter__mutmut_2, 7, 8
    ],
)
def test_number_and_letter_messages(old: str, new: str, expected: str) -> None:
    assert old in BASE
    assert issues_of(BASE.replace(old, new, 1)) == [expected]


def test_ten_years_is_the_longest_duration() -> None:
    """x_parse_duration__mutmut_25, 27."""
    assert parse_duration("3650d") == 3650 * 86_400.0
    with pytest.raises(ValueError) as caught:
        parse_duration("3651d")
    assert str(caught.value) == "duration '3651d' is longer than 3650d (ten years)"


@pytest.mark.parametrize(
    ("stage", "after", "move", "outcome"),
    [
        (
            Stage.SAL,
            Stage.SQL,
            Move(Stage.SQL, "sales qualified the lead"),
            "sales qualified the lead",
        ),
        (Stage.NURTURE, Stage.NURTURE, None, "not applied: the lead is NURTURE, not SAL"),
    ],
)
def test_the_legacy_sales_qualified_verdict(
    stage: Stage, after: Stage, move: Move | None, outcome: str
) -> None:
    """x__legacy_qualified__mutmut_5, 10, 25, 27."""
    verdict = judged(stage, True, "sales_qualified")
    assert (verdict.funnel.stage, verdict.move, verdict.entry.outcome) == (after, move, outcome)


def reject(stage: Stage, model: ScoringModel, handoff_id: str = "h-1") -> Judgement:
    funnel = Funnel(stage=stage, armed=True, handoff_id="h-1", handoff_at=E0, accepted_at=None)
    return judge(
        funnel,
        feedback_of("sales_rejected", handoff_id=handoff_id, reason="bad_fit", note="too small"),
        event_id="r-1",
        event_type="sales_rejected",
        at=E0 + 60,
        model=model,
    )


@pytest.mark.parametrize(
    ("model", "until", "reason"),
    [
        (
            model_with(),
            None,
            "sales rejected the lead (bad_fit); it re-arms once engagement falls below recycle 25",
        ),
        (
            Lead().model,
            E0 + 60 + 7200,
            "sales rejected the lead (bad_fit); it re-arms once engagement falls below recycle 25"
            " and not before 2026-11-22T12:01:00+00:00 (rejection_cooldown 2h)",
        ),
    ],
)
def test_judging_a_rejection(model: ScoringModel, until: float | None, reason: str) -> None:
    """x__rejected__mutmut_18, 21 (no cooldown said), 38, 42 (the stage), 54, 57 (outcome)."""
    verdict = reject(Stage.SAL, model)
    assert verdict.move == Move(Stage.NURTURE, reason)
    funnel = verdict.funnel
    assert (funnel.stage, funnel.armed, funnel.cooldown_until) == (Stage.NURTURE, False, until)
    entry = verdict.entry
    assert (entry.applied, entry.outcome, entry.reason, entry.note) == (
        True,
        reason,
        "bad_fit",
        "too small",
    )


def test_a_rejection_not_applied_keeps_its_reason() -> None:
    """x__rejected__mutmut_3 (wrong stage) and x_judge__mutmut_30 (another handoff)."""
    wrong_stage = reject(Stage.NURTURE, model_with()).entry
    assert (wrong_stage.applied, wrong_stage.outcome, wrong_stage.reason, wrong_stage.note) == (
        False,
        "not applied: the lead is NURTURE, not SAL or SQL",
        "bad_fit",
        "too small",
    )
    stale = reject(Stage.SAL, model_with(), handoff_id="h-0").entry
    assert (stale.applied, stale.stale, stale.outcome, stale.reason, stale.note) == (
        False,
        True,
        "not applied: answers handoff h-0, the current one is h-1",
        "bad_fit",
        "too small",
    )


def test_a_legacy_rejection_without_a_reason_gives_none() -> None:
    """x__rejected__mutmut_13: no handoff_id, no reason, no parentheses."""
    funnel = Funnel(stage=Stage.SAL, armed=True, handoff_id="h-1", handoff_at=E0, accepted_at=None)
    verdict = judge(
        funnel,
        feedback_of("sales_rejected"),
        event_id="r-1",
        event_type="sales_rejected",
        at=E0 + 60,
        model=model_with(),
    )
    assert verdict.move == Move(
        Stage.NURTURE,
        "sales rejected the lead; it re-arms once engagement falls below recycle 25",
    )


def test_deleting_a_trait_makes_room_for_a_new_one_in_the_same_update() -> None:
    """x__merge_bounded__mutmut_13, 15: a null for a held, undeclared key frees its room.

    max_traits 1: `a` finds no room (x holds it) and is dropped, `x: null`
    frees the room, `b` takes it.
    """
    model = parse_model(FULL + "limits: {max_traits: 1}\n", "s.yaml")
    merged, dropped = merge_traits({"x": 1}, {"a": 1, "x": None, "b": 2}, model)
    assert (merged, dropped) == ({"b": 2}, 1)


def test_a_deleted_trait_frees_exactly_one_place() -> None:
    """x__merge_bounded__mutmut_16-18: room is counted, not reset, when a key is deleted.

    max_traits 3 and x held: `a` takes one of the 2 free places, `x: null`
    frees one (2 free), `b` and `c` take them, `d` is dropped.
    """
    model = parse_model(FULL + "limits: {max_traits: 3}\n", "s.yaml")
    update: dict[str, JsonValue] = {"a": 1, "x": None, "b": 2, "c": 3, "d": 4}
    assert merge_traits({"x": 1}, update, model) == ({"a": 1, "b": 2, "c": 3}, 1)


def test_an_operator_less_test_matches_nothing() -> None:
    """xǁOpsǁtest__mutmut_24: the fall-through of `Ops.test` (never built by a model file)."""
    assert Ops().test("x") is False


def test_the_horizon_of_no_terms_is_the_start() -> None:
    """x_horizon__mutmut_7: 64 half-lives of the longest rule, none without rules."""
    assert horizon([], 100.0) == 100.0
    assert horizon([Term(RuleState(1.0, 0.0), 60.0, None)], 100.0) == 100.0 + 64 * 60.0


def test_a_handoff_at_exactly_mql_is_allowed() -> None:
    """x_semantic_issues__mutmut_83: handoff.engagement may equal mql."""
    model = parse_model(BASE.replace("    engagement: 70\n", "    engagement: 50\n"), "a.yaml")
    assert (model.lifecycle.mql, model.lifecycle.handoff.engagement) == (50.0, 50.0)


@pytest.mark.parametrize(
    "section",
    [
        "  sql: {framework: bant}\n",  # x_semantic_issues__mutmut_122
        "tiers:\n  good: {min_grade: A}\n",  # x_semantic_issues__mutmut_126
    ],
)
def test_issues_before_the_sql_and_tier_sections_are_kept(section: str) -> None:
    text = BASE.replace("  recycle: 25\n", "  recycle: 60\n" + section)
    assert issues_of(text) == [
        "bad.yaml:29: lifecycle.recycle: recycle (60) must be below mql (50), "
        "or a lead would recycle the moment it qualifies"
    ]
