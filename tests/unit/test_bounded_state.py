"""Bounded lead state: trait limits, merge history, and what a handoff carries."""

from __future__ import annotations

from typing import Any

from pydantic import JsonValue

from leadpulse.schemas import Handoff, Stage
from leadpulse.scoring import (
    LeadState,
    RuleState,
    apply,
    explain,
    handoff_profile,
    merge,
    new_lead,
    parse_model,
)
from leadpulse.scoring.fit import fits, merge_traits
from tests.unit.test_scoring_engine import E0, MODEL_TEXT, event

# fit reads `tier`; the profile adds `title`: both are declared, never dropped for room
TIGHT = parse_model(
    MODEL_TEXT.replace(
        "handoff: {engagement: 70, min_grade: B}",
        "handoff: {engagement: 70, min_grade: B, profile: [title, tier]}",
    )
    + "limits: {max_traits: 2, max_trait_bytes: 40, max_merged_from: 3}\n",
    "tight.yaml",
)
DEFAULT_PROFILE = parse_model(MODEL_TEXT, "test.yaml")


def test_new_traits_beyond_the_limit_are_dropped_and_counted() -> None:
    traits, dropped = merge_traits({}, {"a": 1, "b": 2, "c": 3, "d": 4}, TIGHT)
    assert (traits, dropped) == ({"a": 1, "b": 2}, 2)
    # existing keys still update at the limit; a null frees room for the next new key
    traits, dropped = merge_traits(traits, {"a": 10, "c": 3}, TIGHT)
    assert (traits, dropped) == ({"a": 10, "b": 2}, 1)
    traits, dropped = merge_traits(traits, {"b": None, "c": 3, "d": 4}, TIGHT)
    assert (traits, dropped) == ({"a": 10, "c": 3}, 1)


def test_traits_the_model_reads_are_never_dropped_for_room() -> None:
    full = {"a": 1, "b": 2}
    traits, dropped = merge_traits(full, {"tier": "gold", "title": "VP", "c": 3}, TIGHT)
    assert traits == {"a": 1, "b": 2, "tier": "gold", "title": "VP"}
    assert dropped == 1
    # and they do not use up room the other traits have
    traits, dropped = merge_traits({"tier": "gold", "title": "VP"}, {"a": 1, "b": 2}, TIGHT)
    assert (len(traits), dropped) == (4, 0)


def test_an_oversize_value_is_dropped_and_the_old_value_stays() -> None:
    big = "x" * 39  # 41 bytes as JSON
    traits, dropped = merge_traits({"title": "VP"}, {"title": big, "a": {"k": big}}, TIGHT)
    assert (traits, dropped) == ({"title": "VP"}, 2)
    traits, dropped = merge_traits({}, {"title": "x" * 38}, TIGHT)  # exactly 40 bytes
    assert (traits, dropped) == ({"title": "x" * 38}, 0)


def test_fits_measures_compact_utf8_json() -> None:
    cases: list[tuple[JsonValue, int]] = [
        ("abc", 5),
        ("é", 4),  # 2 bytes of UTF-8 plus quotes
        ("\x01", 8),  # escaped as \u0001
        ('"', 4),
        (12345, 5),
        (-1.5e-300, 9),
        (True, 4),
        ([1, 2], 5),
        ({"a": [1, {"b": None}]}, 20),
        (10**30, 31),
    ]
    for value, size in cases:
        assert fits(value, size), value
        assert not fits(value, size - 1), value


def test_apply_records_dropped_traits_and_explain_notes_them() -> None:
    state = new_lead("lead-1")
    state, _ = apply(state, event(0, "identify", 0, traits={"a": 1, "b": 2, "c": 3}), TIGHT)
    state, _ = apply(state, event(1, "identify", 1, traits={"title": "y" * 50}), TIGHT)
    assert state.traits == {"a": 1, "b": 2}
    assert state.traits_dropped == 2
    (note,) = explain(state, state.clock, TIGHT).notes
    assert note.startswith("2 trait value(s) were dropped by the model's limits (max_traits 2")
    assert explain(new_lead("lead-2"), E0, TIGHT).notes == ()


def test_merge_keeps_known_traits_and_the_most_recent_merged_ids() -> None:
    known = LeadState(
        lead_id="lead-1",
        traits={"a": 1, "tier": "gold"},
        merged_from=("anon-1", "anon-2", "anon-3"),
        traits_dropped=1,
    )
    anon = LeadState(
        lead_id="anon-4",
        anonymous=True,
        traits={"a": 99, "b": 2, "c": 3, "title": "CTO"},
        traits_dropped=2,
        rules={"hot": RuleState(10.0, E0)},
    )
    merged = merge(known, anon, TIGHT)
    assert merged.traits == {"a": 1, "tier": "gold", "b": 2, "title": "CTO"}
    assert merged.traits_dropped == 1 + 2 + 1  # c: no room left
    assert merged.merged_from == ("anon-2", "anon-3", "anon-4")
    unbounded = merge(known, anon, DEFAULT_PROFILE)
    assert unbounded.merged_from == ("anon-1", "anon-2", "anon-3", "anon-4")
    assert unbounded.traits_dropped == 3
    none_kept = parse_model(MODEL_TEXT + "limits: {max_merged_from: 0}\n", "none.yaml")
    assert merge(known, anon, none_kept).merged_from == ()


# -- handoff profile ------------------------------------------------------------------


def handoff_of(state: LeadState, traits: dict[str, Any], model: Any) -> tuple[LeadState, Handoff]:
    state, _ = apply(state, event(0, "identify", 0, traits=traits), model)
    state, made = apply(state, event(1, "big", 1), model)
    for i in range(2, 6):
        state, more = apply(state, event(i, "ping", i, properties={"n": 2}), model)
        made += more
    (moved,) = [t for t in made if t.is_handoff]
    return state, Handoff.from_transition(moved, profile=handoff_profile(state, model))


def test_a_handoff_carries_only_the_declared_traits() -> None:
    traits = {"tier": "gold", "title": "VP Sales", "email": "vp@example.com", "utm": "ads"}
    state, handoff = handoff_of(new_lead("lead-1"), traits, TIGHT)
    assert state.stage is Stage.SAL
    assert list(handoff.profile.items()) == [("title", "VP Sales"), ("tier", "gold")]


def test_without_a_declared_profile_a_handoff_carries_the_fit_traits() -> None:
    traits = {"tier": "gold", "title": "VP Sales", "email": "vp@example.com"}
    _, handoff = handoff_of(new_lead("lead-1"), traits, DEFAULT_PROFILE)
    assert handoff.profile == {"tier": "gold"}
    assert handoff_profile(new_lead("lead-2"), DEFAULT_PROFILE) == {}


def test_late_events_still_update_the_profile_within_limits() -> None:
    state, _ = handoff_of(new_lead("lead-1"), {"tier": "gold"}, TIGHT)
    state, _ = apply(
        state, event(9, "identify", -3600, traits={"title": "CEO", "x": 1, "y": 2, "z": 3}), TIGHT
    )
    assert handoff_profile(state, TIGHT) == {"title": "CEO", "tier": "gold"}
    assert state.traits_dropped == 1
    assert state.clock == E0 + 5  # a late event never moves the clock back
