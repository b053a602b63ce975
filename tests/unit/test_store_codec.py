"""The state codec: this release's format, the previous release's blobs, newer ones."""

from __future__ import annotations

import json

import pytest

from leadpulse.schemas import Stage
from leadpulse.scoring import LeadState
from leadpulse.scoring.decay import RuleState
from leadpulse.streams.errors import CorruptStateError, PermanentError
from leadpulse.streams.store.codec import FORMAT, decode_state, encode_state

LEAD = LeadState(
    lead_id="lead-42",
    stage=Stage.MQL,
    clock=1763900000.25,
    transition_seq=2,
    events_applied=7,
    rules={
        "pricing-page": RuleState(18.25, 1763899000.5),
        "email-click": RuleState(3.0, 1763800000.0),
    },
    traits={
        "company_size": 250,
        "industry": "software",
        "title": "VP Sales",
        "tags": ["a", "b"],
        "verified": True,
    },
    merged_from=("anon-7", "anon-9"),
)

PREVIOUS_RELEASE_BLOB = (
    b'{"lead_id":"lead-42","anonymous":false,"stage":"mql","armed":true,'
    b'"clock":1763900000.25,"transition_seq":2,"events_applied":7,'
    b'"rules":{"pricing-page":[18.25,1763899000.5],"email-click":[3.0,1763800000.0]},'
    b'"traits":{"company_size":250,"industry":"software","title":"VP Sales",'
    b'"tags":["a","b"],"verified":true},"merged_from":["anon-7","anon-9"]}'
)
"""`LEAD` as main at a497588 stored it (`LeadState.model_dump_json()`, no version):
the bytes that release's `encode_state` returned for it, kept literally."""


def test_this_release_writes_a_versioned_envelope() -> None:
    blob = encode_state(LEAD)
    document = json.loads(blob)
    assert FORMAT == 2
    assert set(document) == {"format", "state"}
    assert document["format"] == 2
    assert document["state"] == json.loads(LEAD.model_dump_json(exclude_defaults=True))
    # every field the previous release wrote is still written the same way, or
    # left out at its default, which that release (same defaults) reads back the same
    previous = json.loads(PREVIOUS_RELEASE_BLOB)
    defaults = json.loads(LeadState(lead_id=LEAD.lead_id).model_dump_json())
    assert {k: document["state"].get(k, defaults[k]) for k in previous} == previous
    assert decode_state(blob) == LEAD


def test_fields_at_their_default_are_left_out_and_decode_the_same() -> None:
    plain = LeadState(lead_id="lead-small")
    blob = encode_state(plain)
    assert blob == b'{"format":2,"state":{"lead_id":"lead-small"}}'
    assert decode_state(blob) == plain
    assert len(encode_state(LEAD)) < len(b'{"format":2,"state":' + LEAD.model_dump_json().encode())


def test_the_previous_releases_blobs_are_read() -> None:
    state = decode_state(PREVIOUS_RELEASE_BLOB)
    assert state == LEAD
    assert state.model_dump() == LEAD.model_dump()
    assert type(state) is LeadState


def test_a_newer_format_with_unknown_fields_is_read() -> None:
    newer = {
        "format": 3,
        "written_by": "leadpulse 9.9",
        "state": {**json.loads(PREVIOUS_RELEASE_BLOB), "score_cache": [1, 2], "owner": None},
    }
    state = decode_state(json.dumps(newer).encode())
    assert state == LEAD
    assert type(state) is LeadState


def test_unknown_fields_in_this_format_are_ignored() -> None:
    document = {"format": 2, "state": {**LEAD.model_dump(mode="json"), "later": True}}
    assert decode_state(json.dumps(document).encode()) == LEAD


def test_key_order_and_spacing_do_not_matter() -> None:
    document = {"state": LEAD.model_dump(mode="json"), "format": 2}
    assert decode_state(json.dumps(document, indent=2).encode()) == LEAD


WITH_ACCOUNT = LEAD.model_copy(
    update={
        "account_id": "acme",
        "account_traits": {"name": "Acme", "employees": 300, "tags": ["b2b"]},
        "account_traits_dropped": 2,
    }
)


