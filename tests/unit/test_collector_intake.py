"""One request's document as events and rejects: endpoints, batch merging, keys, limits."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from leadpulse.schemas import SALES_ONLY_EVENTS, BehaviorEvent, decode_event
from leadpulse.schemas.segment import SUPPORTED_TYPES
from leadpulse.streams.collector.auth import Source
from leadpulse.streams.collector.body import MAX_NESTING, BodyError, parsed
from leadpulse.streams.collector.intake import (
    BATCH_PATHS,
    CALL_PATHS,
    Intake,
    Limits,
    messages_of,
    take,
    write_key_in,
    write_keys_named,
)

RECEIVED = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)
EVENTS = {"Demo Requested": "demo_request", "Deal Qualified": "sales_qualified"}
WEBSITE = Source("website")
SALES = Source("salesforce", sales=True)
LIMITS = Limits()


def intake_of(
    document: object,
    endpoint: str = "batch",
    *,
    source: Source = WEBSITE,
    limits: Limits = LIMITS,
) -> Intake:
    messages = messages_of(document, endpoint, limits)
    return take(messages, source=source, received_at=RECEIVED, events=EVENTS, limits=limits)


def events_of(intake: Intake) -> list[BehaviorEvent]:
    return [decode_event(a.value) for a in intake.accepted]


# -- endpoints -------------------------------------------------------------------------------

# (endpoint, fields of the message, leadpulse type)
CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("track", {"event": "Demo Requested"}, "demo_request"),
    ("t", {"event": "Demo Requested"}, "demo_request"),
    ("identify", {"traits": {"title": "CTO"}}, "identify"),
    ("i", {"traits": {"title": "CTO"}}, "identify"),
    ("page", {"name": "Pricing"}, "page_view"),
    ("p", {"name": "Pricing"}, "page_view"),
    ("screen", {"name": "Settings"}, "page_view"),
    ("s", {"name": "Settings"}, "page_view"),
    ("group", {"groupId": "acme"}, "group"),
    ("g", {"groupId": "acme"}, "group"),
    ("alias", {"previousId": "anon-1"}, "identify"),
    ("a", {"previousId": "anon-1"}, "identify"),
]


def test_every_call_path_is_tested() -> None:
    assert {c[0] for c in CALLS} == set(CALL_PATHS)
    assert {"batch", "b"} == BATCH_PATHS
    assert not set(CALL_PATHS) & BATCH_PATHS


@pytest.mark.parametrize(("endpoint", "fields", "kind"), CALLS)
def test_each_call_endpoint_carries_its_type(
    endpoint: str, fields: dict[str, Any], kind: str
) -> None:
    document = {"messageId": "m-1", "userId": "lead-1", **fields}
    [message] = messages_of(document, endpoint, LIMITS)
    assert message == {**document, "type": CALL_PATHS[endpoint]}
    intake = intake_of(document, endpoint)
    assert not intake.rejected
    [event] = events_of(intake)
    assert (event.type, event.event_id, event.lead_id) == (kind, "m-1", "lead-1")


@pytest.mark.parametrize("endpoint", sorted(CALL_PATHS))
def test_the_path_names_the_type_not_the_body(endpoint: str) -> None:
    [message] = messages_of({"type": "batch", "userId": "u"}, endpoint, LIMITS)
    assert isinstance(message, dict)
    assert message["type"] == CALL_PATHS[endpoint]


@pytest.mark.parametrize("endpoint", sorted(BATCH_PATHS))
def test_batch_endpoints_take_every_call_type(endpoint: str) -> None:
    batch = [
        {"type": CALL_PATHS[e], "messageId": f"m-{i}", "userId": "lead-1", **fields}
        for i, (e, fields, _) in enumerate(CALLS)
    ]
    intake = intake_of({"batch": batch}, endpoint)
    assert not intake.rejected
    assert [e.type for e in events_of(intake)] == [kind for _, _, kind in CALLS]
    assert [a.event_id for a in intake.accepted] == [f"m-{i}" for i in range(len(CALLS))]


# (case, document, endpoint, status)
BAD_SHAPES: list[tuple[str, object, str, int]] = [
    ("a list", [{"type": "track"}], "batch", 400),
    ("a list to a call endpoint", [{"type": "track"}], "track", 400),
    ("a string", "track", "t", 400),
    ("null", None, "b", 400),
    ("a number", 1, "b", 400),
    ("no batch", {"type": "track"}, "batch", 400),
    ("batch not a list", {"batch": {"0": {}}}, "batch", 400),
    ("batch null", {"batch": None}, "b", 400),
]


@pytest.mark.parametrize(
    ("case", "document", "endpoint", "status"), BAD_SHAPES, ids=[b[0] for b in BAD_SHAPES]
)
def test_bad_shapes_are_body_errors(
    case: str, document: object, endpoint: str, status: int
) -> None:
    with pytest.raises(BodyError) as caught:
        messages_of(document, endpoint, LIMITS)
    assert caught.value.status == status


def test_an_empty_batch_is_nothing() -> None:
    intake = intake_of({"batch": []})
    assert intake.summary() == {"success": True, "accepted": 0}


# -- batch merging ---------------------------------------------------------------------------


def test_batch_fields_are_merged_into_each_item_the_item_winning() -> None:
    document = {
        "batch": [
            {"type": "track", "event": "a", "userId": "u"},
            {
                "type": "track",
                "event": "b",
                "userId": "u",
                "sentAt": "2026-11-22T10:00:05Z",
                "context": {"ip": "10.0.0.2", "page": {"referrer": "https://own.io"}},
                "integrations": {"All": True},
            },
            "not an object",
        ],
        "sentAt": "2026-11-22T10:00:00Z",
        "context": {
            "ip": "10.0.0.1",
            "userAgent": "UA",
            "page": {"referrer": "https://batch.io", "url": "https://x.io"},
        },
        "integrations": {"All": False, "Salesforce": True},
        "writeKey": "ignored here",
    }
    first, second, third = messages_of(document, "batch", LIMITS)
    assert first == {
        "type": "track",
        "event": "a",
        "userId": "u",
        "sentAt": "2026-11-22T10:00:00Z",
        "context": document["context"],
        "integrations": {"All": False, "Salesforce": True},
    }
    assert second == {
        "type": "track",
        "event": "b",
        "userId": "u",
        "sentAt": "2026-11-22T10:00:05Z",
        "context": {
            "ip": "10.0.0.2",
            "userAgent": "UA",
            "page": {"referrer": "https://own.io", "url": "https://x.io"},
        },
        "integrations": {"All": True, "Salesforce": True},
    }
    assert third == "not an object"
    intake = intake_of(document)
    assert [r.index for r in intake.rejected] == [2]
    assert intake.rejected[0].errors == ["message: expected a JSON object, got a string"]
    one, two = events_of(intake)
    assert one.properties["context"] == {
        "ip": "10.0.0.1",
        "userAgent": "UA",
        "referrer": "https://batch.io",
    }
    assert two.properties["context"] == {
        "ip": "10.0.0.2",
        "userAgent": "UA",
        "referrer": "https://own.io",
    }


def test_the_batch_sent_at_corrects_the_item_clock() -> None:
    document = {
        "batch": [
            {"type": "track", "event": "a", "userId": "u", "timestamp": "2026-01-01T00:00:00Z"}
        ],
        "sentAt": "2026-01-01T00:00:10Z",
    }
    [event] = events_of(intake_of(document))
    assert event.occurred_at == datetime(2026, 11, 22, 10, 0, 20, tzinfo=UTC)


def test_bad_batch_fields_are_reported_by_the_items() -> None:
    document = {
        "batch": [{"type": "track", "event": "a", "userId": "u", "context": "web"}],
        "context": {"ip": "1.2.3.4"},
        "sentAt": 5,
    }
    [rejected] = intake_of(document).rejected
    assert rejected.errors == [
        "context: expected a JSON object, got a string",
        "sentAt: expected an ISO-8601 string, got a number",
    ]


# -- write keys in the body ------------------------------------------------------------------

# (case, document, key)
BODY_KEYS: list[tuple[str, object, str | None]] = [
    ("top level", {"writeKey": "wk-1", "type": "track"}, "wk-1"),
    ("top level over the items", {"writeKey": "wk-1", "batch": [{"writeKey": "wk-2"}]}, "wk-1"),
    ("every item the same", {"batch": [{"writeKey": "wk-2"}, {"writeKey": "wk-2"}]}, "wk-2"),
    ("one item", {"batch": [{"writeKey": "wk-2"}]}, "wk-2"),
    ("items differ", {"batch": [{"writeKey": "wk-2"}, {"writeKey": "wk-3"}]}, None),
    ("an item without", {"batch": [{"writeKey": "wk-2"}, {}]}, None),
    ("an item not an object", {"batch": [{"writeKey": "wk-2"}, "x"]}, None),
    ("empty top level, items", {"writeKey": "", "batch": [{"writeKey": "wk-2"}]}, "wk-2"),
    ("empty everywhere", {"writeKey": "", "batch": [{"writeKey": ""}]}, None),
    ("a number", {"writeKey": 5}, None),
    ("numbers in items", {"batch": [{"writeKey": 5}]}, None),
    ("a list in an item", {"batch": [{"writeKey": ["wk-2"]}]}, None),
    ("an object in an item", {"batch": [{"writeKey": {"k": "wk-2"}}, {"writeKey": "wk-2"}]}, None),
    ("a list at the top", {"writeKey": ["wk-1"], "batch": [{"writeKey": "wk-2"}]}, "wk-2"),
    ("empty batch", {"batch": []}, None),
    ("batch not a list", {"batch": {"writeKey": "wk-2"}}, None),
    ("none", {"type": "track"}, None),
    ("not an object", [{"writeKey": "wk-1"}], None),
    ("lone surrogate", {"writeKey": "\ud800"}, "\ud800"),
]


@pytest.mark.parametrize(("case", "document", "key"), BODY_KEYS, ids=[k[0] for k in BODY_KEYS])
def test_write_key_in_the_body(case: str, document: object, key: str | None) -> None:
    assert write_key_in(document) == key


# -- limits ----------------------------------------------------------------------------------


def message_of_size(size: int, **fields: Any) -> dict[str, Any]:
    """A track message whose compact JSON is exactly `size` bytes."""
    message: dict[str, Any] = {"type": "track", "event": "x", "userId": "u", **fields}
    message["properties"] = {"pad": ""}
    base = len(json.dumps(message, separators=(",", ":")).encode())
    message["properties"]["pad"] = "x" * (size - base)
    assert len(json.dumps(message, separators=(",", ":")).encode()) == size
    return message


@pytest.mark.parametrize("limit", [256, 1000, 32 * 1024])
def test_message_bytes_limit(limit: int) -> None:
    limits = Limits(max_message_bytes=limit, max_batch_messages=10)
    batch = [
        message_of_size(limit, messageId="at"),
        message_of_size(limit + 1, messageId="over"),
        message_of_size(limit - 1, messageId="under"),
    ]
    intake = intake_of({"batch": batch}, limits=limits)
    assert [a.event_id for a in intake.accepted] == ["at", "under"]
    [rejected] = intake.rejected
    assert (rejected.index, rejected.message_id) == (1, "over")
    assert rejected.errors == [f"message: {limit + 1} bytes, more than {limit}"]
    assert json.loads(rejected.raw) == batch[1]


def test_message_bytes_count_utf8_bytes_not_characters() -> None:
    limits = Limits(max_message_bytes=300)
    message = {"type": "track", "event": "x", "userId": "u", "properties": {"t": "é" * 150}}
    assert len(json.dumps(message, ensure_ascii=False, separators=(",", ":"))) < 300
    [rejected] = intake_of(message, "track", limits=limits).rejected
    assert rejected.errors[0].startswith("message: 3")


def test_message_bytes_include_the_merged_batch_fields() -> None:
    limits = Limits(max_message_bytes=1000)
    document = {
        "batch": [{"type": "track", "event": "x", "userId": "u"}],
        "context": {"userAgent": "x" * 1000},
    }
    [rejected] = intake_of(document, limits=limits).rejected
    assert "more than 1000" in rejected.errors[0]


@pytest.mark.parametrize("limit", [1, 3, 2500])
def test_batch_count_limit(limit: int) -> None:
    limits = Limits(max_batch_messages=limit)
    item = {"type": "track", "event": "x", "userId": "u"}
    assert len(messages_of({"batch": [item] * limit}, "batch", limits)) == limit
    with pytest.raises(BodyError) as caught:
        messages_of({"batch": [item] * (limit + 1)}, "batch", limits)
    assert caught.value.status == 413
    assert caught.value.message == f"batch: {limit + 1} messages, at most {limit}"


def test_the_default_limits_are_segments() -> None:
    assert Limits() == Limits(max_message_bytes=32 * 1024, max_batch_messages=2500)


# -- sales-only types ------------------------------------------------------------------------


# (track event name, the sales-only type it becomes, its feedback properties)
SALES_NAMES: list[tuple[str, str, dict[str, Any]]] = [
    ("Sales Qualified", "sales_qualified", {}),
    ("sales_rejected", "sales_rejected", {}),
    ("SALES REJECTED", "sales_rejected", {"handoff_id": "h-1", "reason": "bad_fit"}),
    ("Deal Qualified", "sales_qualified", {}),  # through the model's events: table
    ("Sales Accepted", "sales_accepted", {"handoff_id": "h-1"}),
    (
        "Qualification",
        "qualification",
        {"handoff_id": "h-1", "framework": "bant", "criteria": {"budget": "met"}},
    ),
    ("Disqualified", "disqualified", {"reason": "competitor"}),
    ("Requalify", "requalify", {}),
]


def test_every_sales_only_type_is_tested() -> None:
    assert {kind for _, kind, _ in SALES_NAMES} == SALES_ONLY_EVENTS


@pytest.mark.parametrize(("name", "kind", "properties"), SALES_NAMES)
def test_sales_only_types_need_a_sales_source(
    name: str, kind: str, properties: dict[str, Any]
) -> None:
    message = {
        "type": "track",
        "event": name,
        "userId": "lead-1",
        "messageId": "m-1",
        "properties": properties,
    }
    refused = intake_of(message, "track", source=WEBSITE)
    assert not refused.accepted
    [rejected] = refused.rejected
    assert rejected.errors == [
        f"event: {name!r} ({kind}) may only be sent by a sales tool's write key"
    ]
    taken = intake_of(message, "track", source=SALES)
    assert not taken.rejected
    [event] = events_of(taken)
    assert (event.type, event.lead_id) == (kind, "lead-1")
    assert event.properties == properties


def test_a_sales_source_with_bad_feedback_properties_is_refused_naming_the_property() -> None:
    message = {
        "type": "track",
        "event": "Sales Rejected",
        "userId": "lead-1",
        "properties": {"handoff_id": "h-1", "reason": "too_busy"},
    }
    [rejected] = intake_of(message, "track", source=SALES).rejected
    assert len(rejected.errors) == 1
    assert rejected.errors[0].startswith("properties.reason: ")
    assert "'bad_fit'" in rejected.errors[0]


def test_a_batch_mixing_sales_only_types_refuses_only_those() -> None:
    batch = [
        {"type": "track", "event": "Demo Requested", "userId": "lead-1"},
        {"type": "track", "event": "sales_rejected", "userId": "lead-1"},
        {"type": "identify", "userId": "lead-1", "traits": {"stage": "sales_qualified"}},
    ]
    intake = intake_of({"batch": batch})
    assert [r.index for r in intake.rejected] == [1]
    assert [e.type for e in events_of(intake)] == ["demo_request", "identify"]


# -- keys, ids and values of the accepted events ---------------------------------------------

# (case, message fields, Kafka key)
SUBJECTS: list[tuple[str, dict[str, Any], str]] = [
    ("lead id", {"userId": "lead-1"}, "lead-1"),
    ("lead id over anonymous id", {"userId": "lead-1", "anonymousId": "anon-1"}, "lead-1"),
    ("anonymous id", {"anonymousId": "anon-1"}, "anon-1"),
    ("empty lead id", {"userId": "", "anonymousId": "anon-1"}, "anon-1"),
    ("numeric lead id", {"userId": 42}, "42"),
]


@pytest.mark.parametrize(("case", "fields", "key"), SUBJECTS, ids=[s[0] for s in SUBJECTS])
def test_the_key_is_the_lead_else_the_anonymous_id(
    case: str, fields: dict[str, Any], key: str
) -> None:
    [accepted] = intake_of({"event": "x", **fields}, "t").accepted
    assert accepted.key == key
    assert decode_event(accepted.value).subject == key


def test_summary_lists_rejects_with_index_id_and_reasons() -> None:
    batch = [
        {"type": "track", "event": "x", "userId": "u", "messageId": "ok"},
        {"type": "track", "userId": "u", "messageId": 7},
        {"type": "nope", "messageId": "m" * 300},
        {"type": "track", "event": "x", "userId": "u", "messageId": True},
    ]
    assert intake_of({"batch": batch}).summary() == {
        "success": True,
        "accepted": 1,
        "rejected": [
            {
                "index": 1,
                "messageId": "7",
                "errors": ["event: missing (a track call names its event)"],
            },
            {
                "index": 2,
                "messageId": "m" * 200,
                "errors": [f"type: unknown type 'nope'; supported: {', '.join(SUPPORTED_TYPES)}"],
            },
            {
                "index": 3,
                "messageId": None,
                "errors": ["messageId: expected a string, got a boolean"],
            },
        ],
    }


# -- awkward values: rejected or accepted, never an exception --------------------------------

# (case, message fields, accepted?)
AWKWARD: list[tuple[str, dict[str, Any], bool]] = [
    ("lone surrogate in messageId", {"messageId": "\ud800"}, False),
    ("lone surrogate in userId", {"userId": "\udc80"}, False),
    ("lone surrogate in the event name", {"event": "x\ud800"}, False),
    ("lone surrogate in a property", {"properties": {"a": "\ud800"}}, False),
    ("lone surrogate in a property name", {"properties": {"\ud800": 1}}, False),
    ("lone surrogate in the context", {"context": {"ip": "\ud800"}}, False),
    (
        "lone surrogate in a dropped field",
        {"context": {"library": "\ud800"}, "messageId": "m"},
        True,
    ),
    ("lone surrogate in a dropped field, no messageId", {"integrations": {"\ud800": 1}}, False),
    ("emoji (a surrogate pair in JSON)", {"properties": {"a": "🙂"}}, True),
    ("NaN property", {"properties": {"a": float("nan")}}, False),
    ("infinite property", {"properties": {"a": float("inf")}}, False),
    ("NaN inside a dropped field", {"integrations": {"x": float("nan")}, "messageId": "m"}, True),
    ("huge int property", {"properties": {"a": 10**4000}}, True),
    ("huge int userId", {"userId": 10**200}, False),
    ("negative userId", {"userId": -1}, True),
    ("float userId", {"userId": 1.5}, False),
    ("bool userId", {"userId": True}, False),
    ("list userId", {"userId": ["u"]}, False),
    ("object anonymousId", {"anonymousId": {"id": 1}}, False),
    ("NUL in userId", {"userId": "a\x00b"}, False),
    (
        "a year-1 sentAt against a year-9999 time",
        {"sentAt": "0001-01-01T00:00:00Z", "originalTimestamp": "9999-12-31T23:59:59Z"},
        True,
    ),
    (
        "a year-9999 sentAt against a year-1 time",
        {"sentAt": "9999-12-31T23:59:59Z", "originalTimestamp": "0001-01-01T00:00:00Z"},
        False,
    ),
    (
        "year-9999 sentAt and timestamp",
        {"sentAt": "9999-12-31T23:59:59+00:00", "timestamp": "0001-01-01T00:00:00-23:59"},
        False,
    ),
    ("timestamp at the very end of time", {"timestamp": "9999-12-31T23:59:59.999999-23:59"}, True),
    ("timestamp at the very start of time", {"timestamp": "0001-01-01T00:00:00+23:59"}, False),
    ("time not a string", {"timestamp": 1700000000}, False),
    ("a huge string property", {"properties": {"a": "x" * 30_000}}, True),
    ("properties deeply nested", {"properties": {"a": [[[[[[[[1]]]]]]]]}}, True),
]


@pytest.mark.parametrize(("case", "fields", "ok"), AWKWARD, ids=[a[0] for a in AWKWARD])
def test_awkward_values_are_rejected_or_accepted_never_raised(
    case: str, fields: dict[str, Any], ok: bool
) -> None:
    message = {"type": "track", "event": "x", "userId": "u", **fields}
    intake = intake_of({"batch": [message]})
    assert len(intake.accepted) == int(ok)
    assert len(intake.rejected) == int(not ok)
    for accepted in intake.accepted:
        decode_event(accepted.value)
    for rejected in intake.rejected:
        assert rejected.errors
        assert all(line.strip() for line in rejected.errors)
        json.dumps(intake.summary())  # the response can be written


def test_a_rejected_message_keeps_its_lone_surrogates_for_the_letter() -> None:
    [rejected] = intake_of({"batch": [{"type": "track", "userId": "\ud800"}]}).rejected
    assert rejected.raw == '{"type":"track","userId":"\ud800"}'.encode("utf-8", "surrogatepass")


@pytest.mark.parametrize("depth", [MAX_NESTING - 4, MAX_NESTING - 3, MAX_NESTING + 1, 900, 990])
def test_deep_documents_never_raise(depth: int) -> None:
    inner = b"[" * depth + b"]" * depth
    data = b'{"batch": [{"type": "track", "event": "x", "userId": "u", "properties": {"a": ' + inner
    data += b"}}]}"
    levels = depth + 4  # the document, the batch, the item and its properties
    if levels > MAX_NESTING:
        with pytest.raises(BodyError) as caught:
            parsed(data)
        assert caught.value.status == 400
    else:
        assert len(intake_of(parsed(data)).accepted) == 1


# -- write keys named before the whole body is read -------------------------------------------

# (case, head, keys)
HEAD_KEYS: list[tuple[str, bytes, list[str]]] = [
    ("top level", b'{"writeKey": "wk-1", "batch": [', ["wk-1"]),
    ("items", b'{"batch": [{"writeKey":"wk-2"}, {"writeKey" : "wk-2"}, {"writeKey":"wk-', ["wk-2"]),
    ("two distinct", b'{"writeKey":"wk-1","batch":[{"writeKey":"wk-2"}', ["wk-1", "wk-2"]),
    ("escapes", b'{"writeKey": "wk\\"1\\\\\\u0041"}', ['wk"1\\A']),
    ("cut inside the value", b'{"writeKey": "wk-1', []),
    ("a number", b'{"writeKey": 5, "batch": [', []),
    ("none", b'{"batch": [{"type": "track"', []),
    ("not UTF-8", b'{"writeKey": "\xff\xfe"}', []),
    ("lone surrogate escape", b'{"writeKey": "\\ud800"}', ["\ud800"]),
]


@pytest.mark.parametrize(("case", "head", "keys"), HEAD_KEYS, ids=[k[0] for k in HEAD_KEYS])
def test_write_keys_named_in_a_body_cut_short(case: str, head: bytes, keys: list[str]) -> None:
    assert write_keys_named(head) == keys


def test_write_keys_named_stop_at_most() -> None:
    head = b"".join(b'{"writeKey":"wk-%d"},' % i for i in range(20))
    assert write_keys_named(head, most=3) == ["wk-0", "wk-1", "wk-2"]
