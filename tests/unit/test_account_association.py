"""A Segment ``group`` call stores the lead's account: id, traits, merge rule, handoff."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from leadpulse.schemas import BehaviorEvent, Handoff, decode_handoff, encode, from_segment
from leadpulse.scoring import LeadState, apply, apply_many, explain, merge, new_lead
from leadpulse.scoring.engine import is_account_id
from leadpulse.scoring.fit import merge_account_traits
from tests.unit.test_bounded_state import TIGHT
from tests.unit.test_schemas import transition
from tests.unit.test_scoring_engine import MODEL, event


def group(index: int, account: Any, offset: float = 0.0, **traits: Any) -> BehaviorEvent:
    properties: dict[str, Any] = {"account_traits": traits, "context": {"ip": "10.0.0.1"}}
    if account is not None:
        properties["account_id"] = account
    return event(index, "group", offset, properties=properties)


def test_a_group_event_sets_the_account_and_its_traits() -> None:
    state, made = apply(new_lead("lead-1"), group(0, "acme", name="Acme", employees=300), MODEL)
    assert made == ()
    assert state.account_id == "acme"
    assert state.account_traits == {"name": "Acme", "employees": 300}
    assert state.traits == {}, "account traits are not the lead's traits"
    assert (state.events_applied, state.rules) == (1, {})


def test_the_segment_mapping_of_a_group_call_reaches_the_state() -> None:
    received = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    call = {
        "type": "group",
        "messageId": "m-1",
        "userId": "lead-1",
        "groupId": 42,
        "traits": {"name": "Acme", "plan": "enterprise"},
        "context": {"ip": "10.0.0.1"},
    }
    state, _ = apply(new_lead("lead-1"), from_segment(call, received_at=received), MODEL)
    assert state.account_id == "42"
    assert state.account_traits == {"name": "Acme", "plan": "enterprise"}


def test_the_same_account_merges_its_traits_like_lead_traits() -> None:
    state, _ = apply_many(
        new_lead("lead-1"),
        [
            group(0, "acme", name="Acme", employees=300, plan="free"),
            group(1, "acme", 60, employees=320, plan=None, region="EU"),
        ],
        MODEL,
    )
    assert state.account_id == "acme"
    assert state.account_traits == {"name": "Acme", "employees": 320, "region": "EU"}


def test_another_account_replaces_the_traits() -> None:
    state, _ = apply_many(
        new_lead("lead-1"),
        [group(0, "acme", name="Acme", employees=300), group(1, "globex", 60, name="Globex")],
        MODEL,
    )
    assert state.account_id == "globex"
    assert state.account_traits == {"name": "Globex"}


def test_the_latest_group_call_applied_wins_as_traits_do() -> None:
    """Events apply in arrival order: a late group call still sets the account."""
    state, _ = apply_many(
        new_lead("lead-1"),
        [
            group(0, "acme", 3600, name="Acme"),
            event(1, "identify", 3600, traits={"tier": "gold"}),
            group(2, "globex", 0, name="Globex"),
            event(3, "identify", 0, traits={"tier": "silver"}),
        ],
        MODEL,
    )
    assert (state.account_id, state.account_traits) == ("globex", {"name": "Globex"})
    assert state.traits == {"tier": "silver"}


def test_a_group_call_without_traits_keeps_those_of_the_same_account() -> None:
    first, _ = apply(new_lead("lead-1"), group(0, "acme", name="Acme"), MODEL)
    bare = event(1, "group", 1, properties={"account_id": "acme"})
    again, _ = apply(first, bare, MODEL)
    assert again.account_traits == {"name": "Acme"}
    other = event(2, "group", 2, properties={"account_id": "globex", "account_traits": "x"})
    moved, _ = apply(again, other, MODEL)
    assert (moved.account_id, moved.account_traits) == ("globex", {})


@pytest.mark.parametrize("account", [None, "", 7, ["acme"], "a" * 129, "ac\nme", "ac\x7fme"])
def test_a_group_event_without_a_valid_account_id_changes_no_account(account: Any) -> None:
    state, _ = apply(new_lead("lead-1"), group(0, "acme", name="Acme"), MODEL)
    after, _ = apply(state, group(1, account, 1, name="Other"), MODEL)
    assert (after.account_id, after.account_traits) == ("acme", {"name": "Acme"})
    assert after.events_applied == 2
    assert not is_account_id(account)
    assert is_account_id("a" * 128)


def test_account_traits_are_bounded_by_the_limits_and_drops_counted() -> None:
    # TIGHT: max_traits 2, max_trait_bytes 40; no key is exempt for account traits,
    # not even the ones the model reads as lead traits (tier, title)
    state, _ = apply(
        new_lead("lead-1"),
        group(0, "acme", tier="gold", title="x", name="y" * 50, plan="free"),
        TIGHT,
    )
    assert state.account_traits == {"tier": "gold", "title": "x"}
    assert state.account_traits_dropped == 2
    assert state.traits_dropped == 0
    state, _ = apply(state, group(1, "acme", 1, tier=None, plan="free"), TIGHT)
    assert state.account_traits == {"title": "x", "plan": "free"}
    # replacing the account re-bounds from nothing, and the drop count goes on
    state, _ = apply(state, group(2, "globex", 2, a=1, b=2, c=3), TIGHT)
    assert state.account_traits == {"a": 1, "b": 2}
    assert state.account_traits_dropped == 3
    (note,) = explain(state, state.clock, TIGHT).notes
    assert note.startswith("3 account trait value(s) were dropped by the model's limits")


def test_merge_account_traits_follows_merge_traits() -> None:
    traits, dropped = merge_account_traits({"a": 1}, {"a": None, "b": 2, "c": 3, "d": 4}, TIGHT)
    assert (traits, dropped) == ({"b": 2, "c": 3}, 1)


KNOWN = LeadState(
    lead_id="lead-1",
    account_id="acme",
    account_traits={"name": "Acme"},
    account_traits_dropped=1,
)
ANONYMOUS = LeadState(
    lead_id="anon-1",
    anonymous=True,
    account_id="globex",
    account_traits={"name": "Globex", "a": 1, "b": 2},
    account_traits_dropped=2,
)


def test_merging_keeps_the_known_leads_account() -> None:
    merged = merge(KNOWN, ANONYMOUS, MODEL)
    assert (merged.account_id, merged.account_traits) == ("acme", {"name": "Acme"})
    assert merged.account_traits_dropped == 3


def test_merging_into_a_lead_without_account_takes_the_anonymous_one() -> None:
    merged = merge(new_lead("lead-1"), ANONYMOUS, MODEL)
    assert (merged.account_id, merged.account_traits) == ("globex", ANONYMOUS.account_traits)
    # bounded again by the model's limits
    tight = merge(new_lead("lead-1"), ANONYMOUS, TIGHT)
    assert tight.account_traits == {"name": "Globex", "a": 1}
    assert tight.account_traits_dropped == 2 + 1
    neither = merge(new_lead("lead-1"), new_lead("anon-1", anonymous=True), MODEL)
    assert (neither.account_id, neither.account_traits) == (None, {})


def test_an_anonymous_visitors_group_call_reaches_the_lead_through_identify() -> None:
    visitor, _ = apply(
        new_lead("anon-1", anonymous=True),
        event(0, "group", 0, "anon-1", anonymous=True, properties={"account_id": "acme"}),
        MODEL,
    )
    assert visitor.account_id == "acme"
    lead = merge(new_lead("lead-1"), visitor, MODEL)
    assert lead.account_id == "acme"


def test_a_handoff_carries_the_account_id_and_old_handoffs_decode() -> None:
    handoff = Handoff.from_transition(transition(), profile={"title": "VP"}, account_id="acme")
    assert handoff.account_id == "acme"
    assert decode_handoff(encode(handoff)) == handoff
    old = handoff.model_dump(mode="json")
    del old["account_id"]  # what the previous release published
    assert decode_handoff(json.dumps(old)).account_id is None
    assert Handoff.from_transition(transition()).account_id is None