def test_round_trip_keeps_every_field() -> None:
    states = [
        LEAD,
        WITH_ACCOUNT,
        LeadState(lead_id="anon-1", anonymous=True),
        LEAD.model_copy(update={"lead_id": '"quoted" \\ lead}', "armed": False}),
        LEAD.model_copy(update={"lead_id": "漢字-ü", "stage": Stage.NURTURE, "clock": 1e-300}),
    ]
    for state in states:
        assert decode_state(encode_state(state)) == state


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "not JSON"),
        (b"\xff\xfe not utf-8", "not JSON"),
        (b'{"format":2,"state":', "not JSON"),
        (b"[1, 2]", "JSON list, not an object"),
        (b'"lead-42"', "JSON str, not an object"),
        (b'{"format":2}', "no 'state' object"),
        (b'{"format":2,"state":[1]}', "no 'state' object"),
        (b'{"format":"2","state":{}}', "unknown state format '2'"),
        (b'{"format":true,"state":{}}', "unknown state format True"),
        (b'{"format":1,"state":{}}', "unknown state format 1"),
        (b'{"format":2,"state":{"lead_id":7}}', "lead_id"),
        (b'{"format":2,"state":{}}', "lead_id"),
        (b'{"lead_id":"x","stage":"no such stage"}', "stage"),
        (b'{"lead_id":"x","transition_seq":-1}', "transition_seq"),
        (b'{"lead_id":"x","rules":{"r":[1]}}', "rules"),
        (b'{"lead_id":"x","clock":NaN}', "clock"),
    ],
)
def test_undecodable_blobs_are_corrupt_state(blob: bytes, reason: str) -> None:
    with pytest.raises(CorruptStateError) as raised:
        decode_state(blob, subject="lead-42")
    assert reason in raised.value.reason
    assert raised.value.subject == "lead-42"
    assert isinstance(raised.value, PermanentError)  # dead-lettered, never retried


def test_a_corrupt_reason_does_not_echo_the_state() -> None:
    """Reasons go to the DLQ and logs: they name fields, not their (personal) values."""
    blob = b'{"lead_id":"x","traits":{"email":"someone@example.com"},"clock":"never"}'
    with pytest.raises(CorruptStateError) as raised:
        decode_state(blob)
    assert "clock" in raised.value.reason
    assert "someone@example.com" not in raised.value.reason
    assert "never" not in raised.value.reason
    assert raised.value.subject is None


def test_fields_a_newer_release_added_inside_nested_models_are_ignored() -> None:
    state = {
        **LEAD.model_dump(mode="json"),
        "clamped_events": 1,
        "last_clamp": {"event_id": "e", "reported_at": 2.0, "clamped_to": 1.0, "source": "x"},
    }
    decoded = decode_state(json.dumps({"format": 3, "state": state}).encode())
    assert decoded.last_clamp is not None
    assert decoded.last_clamp.event_id == "e"
    assert decoded.rules == LEAD.rules, "rule names are data, never dropped as unknown fields"


def test_the_account_fields_round_trip_and_states_without_them_load() -> None:
    blob = encode_state(WITH_ACCOUNT)
    document = json.loads(blob)
    assert document["state"]["account_id"] == "acme"
    assert document["state"]["account_traits"] == WITH_ACCOUNT.account_traits
    assert decode_state(blob) == WITH_ACCOUNT
    # a format-2 blob written before the account fields existed (fast path)
    without = {k: v for k, v in LEAD.model_dump(mode="json").items() if not k.startswith("account")}
    old = b'{"format":2,"state":' + json.dumps(without, separators=(",", ":")).encode() + b"}"
    state = decode_state(old)
    assert state == LEAD
    assert (state.account_id, state.account_traits, state.account_traits_dropped) == (None, {}, 0)
    # a newer release's blob: the account fields read, its own additions ignored
    newer = {**document["state"], "account_score": 12.5}
    assert decode_state(json.dumps({"format": 3, "state": newer}).encode()) == WITH_ACCOUNT


def test_a_state_with_an_invalid_account_field_is_corrupt() -> None:
    state = {**LEAD.model_dump(mode="json"), "account_traits": ["not", "an", "object"]}
    with pytest.raises(CorruptStateError) as raised:
        decode_state(json.dumps({"format": 2, "state": state}).encode())
    assert "account_traits" in raised.value.reason
