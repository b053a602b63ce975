"""`scoring.fastpath` against the plain definitions it stands in for.

`decay.contribution`, `recycle.total`, `recycle.lower_bound` and
`recycle.first_below` are the specification; the fast twins must give the
same floats, to the bit, over random rule sets (half-lives, caps, signs).
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import leadpulse.scoring.engine
import leadpulse.scoring.fastpath
from leadpulse.schemas import Stage
from leadpulse.scoring import (
    LeadState,
    RuleState,
    ScoringModel,
    contributions,
    default_model,
    engagement,
    evaluate,
    next_recycle_at,
)
from leadpulse.scoring.decay import contribution
from leadpulse.scoring.engine import terms
from leadpulse.scoring.fastpath import Row, first_below, first_dip, lower_bound, parts, rows, total
from leadpulse.scoring.model import ModelSpec
from leadpulse.scoring.recycle import TOLERANCE, Term, horizon
from leadpulse.scoring.recycle import first_below as plain_first_below
from leadpulse.scoring.recycle import lower_bound as plain_lower_bound
from leadpulse.scoring.recycle import total as plain_total
from tests.unit.test_scoring_engine import E0

MANY = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

LIVES = [1.0, 3.0, 3600.0, 3 * 86400.0, 7 * 86400.0, 21 * 86400.0, 90 * 86400.0]
term_specs = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(LIVES), st.floats(0.5, 1e7)),  # half-life
        st.one_of(st.floats(0.01, 200), st.integers(1, 100).map(float)),  # value
        st.one_of(st.just(0.0), st.floats(0, 1e6)),  # age at the clock
        st.one_of(st.none(), st.sampled_from([5.0, 10.0, 16.0, 30.0, 80.0]), st.floats(1, 100)),
        st.booleans(),  # negative
    ),
    min_size=1,
    max_size=7,
)
thresholds = st.one_of(st.sampled_from([25.0, 50.0, 0.5]), st.floats(0.1, 150))
CLOCK = E0 + 86400.0


def make_terms(specs: list[tuple[float, float, float, float | None, bool]]) -> list[Term]:
    return [
        Term(RuleState(-value if negative else value, CLOCK - age), life, cap)
        for life, value, age, cap, negative in specs
    ]


def flat(found: list[Term]) -> list[Row]:
    return [(t.state.value, t.state.ref, t.half_life, t.cap) for t in found]


# -- reading decay ----------------------------------------------------------------------


@MANY
@given(term_specs, st.floats(0, 1e8), st.floats(0, 1e8))
def test_parts_total_and_lower_bound_are_the_plain_definitions(
    specs: list[tuple[float, float, float, float | None, bool]], later: float, span: float
) -> None:
    found = make_terms(specs)
    flat_rows = flat(found)
    at = CLOCK + later
    assert parts(flat_rows, at) == [term.at(at) for term in found]
    assert total(flat_rows, at) == plain_total(found, at)
    assert lower_bound(flat_rows, at, at + span) == plain_lower_bound(found, at, at + span)


# -- random models: the engine's reads through the model's decay specs ------------------

rule_sets = st.lists(
    st.tuples(
        st.one_of(st.sampled_from([60, 3600, 86400, 7 * 86400]), st.integers(1, 10**7)),
        st.one_of(st.integers(-80, -1), st.integers(1, 80)),  # points
        st.one_of(st.none(), st.integers(1, 100)),  # cap
        st.one_of(st.none(), st.tuples(st.floats(1, 300), st.floats(0, 5 * 86400))),  # state
    ),
    min_size=1,
    max_size=8,
)


def random_model(rules: list[tuple[int, int, int | None, Any]], recycle: float) -> ScoringModel:
    engagement_rules = []
    for index, (life, points, cap, _) in enumerate(rules):
        rule: dict[str, Any] = {
            "name": f"r{index}",
            "event": "ping",
            "points": points,
            "half_life": f"{life}s",
        }
        if cap is not None:
            rule["cap"] = cap
        engagement_rules.append(rule)
    spec = ModelSpec.model_validate(
        {
            "version": "random-1",
            "engagement": {"rules": engagement_rules},
            "fit": {"grades": {"A": 10}},
            "lifecycle": {
                "mql": recycle + 25,
                "handoff": {"engagement": recycle + 45, "min_grade": "B"},
                "recycle": recycle,
            },
        }
    )
    return ScoringModel.from_spec(spec)


def random_state(
    rules: list[tuple[int, int, int | None, Any]], model: ScoringModel, stage: Stage
) -> LeadState:
    pairs = {}
    for rule, (_, _, _, pair) in zip(model.engagement_rules, rules, strict=True):
        if pair is not None:
            size, age = pair
            pairs[rule.name] = RuleState(math.copysign(size, rule.points), CLOCK - age)
    return LeadState(lead_id="lead-1", stage=stage, clock=CLOCK, rules=pairs)


@SOME
@given(rule_sets, st.floats(0, 30 * 86400))
def test_engine_reads_equal_decay_contribution(
    rules: list[tuple[int, int, int | None, Any]], later: float
) -> None:
    model = random_model(rules, 25.0)
    state = random_state(rules, model, Stage.MQL)
    at = CLOCK + later
    expected = [
        (
            rule.name,
            contribution(state.rules[rule.name], at, rule.half_life, rule.cap),
            contribution(state.rules[rule.name], at, rule.half_life, None),
        )
        for rule in model.engagement_rules
        if rule.name in state.rules
    ]
    assert contributions(state, at, model) == expected
    plain = max(0.0, sum((capped for _, capped, _ in expected), 0.0))
    assert engagement(state, at, model) == plain
    assert leadpulse.scoring.engine._engagement(state.rules, at, model) == plain
    assert rows(state.rules, model.decay_specs) == flat(terms(state, model))


@SOME
@given(rule_sets, st.sampled_from([Stage.MQL, Stage.SAL]), st.floats(0.5, 120))
def test_next_recycle_at_is_the_plain_first_below(
    rules: list[tuple[int, int, int | None, Any]], stage: Stage, recycle: float
) -> None:
    model = random_model(rules, recycle)
    state = random_state(rules, model, stage)
    found = terms(state, model)
    due = next_recycle_at(state, model)
    assert due == plain_first_below(found, recycle, state.clock, horizon(found, state.clock))
    if due is not None:
        # the sweeper's call, with the due time as its hint, recycles at that time
        recycled, made = evaluate(state, due, model, hint=due)
        assert [(t.from_stage, t.to_stage) for t in made] == [(stage, Stage.NURTURE)]
        assert recycled.clock == due


# -- the crossing search ---------------------------------------------------------------


@MANY
@given(term_specs, thresholds)
def test_first_below_equals_the_branch_and_bound(
    specs: list[tuple[float, float, float, float | None, bool]], threshold: float
) -> None:
    found = make_terms(specs)
    end = horizon(found, CLOCK)
    fast = first_below(flat(found), threshold, CLOCK, end)
    assert fast == plain_first_below(found, threshold, CLOCK, end)


@MANY
@given(
    term_specs.map(lambda specs: [(*spec[:4], False) for spec in specs]),  # positive only
    thresholds,
    st.one_of(st.none(), st.floats(-1e5, 1e5)),
)
def test_first_below_is_the_first_crossing_within_the_tolerance(
    specs: list[tuple[float, float, float, float | None, bool]],
    threshold: float,
    shift: float | None,
) -> None:
    """From the definition: below at t, not below TOLERANCE earlier (engagement only falls)."""
    found = make_terms(specs)
    flat_rows = flat(found)
    end = horizon(found, CLOCK)
    dip = first_below(flat_rows, threshold, CLOCK, end)
    if dip is None:
        assert plain_total(found, end) >= threshold
        return
    assert CLOCK <= dip <= end
    assert plain_total(found, dip) < threshold
    if dip - TOLERANCE >= CLOCK:
        assert plain_total(found, dip - TOLERANCE) >= threshold
    # a hint, right or wrong, changes nothing
    hint = dip if shift is None else dip + shift
    assert first_below(flat_rows, threshold, CLOCK, end, hint) == dip


@MANY
@given(term_specs, thresholds, st.floats(0, 1e7))
def test_first_dip_is_first_below_cut_at_until(
    specs: list[tuple[float, float, float, float | None, bool]], threshold: float, wait: float
) -> None:
    found = make_terms(specs)
    until = CLOCK + wait
    whole = plain_first_below(found, threshold, CLOCK, horizon(found, CLOCK))
    expected = whole if whole is not None and whole <= until else None
    assert first_dip(flat(found), threshold, CLOCK, until) == expected
    assert first_dip(flat(found), threshold, CLOCK, None) == whole


def test_first_below_on_the_default_models_leads() -> None:
    model = default_model()
    positive = [rule for rule in model.engagement_rules if rule.points > 0]
    for k in range(400):
        found = [
            Term(
                RuleState(rule.points * (1 + (k * 7 + i) % 5), E0 - 600.0 * i),
                rule.half_life,
                rule.cap,
            )
            for i, rule in enumerate(positive)
            if (k >> (i % 8)) & 1
        ]
        if not found:
            continue
        end = horizon(found, E0)
        fast = first_below(flat(found), 25.0, E0, end)
        assert fast == plain_first_below(found, 25.0, E0, end)
        assert fast is None or math.isfinite(fast)


# -- no per-model state outside the model -------------------------------------------------


def test_per_model_lookups_live_on_the_model() -> None:
    """Caches keyed by id(model) can outlive the model and match a new one at its address."""
    for module in (leadpulse.scoring.engine, leadpulse.scoring.fastpath):
        mutable = [
            name
            for name, value in vars(module).items()
            if not name.startswith("__")
            and not name.endswith("__mutmut")  # `make mutate`'s tables of mutants
            and isinstance(value, dict | list | set)
        ]
        assert mutable == [], module.__name__
    model = default_model()
    assert model.decay_specs == tuple(
        (rule.name, rule.half_life, rule.cap) for rule in model.engagement_rules
    )
