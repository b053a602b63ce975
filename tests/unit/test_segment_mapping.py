"""Segment HTTP Tracking API messages to BehaviorEvent: every call, time, id and bound."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadpulse.schemas import (
    SALES_ONLY_EVENTS,
    BehaviorEvent,
    DecodeError,
    encode,
    from_segment,
    is_sales_only,
    limits,
    merge_batch_item,
)
from leadpulse.schemas.segment import (
    CONTEXT_STRING_LIMITS,
    SUPPORTED_TYPES,
    event_time,
    message_digest,
    normalise_event_name,
    trim_json,
)
from leadpulse.scoring import RESERVED_EVENTS

RECEIVED = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)
EVENTS = {"Demo Requested": "demo_request", "Signed Up": "trial_signup"}


def seg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"messageId": "m-1", "userId": "lead-42"}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def mapped(message: dict[str, Any], **options: Any) -> BehaviorEvent:
    return from_segment(message, received_at=RECEIVED, events=EVENTS, **options)


# (case, message, expected fields of the event)
CALLS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "track through the name table",
        seg(type="track", event="Demo Requested", properties={"plan": "pro"}),
        {"type": "demo_request", "properties": {"plan": "pro"}, "traits": {}},
    ),
    (
        "track normalised",
        seg(type="track", event="Webinar Attended"),
        {"type": "webinar_attended", "properties": {}},
    ),
    (
        "page: url from properties, name and category kept",
        seg(
            type="page",
            name="Pricing",
            category="Docs",
            properties={"url": "https://x.io/pricing", "path": "/pricing"},
            context={"page": {"url": "https://x.io/other"}},
        ),
        {
            "type": "page_view",
            "properties": {
                "url": "https://x.io/pricing",
                "name": "Pricing",
                "category": "Docs",
                "path": "/pricing",
            },
        },
    ),
    (
        "page: url from context.page.url",
        seg(
            type="page",
            anonymousId="anon-1",
            userId=None,
            context={"page": {"url": "https://x.io/a"}},
        ),
        {
            "type": "page_view",
            "lead_id": None,
            "anonymous_id": "anon-1",
            "properties": {"url": "https://x.io/a"},
        },
    ),
    (
        "page: the message's properties.name wins over the top-level name",
        seg(type="page", name="Top", properties={"name": "Inner"}),
        {"properties": {"name": "Inner"}},
    ),
    (
        "screen: a page_view without context.page.url",
        seg(type="screen", name="Settings", context={"page": {"url": "https://x.io/web"}}),
        {"type": "page_view", "properties": {"name": "Settings"}},
    ),
    (
        "identify: top-level traits over context.traits",
        seg(
            type="identify",
            anonymousId="anon-1",
            traits={"title": "CTO", "company_size": 120},
            context={"traits": {"title": "Dev", "country": "DE"}},
        ),
        {
            "type": "identify",
            "lead_id": "lead-42",
            "anonymous_id": "anon-1",
            "traits": {"title": "CTO", "country": "DE", "company_size": 120},
            "properties": {},
        },
    ),
    (
        "identify: only context.traits",
        seg(type="identify", context={"traits": {"industry": "saas"}}),
        {"type": "identify", "traits": {"industry": "saas"}},
    ),
    (
        "alias: previousId becomes the anonymous side of the link",
        seg(type="alias", previousId="anon-7", anonymousId="ignored", traits={"x": 1}),
        {"type": "identify", "lead_id": "lead-42", "anonymous_id": "anon-7", "traits": {}},
    ),
    (
        "alias of two known ids is the same link",
        seg(type="alias", previousId="crm-1", userId="crm-2"),
        {"type": "identify", "lead_id": "crm-2", "anonymous_id": "crm-1"},
    ),
    (
        "group: account id and traits",
        seg(type="group", groupId="acme", traits={"name": "Acme", "employees": 300}),
        {
            "type": "group",
            "properties": {
                "account_id": "acme",
                "account_traits": {"name": "Acme", "employees": 300},
            },
            "traits": {},
        },
    ),
    (
        "numeric userId is written as a string",
        seg(type="track", event="x", userId=12345),
        {"lead_id": "12345"},
    ),
    (
        "empty userId counts as absent",
        seg(type="track", event="x", userId="", anonymousId="anon-1"),
        {"lead_id": None, "anonymous_id": "anon-1"},
    ),
]


@pytest.mark.parametrize(("case", "message", "expected"), CALLS, ids=[c[0] for c in CALLS])
def test_every_call_maps(case: str, message: dict[str, Any], expected: dict[str, Any]) -> None:
    event = mapped(message)
    for field, value in expected.items():
        assert getattr(event, field) == value, field
    assert event.event_id == "m-1"
    assert event.occurred_at == RECEIVED  # no time fields: received_at
    # the output is a valid wire event
    assert BehaviorEvent.model_validate_json(encode(event)) == event


def test_page_properties_keep_url_first() -> None:
    event = mapped(seg(type="page", properties={"a": 1, "url": "u"}, name="n"))
    assert list(event.properties) == ["url", "name", "a"]


SUPPORTED = "supported: alias, group, identify, page, screen, track"

# (case, message, expected errors)
REJECTED: list[tuple[str, object, list[str]]] = [
    ("unknown type", seg(type="merge"), [f"type: unknown type 'merge'; {SUPPORTED}"]),
    (
        "type in capitals",
        seg(type="Track", event="x"),
        [f"type: unknown type 'Track'; {SUPPORTED}"],
    ),
    ("missing type", seg(event="x"), [f"type: missing; {SUPPORTED}"]),
    ("not an object", ["track"], ["message: expected a JSON object, got a list"]),
    (
        "no ids",
        seg(type="track", event="x", userId=None),
        ["message: needs a userId or an anonymousId (both are missing or empty)"],
    ),
    (
        "empty ids",
        seg(type="page", userId="", anonymousId=""),
        ["message: needs a userId or an anonymousId (both are missing or empty)"],
    ),
    (
        "alias without previousId",
        seg(type="alias"),
        ["previousId: required for an alias (the id that becomes userId)"],
    ),
    (
        "alias without userId",
        seg(type="alias", userId=None, previousId="anon-1", anonymousId="anon-1"),
        ["userId: required for an alias (the id previousId becomes)"],
    ),
    ("group without groupId", seg(type="group"), ["groupId: required for a group call"]),
    (
        "track without event",
        seg(type="track"),
        ["event: missing (a track call names its event)"],
    ),
    (
        "track with a non-string event",
        seg(type="track", event=5),
        ["event: expected a name, got a number (a track call names its event)"],
    ),
    (
        "track named as another call",
        seg(type="track", event="Identify"),
        ["event: 'Identify' is the identify call's type; send a identify call"],
    ),
    (
        "sales-only type from a tracker",
        seg(type="track", event="Sales Qualified"),
        ["event: 'Sales Qualified' (sales_qualified) may only be sent by a sales tool's write key"],
    ),
    (
        "userId too long and with control characters",
        seg(type="track", event="x", userId="u" * 129, anonymousId="a\nb"),
        [
            "userId: longer than 128 characters",
            "anonymousId: must not contain control characters",
        ],
    ),
    (
        "messageId not a string",
        seg(type="track", event="x", messageId={"id": 1}),
        ["messageId: expected a string, got an object"],
    ),
    (
        "properties not an object, context a string",
        seg(type="track", event="x", properties=[1], context="web"),
        [
            "context: expected a JSON object, got a string",
            "properties: expected a JSON object, got a list",
        ],
    ),
    (
        "event time before 2000",
        seg(type="track", event="x", timestamp="1970-01-01T00:00:00Z"),
        ["occurred_at: 1970-01-01T00:00:00+00:00 is before 2000: not a real event time"],
    ),
]


@pytest.mark.parametrize(("case", "message", "errors"), REJECTED, ids=[c[0] for c in REJECTED])
def test_bad_messages_are_rejected_with_reasons(
    case: str, message: object, errors: list[str]
) -> None:
    with pytest.raises(DecodeError) as caught:
        from_segment(message, received_at=RECEIVED, events=EVENTS)
    assert caught.value.errors == errors


def test_unknown_type_lists_every_supported_type() -> None:
    with pytest.raises(DecodeError) as caught:
        mapped(seg(type="merge"))
    assert all(name in caught.value.reason for name in SUPPORTED_TYPES)


def test_trusted_sources_may_send_sales_only_types() -> None:
    event = mapped(seg(type="track", event="sales_rejected"), trusted=True)
    assert event.type == "sales_rejected"
    table = {"Opportunity Won": "sales_qualified"}
    with pytest.raises(DecodeError, match="sales tool's write key"):
        from_segment(seg(type="track", event="Opportunity Won"), received_at=RECEIVED, events=table)


def test_sales_only_set_is_scorings_reserved_events() -> None:
    assert frozenset(RESERVED_EVENTS) == SALES_ONLY_EVENTS
    assert all(is_sales_only(name) for name in RESERVED_EVENTS)
    assert not is_sales_only("demo_request")


# --- event time -------------------------------------------------------------

# (case, time fields, expected occurred_at)
TIMES: list[tuple[str, dict[str, Any], datetime]] = [
    (
        "sentAt + originalTimestamp: client clock 1h fast",
        {"originalTimestamp": "2026-11-22T11:00:00Z", "sentAt": "2026-11-22T11:00:20Z"},
        RECEIVED - timedelta(seconds=20),
    ),
    (
        "sentAt + timestamp as the original",
        {"timestamp": "2026-11-22T08:59:50.5+00:00", "sentAt": "2026-11-22T09:00:00Z"},
        RECEIVED - timedelta(seconds=9.5),
    ),
    (
        "originalTimestamp wins over timestamp when both and sentAt",
        {
            "timestamp": "2020-01-01T00:00:00Z",
            "originalTimestamp": "2026-11-22T10:00:00Z",
            "sentAt": "2026-11-22T10:00:10Z",
        },
        RECEIVED - timedelta(seconds=10),
    ),
    (
        "sentAt before the original: not after received_at",
        {"originalTimestamp": "2026-11-22T10:00:10Z", "sentAt": "2026-11-22T10:00:00Z"},
        RECEIVED,
    ),
    (
        "sentAt in year 1, the original in 9999: received_at, no overflow",
        {"originalTimestamp": "9999-12-31T23:59:59Z", "sentAt": "0001-01-01T00:00:00Z"},
        RECEIVED,
    ),
    ("sentAt alone", {"sentAt": "2026-11-22T10:00:00Z"}, RECEIVED),
    (
        "no sentAt: timestamp as given, offset and nanoseconds",
        {"timestamp": "2026-11-22T12:00:00.123456789+02:00"},
        datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC),
    ),
    (
        "no sentAt: timestamp over originalTimestamp",
        {"timestamp": "2026-11-21T10:00:00Z", "originalTimestamp": "2026-11-20T10:00:00Z"},
        datetime(2026, 11, 21, 10, tzinfo=UTC),
    ),
    (
        "no sentAt: originalTimestamp only",
        {"originalTimestamp": "2026-11-20T10:00:00.5Z"},
        datetime(2026, 11, 20, 10, 0, 0, 500000, tzinfo=UTC),
    ),
    ("none of them: received_at", {}, RECEIVED),
    ("nulls count as absent", {"timestamp": None, "sentAt": None}, RECEIVED),
]


@pytest.mark.parametrize(("case", "fields", "expected"), TIMES, ids=[t[0] for t in TIMES])
def test_event_time_corrects_client_skew(
    case: str, fields: dict[str, Any], expected: datetime
) -> None:
    assert event_time(fields, RECEIVED) == expected
    assert mapped(seg(type="track", event="x", **fields)).occurred_at == expected


# (case, time fields, expected errors)
BAD_TIMES: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        "naive timestamp",
        {"timestamp": "2026-11-22T10:00:00"},
        ["timestamp: '2026-11-22T10:00:00' has no timezone (add Z or an offset)"],
    ),
    (
        "date only is naive",
        {"originalTimestamp": "2026-11-22"},
        ["originalTimestamp: '2026-11-22' has no timezone (add Z or an offset)"],
    ),
    (
        "unparsable sentAt, even with a good timestamp",
        {"timestamp": "2026-11-22T10:00:00Z", "sentAt": "yesterday"},
        ["sentAt: 'yesterday' is not an ISO-8601 time"],
    ),
    (
        "epoch number",
        {"timestamp": 1764000000},
        ["timestamp: expected an ISO-8601 string, got a number"],
    ),
    (
        "sentAt thousands of years after the original: no overflow",
        {"originalTimestamp": "0001-01-01T00:00:00Z", "sentAt": "9999-12-31T23:59:59Z"},
        ["sentAt: 3652058 days after the event time, not a real clock skew"],
    ),
    (
        "every bad field is reported",
        {"timestamp": "2026-11-22T10:00:00", "sentAt": "x" * 100},
        [
            "timestamp: '2026-11-22T10:00:00' has no timezone (add Z or an offset)",
            f"sentAt: '{'x' * 64}...' is not an ISO-8601 time",
        ],
    ),
]


@pytest.mark.parametrize(("case", "fields", "errors"), BAD_TIMES, ids=[t[0] for t in BAD_TIMES])
def test_bad_times_are_rejected(case: str, fields: dict[str, Any], errors: list[str]) -> None:
    with pytest.raises(DecodeError) as caught:
        mapped(seg(type="track", event="x", **fields))
    assert caught.value.errors == errors


def test_a_naive_received_at_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="no timezone") as caught:
        from_segment(seg(type="page"), received_at=datetime(2026, 11, 22))
    assert not isinstance(caught.value, DecodeError)


# --- event ids --------------------------------------------------------------


def test_missing_message_id_is_a_digest_stable_across_retries() -> None:
    first = seg(
        type="track",
        event="Demo Requested",
        messageId=None,
        originalTimestamp="2026-11-22T10:00:00Z",
        sentAt="2026-11-22T10:00:01Z",
        properties={"b": 1, "a": [1, 2]},
    )
    retry = {**first, "sentAt": "2026-11-22T10:05:00Z", "receivedAt": "x", "writeKey": "k"}
    reordered = dict(reversed(list(first.items())))
    reordered["properties"] = {"a": [1, 2], "b": 1}
    ids = {mapped(m).event_id for m in (first, retry, reordered, {**first, "messageId": ""})}
    assert len(ids) == 1
    (event_id,) = ids
    assert event_id.startswith("seg-")
    assert len(event_id) == 68 <= limits.MAX_ID_LENGTH
    assert event_id == message_digest(first)
    # a different event is a different id
    other = {**first, "properties": {"b": 2, "a": [1, 2]}}
    assert mapped(other).event_id != event_id
    assert mapped({**first, "originalTimestamp": "2026-11-22T10:00:02Z"}).event_id != event_id


def test_message_id_is_kept_as_given() -> None:
    assert mapped(seg(type="page", messageId="ajs-next-1d2c")).event_id == "ajs-next-1d2c"


# --- track names --------------------------------------------------------------

# (name, expected type, or None when the name normalises to nothing)
NAMES: list[tuple[str, str | None]] = [
    ("Demo Requested", "demo_requested"),
    ("  Pricing  Page -- Viewed!! ", "pricing_page_--_viewed"),
    ("checkout:step.2", "checkout:step.2"),
    ("already_snake", "already_snake"),
    ("__Trim Me__", "trim_me"),
    ("Café Visité", "cafe_visite"),
    ("Straße Gesehen", "strasse_gesehen"),
    ("\uff26\uff35\uff2c\uff2c \uff37\uff29\uff24\uff34\uff28", "full_width"),  # full-width
    ("404 Seen", "e_404_seen"),
    ("3", "e_3"),
    ("-x", "x"),
    ("日本語", None),
    ("🎉🎉", None),
    ("", None),
    ("   ", None),
    ("a" * 100, "a" * 64),
    ("a" * 63 + " b", "a" * 63),
]


@pytest.mark.parametrize(("name", "expected"), NAMES)
def test_track_names_normalise_to_the_type_pattern(name: str, expected: str | None) -> None:
    assert normalise_event_name(name) == expected
    if expected is not None:
        assert re.match(limits.EVENT_TYPE_PATTERN, expected)
        assert from_segment(seg(type="track", event=name), received_at=RECEIVED).type == expected
        return
    with pytest.raises(DecodeError) as caught:
        from_segment(seg(type="track", event=name), received_at=RECEIVED)
    if name:
        assert caught.value.errors == [
            f"event: {name!r} has no letters or digits a leadpulse event type can keep; "
            "map it in the model's events: table"
        ]
    else:
        assert caught.value.errors == ["event: missing (a track call names its event)"]


# (table, name, expected type)
TABLE: list[tuple[dict[str, str], str, str]] = [
    ({"Demo Requested": "demo_request"}, "Demo Requested", "demo_request"),
    ({"Demo Requested": "demo_request"}, "demo requested", "demo_requested"),  # exact match only
    ({"日本語": "jp_visit"}, "日本語", "jp_visit"),  # the table rescues what cannot normalise
    ({"404": "not_found"}, "404", "not_found"),
    ({}, "Signed Up", "signed_up"),
    ({"Identify": "identify"}, "Identify", "identify"),  # an explicit mapping is the model's choice
]


@pytest.mark.parametrize(("table", "name", "expected"), TABLE)
def test_the_name_table_comes_before_normalisation(
    table: dict[str, str], name: str, expected: str
) -> None:
    message = seg(type="track", event=name)
    assert from_segment(message, received_at=RECEIVED, events=table).type == expected


def test_a_table_value_that_is_no_event_type_is_rejected() -> None:
    with pytest.raises(DecodeError, match="mapped to 'Demo Request', not a valid event type"):
        from_segment(
            seg(type="track", event="x"), received_at=RECEIVED, events={"x": "Demo Request"}
        )


# --- context ------------------------------------------------------------------

FULL_CONTEXT = {
    "campaign": {
        "name": "spring",
        "source": "google",
        "medium": "cpc",
        "term": "crm",
        "content": "ad-1",
        "extra": "dropped",
        "id": 7,
    },
    "page": {"referrer": "https://google.com/", "url": "https://x.io/", "title": "dropped"},
    "userAgent": "Mozilla/5.0",
    "ip": "203.0.113.7",
    "library": {"name": "analytics.js", "version": "1.84.3"},
    "locale": "en-US",
    "traits": {"email": "dropped@example.com"},
}


# (case, context, expected properties.context or None when there is none)
CONTEXTS: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = [
    (
        "only campaign, referrer, userAgent, ip",
        FULL_CONTEXT,
        {
            "campaign": {
                "name": "spring",
                "source": "google",
                "medium": "cpc",
                "term": "crm",
                "content": "ad-1",
            },
            "referrer": "https://google.com/",
            "userAgent": "Mozilla/5.0",
            "ip": "203.0.113.7",
        },
    ),
    ("nothing useful", {"library": {"name": "x"}, "locale": "de"}, None),
    (
        "non-strings and empty strings are dropped",
        {"ip": 5, "userAgent": "", "campaign": {"name": None}, "page": "x"},
        None,
    ),
    (
        "each string is bounded",
        {
            "campaign": {"name": "n" * 1000},
            "page": {"referrer": "r" * 10_000},
            "userAgent": "u" * 10_000,
            "ip": "i" * 1000,
        },
        {
            "campaign": {"name": "n" * CONTEXT_STRING_LIMITS["campaign"]},
            "referrer": "r" * CONTEXT_STRING_LIMITS["referrer"],
            "userAgent": "u" * CONTEXT_STRING_LIMITS["userAgent"],
            "ip": "i" * CONTEXT_STRING_LIMITS["ip"],
        },
    ),
]


@pytest.mark.parametrize(("case", "context", "expected"), CONTEXTS, ids=[c[0] for c in CONTEXTS])
@pytest.mark.parametrize("call", ["track", "page", "identify", "alias", "group"])
def test_context_is_reduced_and_bounded(
    call: str, case: str, context: dict[str, Any], expected: dict[str, Any] | None
) -> None:
    message = seg(
        type=call,
        event="x",
        previousId="anon-1",
        groupId="acme",
        context=context,
        properties={"context": {"ip": "spoofed"}},
    )
    event = mapped(message)
    assert event.properties.get("context") == expected
    assert len(json.dumps(event.properties.get("context") or {})) < 4 * 1024


def test_whole_context_stays_within_a_few_kib() -> None:
    huge = {
        "campaign": dict.fromkeys(("name", "source", "medium", "term", "content"), "é" * 5000),
        "page": {"referrer": "r" * 99_999},
        "userAgent": "u" * 99_999,
        "ip": "i" * 99_999,
    }
    kept = mapped(seg(type="track", event="x", context=huge)).properties["context"]
    assert len(json.dumps(kept, ensure_ascii=False).encode()) < 6 * 1024


# --- bounds -------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        tree = {"d": tree}
    return tree


# (case, properties, expected properties after trimming)
BOUNDS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "within bounds: untouched",
        {"a": {"b": [1, "x", None, True, 2.5]}},
        {"a": {"b": [1, "x", None, True, 2.5]}},
    ),
    ("long string cut", {"s": "x" * 5000}, {"s": "x" * limits.MAX_STRING_LENGTH}),
    (
        "long and empty keys dropped",
        {"k" * 129: 1, "": 2, "ok": 3},
        {"ok": 3},
    ),
    ("depth 5 kept", nested(5), nested(5)),
    ("deeper containers dropped", nested(7), {"d": {"d": {"d": {"d": {}}}}}),
    ("lists count for depth", {"a": [[[[[1]]]]]}, {"a": [[[[]]]]}),
    ("non-finite numbers dropped", {"n": float("nan"), "i": float("inf"), "ok": 1.0}, {"ok": 1.0}),
    (
        "too many items: breadth first, in order",
        {"first": 1, "items": list(range(300)), "last": "kept", "deep": {"x": 1}},
        {"first": 1, "items": list(range(252)), "last": "kept", "deep": {}},
    ),
]


@pytest.mark.parametrize(("case", "properties", "expected"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_properties_are_trimmed_to_event_bounds(
    case: str, properties: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert trim_json(properties) == expected
    event = mapped(seg(type="track", event="x", properties=properties))
    assert event.properties == expected


def test_traits_and_account_traits_are_trimmed_too() -> None:
    many: dict[str, Any] = {f"t{i}": "v" * 100 for i in range(400)}
    many["t0"] = "v" * 5000
    identify = mapped(seg(type="identify", traits=many))
    assert len(identify.traits) == limits.MAX_MAP_ITEMS
    assert identify.traits["t0"] == "v" * limits.MAX_STRING_LENGTH
    group = mapped(seg(type="group", groupId="acme", traits=many))
    account = group.properties["account_traits"]
    assert isinstance(account, dict)
    assert group.properties["account_id"] == "acme"
    assert len(account) == limits.MAX_MAP_ITEMS - 2  # account_id and account_traits count


def test_trimming_leaves_room_for_the_context() -> None:
    properties = {f"p{i}": i for i in range(400)}
    event = mapped(seg(type="track", event="x", properties=properties, context=FULL_CONTEXT))
    assert event.properties["context"] == CONTEXTS[0][2]
    assert "p0" in event.properties
    BehaviorEvent.model_validate_json(encode(event))


def test_trimming_is_deterministic() -> None:
    properties = {f"p{i}": {"n": list(range(i))} for i in range(40)}
    first = mapped(seg(type="track", event="x", properties=properties))
    again = mapped(seg(type="track", event="x", properties=json.loads(json.dumps(properties))))
    assert encode(first) == encode(again)


def test_an_event_too_large_after_trimming_is_rejected() -> None:
    wide = {f"p{i}": "\U0001f389" * limits.MAX_STRING_LENGTH for i in range(100)}
    with pytest.raises(DecodeError) as caught:
        mapped(seg(type="track", event="x", properties=wide))
    (error,) = caught.value.errors
    assert error.startswith("message: ")
    assert f"more than {limits.MAX_MESSAGE_BYTES} (properties or traits too large)" in error


# --- batches --------------------------------------------------------------------


def test_merge_batch_item_item_wins_and_batch_sent_at_fills_in() -> None:
    batch = {
        "batch": [],
        "sentAt": "2026-11-22T10:00:20Z",
        "context": {"ip": "1.1.1.1", "userAgent": "batch", "page": {"referrer": "b", "url": "u"}},
        "integrations": {"All": True, "Slack": False},
        "writeKey": "k",
    }
    item = {
        "type": "page",
        "userId": "lead-1",
        "originalTimestamp": "2026-11-22T10:00:00Z",
        "context": {"userAgent": "item", "page": {"referrer": "i"}},
        "integrations": {"Slack": True},
    }
    merged = merge_batch_item(item, batch)
    assert merged["sentAt"] == "2026-11-22T10:00:20Z"
    assert merged["context"] == {
        "ip": "1.1.1.1",
        "userAgent": "item",
        "page": {"referrer": "i", "url": "u"},
    }
    assert merged["integrations"] == {"All": True, "Slack": True}
    assert "writeKey" not in merged
    assert "batch" not in merged
    assert item["context"] == {"userAgent": "item", "page": {"referrer": "i"}}  # not mutated
    event = from_segment(merged, received_at=RECEIVED)
    assert event.occurred_at == RECEIVED - timedelta(seconds=20)
    assert event.properties == {
        "url": "u",
        "context": {"referrer": "i", "userAgent": "item", "ip": "1.1.1.1"},
    }
    own = merge_batch_item({**item, "sentAt": "2026-11-22T10:00:05Z"}, batch)
    assert own["sentAt"] == "2026-11-22T10:00:05Z"
    assert merge_batch_item({"context": "bad"}, batch)["context"] == "bad"
    assert merge_batch_item({"type": "page"}, {}) == {"type": "page"}
