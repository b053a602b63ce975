"""Rolling upgrades: a state the previous release wrote decodes and scores the same.

The blob and the numbers below were produced by the release before the
bounded-state fields (commit a3a1de5) on the default model: an anonymous
pricing view merged into lead-42, then identify, demo request and pricing,
which handed the lead off. New LeadState fields all have defaults.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from leadpulse.schemas import BehaviorEvent, Stage
from leadpulse.scoring import (
    LeadState,
    apply_many,
    default_model,
    engagement,
    evaluate,
    explain,
    next_recycle_at,
)

PREVIOUS_RELEASE = (
    '{"lead_id":"lead-42","anonymous":false,"stage":"sal","armed":true,'
    '"clock":1795341780.0,"transition_seq":2,"events_applied":4,'
    '"rules":{"pricing-page":[19.997937274733655,1795341780.0],'
    '"page-view":[1.9995187636226661,1795341780.0],"demo-request":[60.0,1795341720.0]},'
    '"traits":{"company_size":200,"industry":"software","seniority":"director",'
    '"title":"VP Sales","utm":{"source":"ads"}},"merged_from":["anon-7"]}'
)
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def test_previous_release_state_decodes_with_defaults() -> None:
    state = LeadState.model_validate_json(PREVIOUS_RELEASE)
    assert state.stage is Stage.SAL
    assert state.transition_seq == 2
    assert state.merged_from == ("anon-7",)
    assert (state.traits_dropped, state.clamped_events, state.last_clamp) == (0, 0, None)
    assert (state.account_id, state.account_traits, state.account_traits_dropped) == (None, {}, 0)
    assert state.model_version is None  # written before states recorded their model
    assert LeadState.model_validate_json(state.model_dump_json()) == state
    assert explain(state, state.clock, default_model()).notes == ()


def test_previous_release_state_scores_the_same() -> None:
    model = default_model()
    state = LeadState.model_validate_json(PREVIOUS_RELEASE)
    # what the previous release computed from this state, to the bit
    assert engagement(state, state.clock, model) == 81.9953931357828
    assert engagement(state, state.clock + 3600, model) == 81.7702525602171
    assert engagement(state, state.clock + 7 * 86400, model) == 52.820671589761616
    due = next_recycle_at(state, model)
    assert due == 1797074087.7392578
    later, made = evaluate(state, due + 10, model)
    assert [(t.from_stage, t.to_stage, t.engagement) for t in made] == [
        (Stage.SAL, Stage.NURTURE, 24.999998041344078)
    ]
    assert later.transition_seq == 3
    unsubscribe = BehaviorEvent(
        event_id="e4",
        type="email_unsubscribe",
        lead_id="lead-42",
        occurred_at=T0 + timedelta(seconds=240),
    )
    after, moved = apply_many(state, [unsubscribe], model)
    assert engagement(after, after.clock, model) == 41.99163440271184
    assert moved == ()


def test_a_group_call_on_a_previous_release_state_sets_the_account() -> None:
    model = default_model()
    state = LeadState.model_validate_json(PREVIOUS_RELEASE)
    call = BehaviorEvent(
        event_id="g1",
        type="group",
        lead_id="lead-42",
        occurred_at=T0 + timedelta(seconds=240),
        properties={"account_id": "acme", "account_traits": {"name": "Acme"}},
    )
    after, moved = apply_many(state, [call], model)
    assert (after.account_id, after.account_traits) == ("acme", {"name": "Acme"})
    assert moved == ()
    assert after.traits == state.traits
    assert engagement(after, after.clock, model) == engagement(state, after.clock, model)
