"""The score-over-time curve: exact where the state allows, absent where it does not."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadpulse.schemas import BehaviorEvent
from leadpulse.scoring import LeadState, apply, engagement, new_lead, parse_model, to_epoch
from leadpulse.scoring.curve import SAMPLES, Curve, curve, sample_times

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

MODEL = parse_model(
    """\
version: "curve-1"
engagement:
  rules:
    - {name: hot, event: ping, points: 10, half_life: 2h, cap: 25}
    - {name: warm, event: ping, when: {property: n, between: [0, 5]}, points: 3, half_life: 1d}
    - {name: big, event: big, points: 30, half_life: 6h}
    - {name: cold, event: drop, points: -20, half_life: 12h, cap: 30}
fit:
  rules:
    - {name: gold, trait: tier, equals: gold, points: 40}
  grades: {A: 40, B: 20}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
""",
    "curve.yaml",
)
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
E0 = to_epoch(T0)
HOUR = 3600.0
TYPES = ["ping", "big", "drop", "identify"]


def event(index: int, kind: str, offset: float, n: int = 1) -> BehaviorEvent:
    return BehaviorEvent(
        event_id=f"e{index}",
        type=kind,
        lead_id="lead-1",
        occurred_at=T0 + timedelta(seconds=offset),
        properties={"n": n},
        traits={"tier": "gold"} if kind == "identify" else {},
    )


def fold(events: list[BehaviorEvent]) -> LeadState:
    state = new_lead("lead-1")
    for item in events:
        state, _ = apply(state, item, MODEL)
    return state


def by_definition(events: list[BehaviorEvent], rule_name: str, at: float) -> float:
    """The rule's decayed sum per docs/architecture.md#decay, capped; events after `at` excluded."""
    rule = MODEL.rules_by_name[rule_name]
    value = sum(
        rule.points * math.exp2(-(at - to_epoch(e.occurred_at)) / rule.half_life)
        for e in events
        if e.type == rule.event and rule.matches(e.properties) and to_epoch(e.occurred_at) <= at
    )
    return value if rule.cap is None else min(rule.cap, max(-rule.cap, value))


def total_by_definition(events: list[BehaviorEvent], at: float) -> float:
    return max(0.0, sum(by_definition(events, rule.name, at) for rule in MODEL.engagement_rules))


specs = st.lists(
    st.tuples(st.sampled_from(TYPES), st.integers(0, 5 * 86400), st.integers(0, 9)),
    min_size=1,
    max_size=25,
)


def events_of(items: list[tuple[str, int, int]]) -> list[BehaviorEvent]:
    return [event(i, kind, offset, n) for i, (kind, offset, n) in enumerate(items)]


@PROPERTY
@given(specs, st.integers(0, 10 * 86400), st.randoms(use_true_random=False))
def test_total_is_engagement_from_the_clock_on(
    items: list[tuple[str, int, int]], extra: int, rnd: random.Random
) -> None:
    events = events_of(items)
    rnd.shuffle(events)  # arrival order does not matter
    state = fold(events)
    at = state.clock + extra
    drawn = curve(state, at, MODEL)
    assert drawn.at == at
    for t, value in drawn.total:
        if t >= state.clock:
            assert value == engagement(state, t, MODEL)  # the same floats, not just close


@PROPERTY
@given(specs, st.integers(0, 10 * 86400), st.randoms(use_true_random=False))
def test_every_drawn_point_is_the_definition(
    items: list[tuple[str, int, int]], extra: int, rnd: random.Random
) -> None:
    """Also before the clock: each rule from its latest event, the total from the last one."""
    events = events_of(items)
    rnd.shuffle(events)
    state = fold(events)
    drawn = curve(state, state.clock + extra, MODEL)
    for line in drawn.rules:
        for t, value in line.points:
            expected = by_definition(events, line.rule, t)
            assert math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9), (line.rule, t)
    for t, value in drawn.total:
        expected = total_by_definition(events, t)
        assert math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9), t


@PROPERTY
@given(specs, st.integers(0, 10 * 86400))
def test_lines_start_at_the_events_the_state_keeps(
    items: list[tuple[str, int, int]], extra: int
) -> None:
    events = events_of(items)
    state = fold(events)
    drawn = curve(state, state.clock + extra, MODEL)
    latest: dict[str, float] = {}
    for e in events:
        for rule in MODEL.rules_by_event.get(e.type, ()):
            if rule.matches(e.properties):
                moment = to_epoch(e.occurred_at)
                latest[rule.name] = max(latest.get(rule.name, moment), moment)
    assert dict(drawn.markers) == latest
    for line in drawn.rules:
        assert line.points[0][0] == line.since == latest[line.rule]
        assert line.points[-1][0] == drawn.at
    if latest:
        assert drawn.start == min(latest.values())
        assert drawn.exact_from == max(latest.values())
        assert drawn.total[0][0] == drawn.exact_from
        assert drawn.total[-1][0] == drawn.at
    else:
        assert drawn.exact_from is None
        assert drawn.total == ()


