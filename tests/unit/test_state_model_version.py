"""A state knows its model: every state the engine produces records `model_version`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadpulse.schemas import BehaviorEvent, Stage
from leadpulse.scoring import (
    LeadState,
    apply,
    apply_many,
    evaluate,
    merge,
    new_lead,
    next_recycle_at,
    parse_model,
)
from leadpulse.streams.store.codec import decode_state, encode_state

TEXT = """\
version: "mv-1"
engagement:
  rules:
    - {name: demo, event: demo_request, points: 60, half_life: 1d}
    - {name: view, event: page_view, points: 5, half_life: 1d}
fit:
  rules:
    - {name: big, trait: company_size, between: [100, 100000], points: 40}
  grades: {A: 40}
lifecycle:
  mql: 50
  handoff: {engagement: 200, min_grade: A}
  recycle: 25
"""
OLD = parse_model(TEXT, "old.yaml")
NEW = parse_model(TEXT.replace("points: 5,", "points: 7,"), "new.yaml")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _event(n: int, kind: str, lead: str = "lead-1", anonymous: bool = False) -> BehaviorEvent:
    who = {"anonymous_id": lead} if anonymous else {"lead_id": lead}
    return BehaviorEvent(
        event_id=f"{lead}-e{n}", type=kind, occurred_at=T0 + timedelta(minutes=n), **who
    )


def test_the_two_models_differ_in_content_not_in_their_version_field() -> None:
    assert OLD.version == NEW.version == "mv-1"
    assert OLD.model_version != NEW.model_version


def test_a_new_lead_has_no_model_until_one_scores_it() -> None:
    assert new_lead("lead-1").model_version is None


def test_apply_and_apply_many_record_the_model_that_folded_the_events() -> None:
    state, _ = apply(new_lead("lead-1"), _event(1, "page_view"), OLD)
    assert state.model_version == OLD.model_version
    later, _ = apply_many(state, [_event(2, "page_view"), _event(3, "page_view")], NEW)
    assert later.model_version == NEW.model_version
    # an event no rule matches still produces a new state, under that model
    other, _ = apply(later, _event(4, "unknown_type"), OLD)
    assert other.model_version == OLD.model_version


def test_apply_many_of_nothing_returns_the_state_as_it_was() -> None:
    state, _ = apply(new_lead("lead-1"), _event(1, "page_view"), OLD)
    same, made = apply_many(state, [], NEW)
    assert (same, made) == (state, ())
    assert same.model_version == OLD.model_version


def test_a_sweep_that_moves_the_lead_records_the_sweeping_model() -> None:
    mql, made = apply(new_lead("lead-1"), _event(1, "demo_request"), OLD)
    assert [t.to_stage for t in made] == [Stage.MQL]
    due = next_recycle_at(mql, NEW)
    assert due is not None
    unmoved, none = evaluate(mql, due - 60, NEW)
    assert none == ()
    assert unmoved is mql  # nothing happened: not a new state, still the old model's
    assert unmoved.model_version == OLD.model_version
    recycled, made = evaluate(mql, due + 60, NEW)
    assert [t.to_stage for t in made] == [Stage.NURTURE]
    assert [t.model_version for t in made] == [NEW.model_version]
    assert recycled.model_version == NEW.model_version


def test_a_merge_records_the_merging_model() -> None:
    known, _ = apply(new_lead("lead-1"), _event(1, "page_view"), OLD)
    anon, _ = apply(new_lead("anon-1", anonymous=True), _event(2, "page_view", "anon-1", True), OLD)
    merged = merge(known, anon, NEW)
    assert merged.model_version == NEW.model_version
    assert merged.merged_from == ("anon-1",)


def test_a_state_without_the_field_decodes_as_unknown() -> None:
    earlier = b'{"format":2,"state":{"lead_id":"lead-1","stage":"mql","clock":1.5}}'
    state = decode_state(earlier)
    assert state.model_version is None
    assert state.stage is Stage.MQL
    assert LeadState.model_validate_json('{"lead_id":"x"}').model_version is None


def test_the_stored_encoding_of_a_version_is_pinned() -> None:
    state = LeadState(lead_id="lead-1", clock=1.5, model_version="mv-1+0123456789ab")
    blob = encode_state(state)
    assert blob == (
        b'{"format":2,"state":{"lead_id":"lead-1","clock":1.5,"model_version":"mv-1+0123456789ab"}}'
    )
    assert decode_state(blob) == state
    # the version is the only cost: 34 bytes for a 16-character version
    without = encode_state(state.model_copy(update={"model_version": None}))
    assert len(blob) - len(without) == len(b',"model_version":"mv-1+0123456789ab"')
