"""Wire contracts: malformed input gets one clear reason; valid input round-trips."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadpulse.schemas import (
    BehaviorEvent,
    DecodeError,
    Handoff,
    RuleContribution,
    Stage,
    StageTransition,
    dead_letter,
    decode_dead_letter,
    decode_event,
    decode_handoff,
    decode_transition,
    encode,
    json_schemas,
    original_payload,
)

VALID: dict[str, Any] = {
    "event_id": "0b7e-1",
    "type": "page_view",
    "lead_id": "lead-42",
    "anonymous_id": None,
    "occurred_at": "2026-11-22T10:00:00Z",
    "properties": {"url": "https://example.com/pricing"},
    "traits": {},
}


def payload(**changes: Any) -> bytes:
    body = {**VALID, **changes}
    for key in [k for k, v in changes.items() if v is _DROP]:
        del body[key]
    return json.dumps(body).encode()


_DROP = object()


def nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        tree = {"n": tree}
    return tree


MALFORMED: list[tuple[str, bytes, str]] = [
    ("truncated", b'{"event_id":', "invalid JSON: EOF while parsing a value at line 1 column 12"),
    ("not json", b"hello", "invalid JSON: expected value at line 1 column 1"),
    ("array", b"[]", "message: expected a JSON object"),
    ("null", b"null", "message: expected a JSON object"),
    ("empty", b"", "message: empty"),
    ("whitespace", b"  \n", "message: empty"),
    ("not utf-8", b'{"event_id": "\xff"}', "message: not UTF-8 (byte 14: invalid start byte)"),
    ("id wrong type", payload(event_id=5), "event_id: Input should be a valid string"),
    ("id missing", payload(event_id=_DROP), "event_id: Field required"),
    ("id empty", payload(event_id=""), "event_id: String should have at least 1 character"),
    (
        "id oversized",
        payload(event_id="x" * 129),
        "event_id: String should have at most 128 characters",
    ),
    ("id control char", payload(lead_id="a\nb"), "lead_id: must not contain control characters"),
    (
        "no subject",
        payload(lead_id=None),
        "message: at least one of lead_id or anonymous_id is required",
    ),
    (
        "bad type name",
        payload(type="Page View"),
        "type: String should match pattern '^[a-z][a-z0-9_.:-]{0,63}$'",
    ),
    ("type too long", payload(type="a" * 65), "type: String should have at most 64 characters"),
    ("type wrong type", payload(type=["page_view"]), "type: Input should be a valid string"),
    (
        "naive time",
        payload(occurred_at="2026-11-22T10:00:00"),
        "occurred_at: Input should have timezone info",
    ),
    (
        "ancient time",
        payload(occurred_at="1999-01-01T00:00:00Z"),
        "occurred_at: 1999-01-01T00:00:00+00:00 is before 2000: not a real event time",
    ),
    (
        "garbage time",
        payload(occurred_at="yesterday"),
        "occurred_at: Input should be a valid datetime or date, input is too short",
    ),
    ("time missing", payload(occurred_at=_DROP), "occurred_at: Field required"),
    (
        "huge string",
        payload(properties={"url": "x" * 5000}),
        "properties: string longer than 4096 characters at 'url'",
    ),
    (
        "huge map",
        payload(properties={f"k{i}": i for i in range(300)}),
        "properties: more than 256 keys and items in total",
    ),
    (
        "deep nesting",
        payload(traits=nested(7)),
        "traits: nesting deeper than 5 levels at 'n.n.n.n.n'",
    ),
    (
        "NaN",
        b'{"event_id":"e","type":"t","lead_id":"l","occurred_at":"2026-11-22T10:00:00Z",'
        b'"properties":{"a":NaN}}',
        "properties: non-finite number at 'a' (NaN and Infinity are not JSON)",
    ),
    (
        "Infinity nested",
        b'{"event_id":"e","type":"t","lead_id":"l","occurred_at":"2026-11-22T10:00:00Z",'
        b'"properties":{"a":[1,-Infinity]}}',
        "properties: non-finite number at 'a[1]' (NaN and Infinity are not JSON)",
    ),
    ("empty key", payload(properties={"": 1}), "properties: empty key at '.'"),
    ("long key", payload(traits={"k" * 200: 1}), "traits: key longer than 128 characters at '.'"),
    ("properties list", payload(properties=[1, 2]), "properties: expected a JSON object"),
    ("traits string", payload(traits="vip"), "traits: expected a JSON object"),
    ("unknown field", payload(score=99), "score: Extra inputs are not permitted"),
    ("oversized message", b"{" + b" " * (300 * 1024) + b"}", "message: larger than 262144 bytes"),
]


@pytest.mark.parametrize(("name", "data", "reason"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_payload_gets_one_clear_reason(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_event(data)
    assert caught.value.errors == [reason], name


def test_several_problems_are_all_reported() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_event(payload(event_id="", occurred_at="2026-01-01T00:00:00"))
    assert caught.value.errors == [
        "event_id: String should have at least 1 character",
        "occurred_at: Input should have timezone info",
    ]


def test_far_future_event_is_rejected_when_now_is_given() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    future = (now + timedelta(days=2)).isoformat()
    with pytest.raises(DecodeError) as caught:
        decode_event(payload(occurred_at=future), now=now)
    assert caught.value.errors == [
        "occurred_at: 2026-11-24T00:00:00+00:00 is more than 24h in the future"
    ]
    assert decode_event(payload(occurred_at=future)).event_id == "0b7e-1"


LATEST = datetime(2026, 11, 22, 10, 5, tzinfo=UTC)  # a record time of 10:00 plus 300 s skew

# (case, occurred_at as the tracker wrote it, occurred_at after decoding, reported_at)
CLAMPS: list[tuple[str, str, datetime, datetime | None]] = [
    ("below the bound", "2026-11-22T10:04:59Z", LATEST - timedelta(seconds=1), None),
    ("exactly at the bound", "2026-11-22T10:05:00Z", LATEST, None),
    ("at the bound, other zone", "2026-11-22T11:05:00+01:00", LATEST, None),
    ("just above", "2026-11-22T10:05:00.000001Z", LATEST, LATEST + timedelta(microseconds=1)),
    ("hours ahead", "2026-11-22T15:00:00Z", LATEST, datetime(2026, 11, 22, 15, tzinfo=UTC)),
    (
        "days ahead, beyond the 24 h check",
        "2026-12-01T00:00:00Z",
        LATEST,
        datetime(2026, 12, 1, tzinfo=UTC),
    ),
    ("far in the past", "2001-01-01T00:00:00Z", datetime(2001, 1, 1, tzinfo=UTC), None),
]


@pytest.mark.parametrize(
    ("name", "written", "occurred_at", "reported_at"), CLAMPS, ids=[c[0] for c in CLAMPS]
)
def test_decode_event_clamps_times_later_than_latest(
    name: str, written: str, occurred_at: datetime, reported_at: datetime | None
) -> None:
    event = decode_event(payload(occurred_at=written), latest=LATEST)
    assert event.occurred_at == occurred_at, name
    assert event.reported_at == reported_at, name
    # with `latest`, the 24 h rule is not applied: the clamp already bounds the time
    now = LATEST - timedelta(days=30)
    assert decode_event(payload(occurred_at=written), now=now, latest=LATEST) == event
    # decoding a clamped event again keeps its time but not the claim: only the clamp of
    # this decode sets reported_at, a tracker cannot
    again = decode_event(encode(event), latest=LATEST)
    assert again == event.model_copy(update={"reported_at": None})


@pytest.mark.parametrize("written", ["2026-11-22T15:00:00", "2026-11-22 15:00"])
def test_naive_times_are_rejected_with_or_without_latest(written: str) -> None:
    for bound in ({}, {"latest": LATEST}, {"now": LATEST}):
        with pytest.raises(DecodeError) as caught:
            decode_event(payload(occurred_at=written), **bound)
        assert caught.value.errors == ["occurred_at: Input should have timezone info"]


def test_decode_event_needs_an_aware_latest_and_a_real_record_time() -> None:
    with pytest.raises(ValueError, match="no timezone"):
        decode_event(payload(), latest=datetime(2026, 11, 22, 10, 5))
    with pytest.raises(DecodeError) as caught:
        decode_event(payload(), latest=datetime(1970, 1, 1, 0, 5, tzinfo=UTC))
    assert caught.value.errors == [
        "occurred_at: 2026-11-22T10:00:00+00:00 is later than the record time allows "
        "(1970-01-01T00:05:00+00:00), which is not a real event time"
    ]


def test_reported_at_is_only_later_than_occurred_at() -> None:
    with pytest.raises(DecodeError) as caught:
        decode_event(payload(reported_at="2026-11-22T10:00:00Z"))
    assert caught.value.errors == [
        "message: reported_at must be later than occurred_at: it is only set when "
        "occurred_at was clamped down to the record time"
    ]


def test_identify_without_anonymous_id_only_updates_traits() -> None:
    event = decode_event(payload(type="identify", traits={"title": "VP Sales"}))
    assert not event.links_identity
    linked = decode_event(payload(type="identify", anonymous_id="anon-1"))
    assert linked.links_identity
    assert linked.subject == "lead-42"


def test_anonymous_event_subject_is_anonymous_id() -> None:
    event = decode_event(payload(lead_id=None, anonymous_id="anon-7"))
    assert event.subject == "anon-7"


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_trees = st.dictionaries(
    st.text(min_size=1, max_size=20),
    st.one_of(json_scalars, st.lists(json_scalars, max_size=4)),
    max_size=8,
)
ids = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=128)


@settings(max_examples=200, deadline=None)
@given(
    event_id=ids,
    lead_id=st.one_of(st.none(), ids),
    anonymous_id=ids,
    seconds=st.integers(min_value=946684800, max_value=4102444800),
    properties=json_trees,
    traits=json_trees,
)
def test_valid_events_round_trip(
    event_id: str,
    lead_id: str | None,
    anonymous_id: str,
    seconds: int,
    properties: dict[str, Any],
    traits: dict[str, Any],
) -> None:
    event = BehaviorEvent(
        event_id=event_id,
        type="page_view",
        lead_id=lead_id,
        anonymous_id=anonymous_id,
        occurred_at=datetime.fromtimestamp(seconds, UTC),
        properties=properties,
        traits=traits,
    )
    assert decode_event(encode(event)) == event


def transition(**changes: Any) -> StageTransition:
    fields: dict[str, Any] = {
        "transition_id": "t-1",
        "lead_id": "lead-42",
        "from_stage": Stage.MQL,
        "to_stage": Stage.SAL,
        "engagement": 72.4,
        "fit": 55,
        "grade": "A",
        "occurred_at": datetime(2026, 11, 22, 10, 0, 3, tzinfo=UTC),
        "model_version": "2026-11-a+abc",
        "reason": "engagement 72.4 >= handoff 70 and grade A >= B",
        "event_id": "e-9",
        "reasons": [RuleContribution(rule="pricing-page", points=18.2)],
        **changes,
    }
    return StageTransition(**fields)


def test_transition_and_handoff_round_trip_with_shared_id() -> None:
    step = transition()
    assert decode_transition(encode(step)) == step
    handoff = Handoff.from_transition(step, profile={"title": "VP"})
    assert handoff.handoff_id == step.transition_id
    assert decode_handoff(encode(handoff)) == handoff
    assert json.loads(encode(handoff))["reasons"] == [{"rule": "pricing-page", "points": 18.2}]


def test_only_mql_to_sal_is_a_handoff() -> None:
    with pytest.raises(ValueError, match="not mql->sal"):
        Handoff.from_transition(transition(from_stage=Stage.IQL, to_stage=Stage.MQL))


def test_outputs_refuse_non_finite_numbers() -> None:
    with pytest.raises(ValueError, match="finite"):
        transition(engagement=float("nan"))


@pytest.mark.parametrize(
    ("raw", "encoding"), [(b'{"bad": json', "utf-8"), (b"\xff\x00binary", "base64")]
)
def test_dead_letter_keeps_original_bytes(raw: bytes, encoding: str) -> None:
    try:
        decode_event(raw)
    except DecodeError as exc:
        error = exc
    letter = dead_letter(
        raw,
        error,
        key=b"\xfekey",
        topic="leadpulse.events",
        partition=3,
        offset=17,
        failed_at=datetime(2026, 11, 22, tzinfo=UTC),
    )
    assert letter.payload_encoding == encoding
    assert letter.reason == error.reason
    assert letter.key == "base64:" + base64.b64encode(b"\xfekey").decode()
    back = decode_dead_letter(encode(letter))
    assert original_payload(back) == raw
    assert (back.source_topic, back.source_partition, back.source_offset) == (
        "leadpulse.events",
        3,
        17,
    )


def test_json_schema_for_every_message() -> None:
    schemas = json_schemas()
    assert set(schemas) == {
        "BehaviorEvent",
        "StageTransition",
        "Handoff",
        "DeadLetter",
        "DeliveryFailure",
    }
    event = schemas["BehaviorEvent"]
    assert set(event["required"]) == {"event_id", "type", "occurred_at"}
    assert event["additionalProperties"] is False
    assert event["properties"]["type"]["pattern"] == "^[a-z][a-z0-9_.:-]{0,63}$"
    assert event["properties"]["event_id"]["maxLength"] == 128
    assert schemas["Handoff"]["properties"]["to_stage"]["const"] == "sal"
    for schema in schemas.values():
        json.dumps(schema)  # serialisable as published documentation


def test_dead_letter_keeps_control_characters_compact_and_cuts_huge_payloads() -> None:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    controls = dead_letter(
        b"\x01" * 200_000, "bad", key=None, topic="t", partition=0, offset=0, failed_at=now
    )
    assert controls.payload_encoding == "base64"  # 6-byte JSON escapes would be larger
    assert original_payload(controls) == b"\x01" * 200_000
    assert not controls.truncated
    huge = bytes(range(256)) * 4096  # 1 MiB
    letter = dead_letter(huge, "bad", key=None, topic="t", partition=0, offset=0, failed_at=now)
    assert letter.truncated
    assert len(encode(letter)) < 1_000_000
    assert letter.payload_size == len(huge)
    assert huge.startswith(original_payload(letter))
    assert letter.payload_sha256 == hashlib.sha256(huge).hexdigest()


def test_lenient_transition_decoding_ignores_fields_a_newer_release_added() -> None:
    """Outbox entries written by a newer release are still published during an upgrade."""
    from leadpulse.schemas import decode_transition

    body = {
        "transition_id": "t-1",
        "lead_id": "lead-1",
        "from_stage": "mql",
        "to_stage": "sal",
        "engagement": 72.5,
        "fit": 40,
        "grade": "A",
        "occurred_at": "2026-11-22T10:00:00Z",
        "model_version": "m-1",
        "reason": "hot",
        "reasons": [{"rule": "demo", "points": 60, "weight": 2}],
        "tier": "excellent",
    }
    text = json.dumps(body)
    with pytest.raises(DecodeError):
        decode_transition(text)
    got = decode_transition(text, lenient=True)
    assert (got.lead_id, got.to_stage, got.reasons[0].rule) == ("lead-1", "sal", "demo")
    with pytest.raises(DecodeError):
        decode_transition('{"lead_id": 3}', lenient=True)
    with pytest.raises(DecodeError):
        decode_transition("not json", lenient=True)
