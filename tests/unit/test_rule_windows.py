"""Rule windows and rules without decay (docs/architecture.md#rule-windows).

A window rule's contribution at t is cap(Σ points · 2^(-(t - tₑ)/half_life))
over its matched events with t - window < tₑ ≤ t (no decay factor for
``half_life: none``). The reference sums below are computed from the event
list, independently of the engine; window boundaries and recycle times are
literals.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadpulse.schemas import BehaviorEvent, Stage
from leadpulse.scoring import (
    LeadState,
    ModelError,
    RuleState,
    apply,
    engagement,
    engine,
    evaluate,
    explain,
    fastpath,
    from_epoch,
    merge,
    new_lead,
    next_recycle_at,
    parse_model,
    summary,
)
from leadpulse.scoring.engine import contributions
from leadpulse.scoring.model import DEFAULT_MAX_WINDOW_EVENTS, ScoringModel
from leadpulse.scoring.recycle import TOLERANCE, Term, WindowTerm, first_below_stepped, horizon

MODEL_TEXT = """\
version: "win-1"
engagement:
  rules:
    - {name: visit, event: visit, points: 10, half_life: none, window: 1h}
    - {name: read, event: read, points: 8, half_life: 30m, window: 2h, cap: 40}
    - {name: demo, event: demo, points: 30, half_life: 1d}
    - {name: visits-ever, event: visit, points: 1, half_life: none}
fit:
  grades: {A: 50, B: 30}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: C}
  recycle: 25