@PROPERTY
@given(specs, st.integers(0, 10 * 86400))
def test_each_rule_decays_monotonically_within_its_cap(
    items: list[tuple[str, int, int]], extra: int
) -> None:
    state = fold(events_of(items))
    drawn = curve(state, state.clock + extra, MODEL)
    for line in drawn.rules:
        sizes = [abs(value) for _, value in line.points]
        assert all(later <= earlier for earlier, later in itertools.pairwise(sizes))
        if line.cap is not None:
            assert max(sizes) <= line.cap
        signs = {math.copysign(1.0, value) for _, value in line.points if value != 0}
        assert len(signs) <= 1  # decay never crosses zero


def test_a_capped_rule_stays_flat_at_its_cap_then_decays() -> None:
    state = fold([event(i, "ping", 60.0 * i, n=9) for i in range(5)])  # hot: 50 raw, cap 25
    drawn = curve(state, state.clock + 10 * HOUR, MODEL)
    (hot,) = drawn.rules
    assert hot.rule == "hot"
    assert hot.points[0][1] == 25.0
    raw = sum(10 * math.exp2(-(240 - 60 * i) / (2 * HOUR)) for i in range(5))  # ~49.3
    # the raw sum falls to the cap just under one 2h half-life after the last event
    assert all(value == 25.0 for t, value in hot.points if t - hot.since < 1.9 * HOUR)
    assert hot.points[-1][1] == pytest.approx(raw * 2**-5, rel=1e-12)
    assert [value for _, value in drawn.total] == [value for _, value in hot.points]


def test_sampling_is_dense_and_hits_every_event_time_and_at() -> None:
    events = [event(0, "big", 0.0), event(1, "ping", 2 * HOUR, n=2), event(2, "drop", 5 * HOUR)]
    state = fold(events)
    at = E0 + 48 * HOUR
    drawn = curve(state, at, MODEL)
    times = [t for t, _ in drawn.rules[0].points]  # hot, from 2h
    assert len(drawn.rules) == 4
    big = next(line for line in drawn.rules if line.rule == "big")
    assert len(big.points) >= SAMPLES
    assert big.points[0] == (E0, 30.0)
    assert times[0] == E0 + 2 * HOUR
    assert times == sorted(set(times))
    assert drawn.exact_from == E0 + 5 * HOUR
    assert (E0 + 5 * HOUR) in [t for t, _ in drawn.total]
    assert all(len(line.points) > SAMPLES for line in drawn.rules)
    assert len(drawn.total) > SAMPLES
    assert drawn.total[-1][0] == at


def test_at_before_the_clock_reads_as_the_clock() -> None:
    state = fold([event(0, "big", 0.0), event(1, "identify", HOUR)])
    drawn = curve(state, E0 - 10 * HOUR, MODEL)
    assert drawn.at == state.clock == E0 + HOUR
    # the identify moved the clock, not the scoring events: the total is known from 0
    assert drawn.exact_from == E0
    assert drawn.total[-1] == (state.clock, engagement(state, state.clock, MODEL))


def test_a_lead_without_scoring_events_has_no_curve() -> None:
    state = fold([event(0, "identify", 0.0)])
    drawn = curve(state, E0 + HOUR, MODEL)
    assert drawn == Curve(start=E0 + HOUR, at=E0 + HOUR, exact_from=None, total=(), rules=())


def test_rules_the_model_dropped_are_not_drawn() -> None:
    state = fold([event(0, "big", 0.0)])
    stale = state.model_copy(update={"rules": {**state.rules, "gone": state.rules["big"]}})
    assert [line.rule for line in curve(stale, E0 + HOUR, MODEL).rules] == ["big"]


def test_sample_times() -> None:
    assert sample_times(0.0, 10.0, (2.5, 11.0, -1.0), 4) == [0.0, 2.5, 5.0, 7.5, 10.0]
    assert sample_times(3.0, 3.0, (3.0,), 10) == [3.0]
    with pytest.raises(ValueError, match="samples"):
        curve(new_lead("x"), 0.0, MODEL, samples=0)


def test_each_rule_line_carries_its_rules_half_life_and_cap() -> None:
    """What the lead page's table shows beside each line: the model's literals (2h, 25; 6h)."""
    state = fold([event(0, "ping", 0.0), event(1, "big", 60.0)])
    drawn = {rule.rule: rule for rule in curve(state, E0 + HOUR, MODEL).rules}
    assert (drawn["hot"].half_life, drawn["hot"].cap) == (7200.0, 25.0)
    assert (drawn["big"].half_life, drawn["big"].cap) == (21600.0, None)


def test_one_sample_is_enough_and_gives_the_ends() -> None:
    state = fold([event(0, "big", 0.0)])
    drawn = curve(state, E0 + HOUR, MODEL, samples=1)
    assert [t for t, _ in drawn.total] == [E0, E0 + HOUR]
    assert [t for t, _ in drawn.rules[0].points] == [E0, E0 + HOUR]
