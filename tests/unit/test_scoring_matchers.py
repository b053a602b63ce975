"""Matchers and durations: plain data, type-aware, no surprises."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadpulse.scoring import format_duration, parse_duration
from leadpulse.scoring.matchers import Condition, same
from leadpulse.scoring.model import EngagementRule, FitRule


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600), ("1.5h", 5400)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (90, "duration 90 has no unit"),
        (1.5, "duration 1.5 has no unit"),
        ("7 days", "invalid duration '7 days'"),
        ("7D", "invalid duration '7D'"),
        ("-3d", "invalid duration '-3d'"),
        ("0s", "duration '0s' must be positive"),
        ("3651d", "longer than 3650d"),
        (True, "invalid duration True"),
        (None, "invalid duration None"),
    ],
)
def test_bad_durations(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"), [(604800, "7d"), (43200, "12h"), (90, "90s"), (1800, "30m"), (1.5, "1.5s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def condition(**spec: Any) -> Condition:
    return Condition.model_validate(spec)


PROPS: dict[str, Any] = {
    "url": "https://example.com/pricing?plan=team",
    "plan": "team",
    "seats": 12,
    "ratio": 0.5,
    "trial": True,
    "gone": None,
    "utm": {"source": "newsletter", "medium": {"kind": "email"}},
    "tags": ["a", "b"],
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"url_contains": "/pricing"}, True),
        ({"url_contains": "/Pricing"}, False),  # case-sensitive, like URLs
        ({"property": "plan", "equals": "team"}, True),
        ({"property": "plan", "equals": "Team"}, False),
        ({"property": "seats", "equals": 12}, True),
        ({"property": "seats", "equals": 12.0}, True),
        ({"property": "seats", "equals": "12"}, False),  # no string/number coercion
        ({"property": "trial", "equals": True}, True),
        ({"property": "trial", "equals": 1}, False),  # True is not 1
        ({"property": "seats", "equals": True}, False),
        ({"property": "plan", "in": ["pro", "team"]}, True),
        ({"property": "plan", "in": ["pro"]}, False),
        ({"property": "seats", "between": [10, 12]}, True),
        ({"property": "seats", "between": [13, 20]}, False),
        ({"property": "ratio", "between": [0, 1]}, True),
        ({"property": "trial", "between": [0, 1]}, False),  # booleans are not numbers
        ({"property": "plan", "between": [0, 1]}, False),
        ({"property": "utm.source", "equals": "newsletter"}, True),
        ({"property": "utm.medium.kind", "in": ["email"]}, True),
        ({"property": "utm.nope", "exists": False}, True),
        ({"property": "utm.source.deeper", "exists": True}, False),
        ({"property": "gone", "exists": True}, False),  # null counts as absent
        ({"property": "gone", "exists": False}, True),
        ({"property": "missing", "exists": False}, True),
        ({"property": "tags", "exists": True}, True),
        ({"property": "tags", "equals": "a"}, False),  # lists never equal a scalar
    ],
)
def test_condition_semantics(spec: dict[str, Any], expected: bool) -> None:
    assert condition(**spec).matches(PROPS) is expected


def test_url_contains_needs_a_string_url() -> None:
    assert not condition(url_contains="/pricing").matches({"url": ["/pricing"]})
    assert not condition(url_contains="/pricing").matches({})


def test_fit_rule_reads_traits() -> None:
    rule = FitRule.model_validate(
        {"name": "vp", "trait": "role.level", "in": ["vp", "c-level"], "points": 20}
    )
    assert rule.matches({"role": {"level": "vp"}})
    assert not rule.matches({"role": "vp"})
    assert str(condition(property="utm.source", equals="x")) == "utm.source = 'x'"


_scalars = st.one_of(
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from([0.0, 1.0, -1.0, 2.5, 1e20]),
    st.just(10**20),
    st.sampled_from(["", "a", "1", "true", "Software"]),
)
_values = st.one_of(_scalars, st.none(), st.lists(_scalars, max_size=2), st.just({"a": 1}))


@given(options=st.lists(_scalars, min_size=1, max_size=6), value=_values)
def test_in_is_same_against_each_option(options: list[Any], value: Any) -> None:
    """The set lookup of `in` says exactly what scanning the list with `same` says."""
    condition = Condition.model_validate({"property": "x", "in": options})
    expected = any(same(value, option) for option in options)
    assert condition.matches({"x": value}) is expected


@given(
    options=st.lists(_scalars, min_size=1, max_size=6),
    value=_values,
    op=st.sampled_from(["in", "equals", "exists", "between"]),
)
def test_compiled_fit_check_matches_the_rule(options: list[Any], value: Any, op: str) -> None:
    """`FitRule.check` (what fit_points runs) says what `FitRule.matches` says."""
    arg: Any = {
        "in": options,
        "equals": options[0],
        "exists": True,
        "between": [-1, 2.5],
    }[op]
    rule = FitRule.model_validate({"name": "r", "trait": "t.x", "points": 3, op: arg})
    for traits in ({"t": {"x": value}}, {"t": value}, {}):
        assert rule.check().matches(traits) is rule.matches(traits)


_conditions = st.one_of(
    st.sampled_from([{"url_contains": "/pricing"}, {"url_contains": "a"}]),
    st.builds(lambda v: {"property": "x", "equals": v}, _scalars),
    st.builds(lambda v: {"property": "p.x", "in": v}, st.lists(_scalars, min_size=1, max_size=4)),
    st.just({"property": "x", "between": [0, 2]}),
    st.booleans().map(lambda b: {"property": "p.x", "exists": b}),
)
_properties = st.fixed_dictionaries(
    {},
    optional={
        "url": st.one_of(st.sampled_from(["https://x/pricing", "/a", ""]), _scalars),
        "x": _values,
        "p": st.one_of(st.fixed_dictionaries({}, optional={"x": _values}), _scalars),
    },
)


@given(when=st.lists(_conditions, max_size=3), properties=_properties)
def test_compiled_rule_check_matches_the_rule(
    when: list[dict[str, Any]], properties: dict[str, Any]
) -> None:
    """`EngagementRule.check` (what apply runs) says what `EngagementRule.matches` says."""
    spec: dict[str, Any] = {"name": "r", "event": "page_view", "points": 1, "half_life": "1d"}
    if when:  # no `when` at all: every event of the type matches
        spec["when"] = when
    rule = EngagementRule.model_validate(spec)
    assert rule.check()(properties) is rule.matches(properties)