"""
MODEL = parse_model(MODEL_TEXT, "win.yaml")
E0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0
# name: (event, points, half-life seconds or None, window seconds or None, cap), as MODEL_TEXT says
RULES = {
    "visit": ("visit", 10.0, None, 3600.0, None),
    "read": ("read", 8.0, 1800.0, 7200.0, 40.0),
    "demo": ("demo", 30.0, 86400.0, None, None),
    "visits-ever": ("visit", 1.0, None, None, None),
}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def event(index: int, kind: str, at: float, subject: str = "lead-1", **kw: object) -> BehaviorEvent:
    anonymous = bool(kw.pop("anonymous", False))
    return BehaviorEvent(
        event_id=f"{subject}-e{index}",
        type=kind,
        lead_id=None if anonymous else subject,
        anonymous_id=subject if anonymous else None,
        occurred_at=from_epoch(at),
    )


def run(events: list[BehaviorEvent], state: LeadState, model: ScoringModel = MODEL) -> LeadState:
    for item in events:
        state, _ = apply(state, item, model)
    return state


def reference(items: list[tuple[str, float]], rule: str, t: float) -> float:
    """The definition, from the event list: matched events in (t - window, t], decayed, capped."""
    kind, points, life, window, cap = RULES[rule]
    value = 0.0
    for item_kind, at in items:
        if item_kind != kind or at > t or (window is not None and not t - window < at):
            continue
        value += points if life is None else points * 2 ** (-(t - at) / life)
    return value if cap is None else min(cap, max(-cap, value))


def parts_of(state: LeadState, t: float) -> dict[str, float]:
    return {name: points for name, points, _ in contributions(state, t, MODEL)}


items_strategy = st.lists(
    st.tuples(st.sampled_from(["visit", "read", "demo", "noop"]), st.integers(0, 4 * 3600)),
    min_size=1,
    max_size=40,
)


@PROPERTY
@given(items_strategy, st.integers(0, 3 * 3600), st.randoms(use_true_random=False))
def test_window_contribution_is_the_events_in_the_window_in_any_order(
    raw: list[tuple[str, int]], later: int, rnd: random.Random
) -> None:
    items = [(kind, E0 + offset) for kind, offset in raw]
    events = [event(i, kind, at) for i, (kind, at) in enumerate(items)]
    shuffled = events[:]
    rnd.shuffle(shuffled)
    in_order = run(sorted(events, key=lambda e: e.occurred_at), new_lead("lead-1"))
    any_order = run(shuffled, new_lead("lead-1"))
    t = max(at for _, at in items) + later
    found = parts_of(any_order, t)
    for rule in RULES:
        expected = reference(items, rule, t)
        if rule in ("visit", "visits-ever"):  # whole points, no decay: exact
            assert found.get(rule, 0.0) == expected
        else:
            assert found.get(rule, 0.0) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # the order of arrival changes neither a window rule's kept events nor a bit of its
    # contribution (a rule without a window agrees up to rounding, as before windows)
    assert any_order.windows == in_order.windows
    mine, theirs = parts_of(any_order, t), parts_of(in_order, t)
    for rule in ("visit", "read", "visits-ever"):
        assert mine.get(rule) == theirs.get(rule)
    assert mine.get("demo", 0.0) == pytest.approx(theirs.get("demo", 0.0), rel=1e-12)


@PROPERTY
@given(st.lists(st.tuples(items_strategy.map(lambda x: x[0]), st.booleans()), min_size=1))
def test_merging_two_partial_states_equals_one_lead_with_all_events(
    split: list[tuple[tuple[str, int], bool]],
) -> None:
    known_events = [event(i, kind, E0 + off) for i, ((kind, off), mine) in enumerate(split) if mine]
    anon_events = [
        event(i, kind, E0 + off, "anon-1", anonymous=True)
        for i, ((kind, off), mine) in enumerate(split)
        if not mine
    ]
    known = run(known_events, new_lead("lead-1"))
    anon = run(anon_events, new_lead("anon-1", anonymous=True))
    merged = merge(known, anon, MODEL)
    single = run(
        [event(i, kind, E0 + off) for i, ((kind, off), _) in enumerate(split)], new_lead("lead-1")
    )
    items = [(kind, E0 + off) for (kind, off), _ in split]
    for extra in (0.0, 1.0, HOUR, 2 * HOUR, 86400.0):
        t = single.clock + extra
        mine, theirs = parts_of(merged, t), parts_of(single, t)
        for rule in ("visit", "read", "visits-ever"):
            assert mine.get(rule) == theirs.get(rule)
        assert mine.get("demo", 0.0) == pytest.approx(theirs.get("demo", 0.0), rel=1e-12)
        assert parts_of(merged, t).get("visit", 0.0) == reference(items, "visit", t)


# --- boundaries: (t - window, t] ------------------------------------------------------


def visits(*times: float, stage: Stage = Stage.IQL, **fields: object) -> LeadState:
    return LeadState(
        lead_id="lead-1",
        stage=stage,
        clock=max(times),
        windows={"visit": tuple((at, 10.0) for at in sorted(times))},
        **fields,
    )


def test_an_event_exactly_one_window_ago_is_out_and_one_just_after_is_in() -> None:
    state = visits(E0)
    assert parts_of(state, E0 + 3599.999) == {"visit": 10.0}
    assert parts_of(state, E0 + 3600.0) == {"visit": 0.0}
    late = visits(E0 + 0.001)
    assert parts_of(late, E0 + 3600.0) == {"visit": 10.0}
    assert parts_of(late, E0 + 3600.001) == {"visit": 0.0}


def test_an_event_at_the_read_time_counts() -> None:
    assert parts_of(visits(E0), E0) == {"visit": 10.0}


def test_a_late_event_already_out_of_the_window_is_not_kept() -> None:
    state = run(
        [event(0, "visit", E0 + 2 * HOUR), event(1, "visit", E0 + HOUR)], new_lead("lead-1")
    )
    assert state.windows == {"visit": ((E0 + 2 * HOUR, 10.0),)}  # E0 + 1h is out at E0 + 2h
    assert state.rules["visits-ever"] == RuleState(2.0, E0 + 2 * HOUR)  # no window: both count


def test_events_that_left_the_window_are_dropped_when_the_clock_moves() -> None:
    state = run([event(0, "visit", E0), event(1, "read", E0 + 1800)], new_lead("lead-1"))
    assert set(state.windows) == {"visit", "read"}
    state = run([event(2, "demo", E0 + HOUR)], state)  # no window rule matches; clock moves
    assert set(state.windows) == {"read"}
    assert state.windows["read"] == ((E0 + 1800, 8.0),)


def test_a_rule_without_decay_keeps_its_points() -> None:
    state = run([event(0, "visit", E0)], new_lead("lead-1"))
    assert parts_of(state, E0 + 3650 * 86400)["visits-ever"] == 1.0


# --- bounded state ----------------------------------------------------------------------


def test_same_instant_events_share_one_entry() -> None:
    state = run([event(0, "visit", E0), event(1, "visit", E0)], new_lead("lead-1"))
    assert state.windows == {"visit": ((E0, 20.0),)}
    assert parts_of(state, E0)["visit"] == 20.0


def test_beyond_max_window_events_the_oldest_are_dropped_and_counted() -> None:
    limited = parse_model(MODEL_TEXT + "limits: {max_window_events: 3}\n", "limited.yaml")
    assert limited.limits.window_events_kept == 3
    assert MODEL.limits.window_events_kept == DEFAULT_MAX_WINDOW_EVENTS == 200
    events = [event(i, "visit", E0 + 60 * i) for i in range(5)]
    state = run(list(reversed(events)), new_lead("lead-1"), limited)
    assert state.windows == {
        "visit": ((E0 + 120, 10.0), (E0 + 180, 10.0), (E0 + 240, 10.0)),
    }
    assert state.window_events_dropped == 2
    assert contributions(state, E0 + 240, limited)[-1] == ("visit", 30.0, 30.0)
    notes = explain(state, E0 + 240, limited).notes
    assert notes == (
        "2 in-window event time(s) of window rules were dropped, the oldest first, by the "
        "model's limits (max_window_events 3): those rules may count less than their events",
    )


def test_merge_bounds_the_union_too() -> None:
    limited = parse_model(MODEL_TEXT + "limits: {max_window_events: 2}\n", "limited.yaml")
    known = run([event(0, "visit", E0), event(1, "visit", E0 + 60)], new_lead("lead-1"), limited)
    anon = run(
        [event(2, "visit", E0 + 30, "anon-1", anonymous=True)],
        new_lead("anon-1", anonymous=True),
        limited,
    )
    merged = merge(known, anon, limited)
    assert merged.windows == {"visit": ((E0 + 30, 10.0), (E0 + 60, 10.0))}
    assert merged.window_events_dropped == 1


def test_old_states_without_windows_still_decode() -> None:
    old = '{"lead_id":"lead-1","clock":1.0,"rules":{"demo":[30.0,1.0]}}'
    state = LeadState.model_validate_json(old)
    assert state.windows == {}
    assert state.window_events_dropped == 0


def test_window_state_round_trips_through_the_store_codec() -> None:
    from leadpulse.streams.store.codec import decode_state, encode_state

    state = run([event(0, "visit", E0), event(1, "read", E0 + 5)], new_lead("lead-1"))
    blob = encode_state(state)
    assert b'"windows":{"visit":[[' in blob
    assert decode_state(blob) == state


# --- recycling at window ends -----------------------------------------------------------


def test_next_recycle_at_is_the_window_end_that_takes_the_lead_below_recycle() -> None:
    # 3 visits (30) + 3 lifetime visits (3): 33; the first visit leaves at E0 + 1h: 23 < 25
    state = visits(
        E0, E0 + 600, E0 + 1200, stage=Stage.MQL, rules={"visits-ever": RuleState(3.0, E0 + 1200)}
    )
    assert engagement(state, E0 + 3599.999, MODEL) == 33.0
    assert next_recycle_at(state, MODEL) == E0 + 3600.0
    after, made = evaluate(state, E0 + 2 * HOUR, MODEL)
    assert [(t.from_stage, t.to_stage, t.occurred_at) for t in made] == [
        (Stage.MQL, Stage.NURTURE, from_epoch(E0 + 3600.0))
    ]
    assert made[0].engagement == 23.0
    assert after.clock == E0 + 3600.0


def test_a_window_end_that_stays_above_recycle_is_not_a_crossing() -> None:
    # 30 + 3: the first window end leaves 23 + ... only if two visits; here 4 visits, 43 -> 33
    state = visits(
        E0,
        E0 + 600,
        E0 + 1200,
        E0 + 1800,
        stage=Stage.SAL,
        rules={"visits-ever": RuleState(3.0, E0 + 1800)},
    )
    # E0+1h: 33; E0+1h10m: 23 < 25
    assert next_recycle_at(state, MODEL) == E0 + 4200.0


def test_the_decay_crossing_wins_when_it_comes_before_the_window_end() -> None:
    # read: 40 points decaying with a 30 min half-life, window 2h: 40 · 2^(-x/1800) < 25 at
    # x = 1800 · log2(1.6) ≈ 1220.5 s, well before the window end at 7200 s
    state = LeadState(lead_id="lead-1", stage=Stage.MQL, clock=E0, windows={"read": ((E0, 40.0),)})
    exact = E0 + 1800 * math.log2(1.6)
    due = next_recycle_at(state, MODEL)
    assert due is not None
    assert exact <= due <= exact + TOLERANCE


def test_the_window_end_wins_when_it_comes_before_the_decay_crossing() -> None:
    # demo 30 (1d half-life) falls below 25 only after ~22,750 s; the visit (10) leaves at 1h:
    # 30·2^(-1/24) ≈ 29.15 stays above, so the crossing is demo's own decay
    state = LeadState(
        lead_id="lead-1",
        stage=Stage.MQL,
        clock=E0,
        rules={"demo": RuleState(30.0, E0)},
        windows={"visit": ((E0, 10.0),)},
    )
    exact = E0 + 86400 * math.log2(30 / 25)
    due = next_recycle_at(state, MODEL)
    assert due is not None
    assert exact <= due <= exact + TOLERANCE
    # with 4.5 points less of demo the window end itself takes it below: 25.5·2^(-1/24) < 25
    lower = state.model_copy(update={"rules": {"demo": RuleState(25.5, E0)}})
    assert next_recycle_at(lower, MODEL) == E0 + 3600.0


def test_an_event_after_a_window_end_recycles_first_dated_at_the_window_end() -> None:
    state = visits(
        E0, E0 + 600, E0 + 1200, stage=Stage.MQL, rules={"visits-ever": RuleState(3.0, E0 + 1200)}
    )
    _, made = apply(state, event(9, "noop", E0 + 5000), MODEL)
    assert [(t.to_stage, t.occurred_at, t.event_id) for t in made] == [
        (Stage.NURTURE, from_epoch(E0 + 3600.0), None)
    ]


# --- the fast twins equal the plain definitions -----------------------------------------


MIXED = parse_model(
    MODEL_TEXT.replace(
        "    - {name: visits-ever",
        "    - {name: complaint, event: complaint, points: -20, half_life: 1h, window: 3h}\n"
        "    - {name: visits-ever",
    ),
    "mixed.yaml",
)
"""MODEL plus a negative window rule: engagement can rise at a window end."""


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["visit", "read", "demo", "complaint"]), st.integers(0, 3 * 3600)
        ),
        min_size=1,
        max_size=20,
    ),
    st.sampled_from([Stage.MQL, Stage.SAL]),
    st.integers(0, 4 * 3600),
    st.sampled_from([MODEL, MIXED]),
)
def test_the_engines_dip_and_engagement_are_the_plain_stepped_search(
    raw: list[tuple[str, int]], stage: Stage, later: int, model: ScoringModel
) -> None:
    events = [event(i, k, E0 + off) for i, (k, off) in enumerate(raw)]
    state = run(events, new_lead("lead-1"), model)
    state = state.model_copy(update={"stage": stage})
    found = engine.terms(state, model)
    plain = [term for term in found if isinstance(term, Term)]
    windows = [term for term in found if isinstance(term, WindowTerm)]
    start = state.clock
    expected = first_below_stepped(plain, windows, 25.0, start, horizon(found, start))
    assert next_recycle_at(state, model) == expected
    until = start + later
    cut = expected if expected is not None and expected <= until else None
    rows = fastpath.rows(state.rules, model.decay_specs)
    assert fastpath.first_dip(rows, 25.0, start, until, windows=windows) == cut
    t = start + later
    assert engine._engagement(state.rules, t, model, state.windows) == engagement(state, t, model)
    assert fastpath.total_with(
        rows, fastpath.window_terms(state.windows, model.window_specs), t
    ) == sum((term.at(t) for term in found), 0.0)


def test_a_negative_window_rule_leaving_raises_engagement_and_is_no_crossing() -> None:
    # 30 lifetime visits + a 20-point visit (out at 1h) - a 20-point complaint fading by hour
    state = LeadState(
        lead_id="lead-1",
        stage=Stage.MQL,
        clock=E0,
        rules={"visits-ever": RuleState(30.0, E0)},
        windows={"complaint": ((E0, -20.0),), "visit": ((E0, 20.0),)},
    )
    # just before 1h: 30 + 20 - 10; at 1h the visit is out: 30 - 10 = 20 < 25
    assert engagement(state, E0 + 3599.999, MIXED) == pytest.approx(40.0, abs=1e-3)
    assert next_recycle_at(state, MIXED) == E0 + 3600.0
    # 30 - 4·2^(-x/1h), then 30 once the complaint leaves at 3h: it only rises from 26
    rising = state.model_copy(update={"windows": {"complaint": ((E0, -4.0),)}})
    assert engagement(rising, E0 + 3 * HOUR, MIXED) == 30.0
    assert next_recycle_at(rising, MIXED) is None


def test_explanation_parts_of_a_window_rule_add_up_to_the_score() -> None:
    state = run(
        [event(0, "visit", E0), event(1, "read", E0 + 60), event(2, "demo", E0 + 120)],
        new_lead("lead-1"),
    )
    shown = explain(state, E0 + 1800, MODEL)
    assert {part.rule for part in shown.parts} == {"visit", "read", "demo", "visits-ever"}
    assert math.fsum(part.points for part in shown.parts) == pytest.approx(
        shown.engagement, abs=1e-9
    )
    assert {p.rule: p.points for p in shown.parts}["visit"] == 10.0


# --- the model file -------------------------------------------------------------------


def issues_of(text: str) -> list[str]:
    with pytest.raises(ModelError) as caught:
        parse_model(text, "bad.yaml")
    return caught.value.issues


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "window: 1h}",
            "window: 0s}",
            ["bad.yaml:4: engagement.rules[0].window: duration '0s' must be positive"],
        ),
        (
            "window: 1h}",
            "window: 0.5s}",
            ["bad.yaml:4: engagement.rules[0].window: window '0.5s' is shorter than 1s"],
        ),
        (
            "window: 1h}",
            "window: 3651d}",
            [
                "bad.yaml:4: engagement.rules[0].window: duration '3651d' is longer than "
                "3650d (ten years)"
            ],
        ),
        (
            "window: 1h}",
            "window: 90}",
            [
                "bad.yaml:4: engagement.rules[0].window: duration 90 has no unit "
                "(use e.g. 90s, 30m, 12h, 7d, 2w)"
            ],
        ),
        (
            "half_life: none, window: 1h}",
            "half_life: never, window: 1h}",
            [
                "bad.yaml:4: engagement.rules[0].half_life: invalid duration 'never' "
                "(use e.g. 90s, 30m, 12h, 7d, 2w)"
            ],
        ),
        (
            "recycle: 25\n",
            "recycle: 25\nlimits: {max_window_events: 0}\n",
            [
                "bad.yaml:14: limits.max_window_events: max_window_events must be a whole "
                "number from 1 to 10000, got 0"
            ],
        ),
    ],
)
def test_bad_windows_are_reported_with_file_line_and_reason(
    old: str, new: str, expected: list[str]
) -> None:
    assert old in MODEL_TEXT
    assert issues_of(MODEL_TEXT.replace(old, new, 1)) == expected


def test_half_life_none_and_null_mean_no_decay_and_the_key_is_still_required() -> None:
    null = parse_model(MODEL_TEXT.replace("half_life: none, window", "half_life: null, window"))
    assert null.rules_by_name["visit"].half_life is None
    assert null.model_version == MODEL.model_version
    missing = MODEL_TEXT.replace("half_life: none, window", "window")
    assert issues_of(missing) == [
        "bad.yaml:4: engagement.rules[0]: missing required key 'half_life'"
    ]


def test_the_model_version_changes_with_a_window() -> None:
    wider = parse_model(MODEL_TEXT.replace("window: 1h}", "window: 2h}"))
    assert wider.model_version != MODEL.model_version
    without = parse_model(MODEL_TEXT.replace(", window: 1h}", "}"))
    assert without.model_version != MODEL.model_version


def test_a_rule_without_window_has_the_canonical_form_it_had_before_windows() -> None:
    # no "window" key, so files written before windows keep their model version
    # (tests/unit/test_model_loader.py pins such a version)
    demo = MODEL.rules_by_name["demo"]
    assert demo.model_dump(mode="json", exclude_none=True) == {
        "name": "demo",
        "event": "demo",
        "when": [],
        "points": 30.0,
        "half_life": 86400.0,
    }


def test_summary_names_windows_and_no_decay() -> None:
    text = summary(MODEL)
    assert "  visit        visit     +10  no decay        window 1h" in text
    assert "  read         read       +8  half-life 30m   window 2h  cap 40" in text
    assert text.endswith("feedback events; the 200 most recent event times per window rule")


def test_the_last_window_end_of_a_lead_without_decay_is_found() -> None:
    # nothing decays, so the search horizon is the last window end itself
    state = LeadState(lead_id="lead-1", stage=Stage.SAL, clock=E0, windows={"visit": ((E0, 30.0),)})
    assert next_recycle_at(state, MODEL) == E0 + 3600.0
    constant = state.model_copy(
        update={"windows": {}, "rules": {"visits-ever": RuleState(30.0, E0)}}
    )
    assert next_recycle_at(constant, MODEL) is None


def test_the_curve_draws_a_window_rule_stepping_down_at_its_window_end() -> None:
    from leadpulse.scoring.curve import curve

    state = LeadState(lead_id="lead-1", clock=E0, windows={"visit": ((E0, 30.0),)})
    drawn = curve(state, E0 + 2 * HOUR, MODEL, samples=4)
    (line,) = drawn.rules
    assert (line.rule, line.since, line.half_life) == ("visit", E0, math.inf)
    points = dict(line.points)
    assert points[E0] == 30.0
    assert points[E0 + 3600.0 - 0.001] == 30.0
    assert points[E0 + 3600.0] == 0.0
    assert points[E0 + 2 * HOUR] == 0.0
    assert dict(drawn.total)[E0 + 3600.0] == 0.0


def test_the_lead_page_renders_window_and_no_decay_rules() -> None:
    from leadpulse.streams.http.leadpage import render

    state = run([event(0, "visit", E0), event(1, "read", E0 + 60)], new_lead("lead-1"))
    page = render(state, E0 + 600, MODEL)
    assert '<tr data-rule="visit"><td>visit</td>' in page
    assert "<td>none (window 1h)</td>" in page.replace('<td class="num">', "<td>")
    assert "<td>30m (window 2h)</td>" in page.replace('<td class="num">', "<td>")


LIMITED = parse_model(MODEL_TEXT + "limits: {max_window_events: 3}\n", "limited.yaml")


@PROPERTY
@given(items_strategy, st.randoms(use_true_random=False))
def test_the_bounded_window_keeps_the_latest_events_in_any_order(
    raw: list[tuple[str, int]], rnd: random.Random
) -> None:
    events = [event(i, kind, E0 + offset) for i, (kind, offset) in enumerate(raw)]
    shuffled = events[:]
    rnd.shuffle(shuffled)
    state = run(shuffled, new_lead("lead-1"), LIMITED)
    clock = E0 + max(offset for _, offset in raw)
    for rule, window in (("visit", 3600.0), ("read", 7200.0)):
        kind = RULES[rule][0]
        times = sorted({E0 + off for k, off in raw if k == kind and clock < E0 + off + window})
        assert [at for at, _ in state.windows.get(rule, ())] == times[-3:]
