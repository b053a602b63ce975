"""The collector over HTTP: status codes and bodies the SDKs act on, over a `MemorySink`.

The app is served as `serve` serves it (`RUNNER_OPTIONS`: aiohttp's own
decompression off). `TestServer(app, auto_decompress=False)` would not do
it: `BaseTestServer.__init__` takes ``**kwargs`` and drops them; the runner
options must go to `TestServer.start_server`, which hands them to `AppRunner`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from leadpulse.schemas import (
    BehaviorEvent,
    DeadLetter,
    decode_dead_letter,
    decode_event,
    original_payload,
)
from leadpulse.streams.collector.app import ERROR_CODES, RUNNER_OPTIONS, Collector, CollectorConfig
from leadpulse.streams.collector.auth import WriteKeys
from leadpulse.streams.collector.intake import BATCH_PATHS, CALL_PATHS
from leadpulse.streams.collector.sink import MemorySink
from leadpulse.streams.dev.devstack import free_port
from leadpulse.streams.processes.collector import ops_application, public_application, serve
from leadpulse.streams.settings import Settings

RECEIVED = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)
WEB_KEY = "wk_website_0123456789abcdef"
SALES_KEY = "wk_salesforce_0123456789abc"
EVENTS = "events.collector"
DLQ = "dlq.collector"
UNAUTHORIZED = {"success": False, "error": "unauthorized"}


def settings(**changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "write_keys": f"website={WEB_KEY},salesforce={SALES_KEY}",
        "sales_sources": "salesforce",
        "events_topic": EVENTS,
        "dlq_topic": DLQ,
        "collector_max_batch_bytes": 64 * 1024,
        **changes,
    }
    return Settings(**fields)


def collector_of(config: Settings, sink: MemorySink, **options: Any) -> Collector:
    return Collector(
        CollectorConfig.from_settings(config, {"Demo Requested": "demo_request"}),
        WriteKeys(config.write_key_sources, config.sales_source_names),
        sink,
        clock=lambda: RECEIVED,
        connected=lambda: sink.connected,
        **options,
    )


@contextlib.asynccontextmanager
async def serving(
    collector: Collector, *, ops: bool = False
) -> AsyncIterator[TestClient[Any, Any]]:
    """The public ingest port's app, or with `ops` the metrics port's."""
    server = TestServer(ops_application(collector) if ops else public_application(collector))
    await server.start_server(**RUNNER_OPTIONS)  # as serve() runs it; see the module doc
    client = TestClient(server)
    await client.start_server()  # already started: uses the server as it is
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


@pytest.fixture
async def client(sink: MemorySink) -> AsyncIterator[TestClient[Any, Any]]:
    async with serving(collector_of(settings(), sink)) as client:
        yield client


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


WEB = basic(WEB_KEY)


def track(i: int, **fields: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Demo Requested", "messageId": f"m-{i}", **fields}


def subject_fields(i: int) -> dict[str, Any]:
    """Every third message anonymous only, every third both ids, the rest a lead id."""
    if i % 3 == 0:
        return {"anonymousId": f"anon-{i}"}
    if i % 3 == 1:
        return {"userId": f"lead-{i}", "anonymousId": f"anon-{i}"}
    return {"userId": f"lead-{i}"}


def expected_key(i: int) -> str:
    return f"anon-{i}" if i % 3 == 0 else f"lead-{i}"


async def post(
    client: TestClient[Any, Any],
    path: str,
    document: object = None,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, aiohttp.ClientResponse]:
    body = data if data is not None else json.dumps(document).encode()
    async with client.post(path, data=body, headers=headers) as response:
        text = await response.text()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return response.status, without_error_code(response.status, parsed), response


def without_error_code(status: int, body: Any) -> Any:
    """The body after checking the `code` and `message` every error answer carries (the SDKs
    read them: rudder-sdk-python retries an error without `code`), for the tests to compare."""
    if status < 400 or not isinstance(body, dict):
        return body
    rest = dict(body)
    assert rest.pop("code") == ERROR_CODES[status], body
    message = rest.pop("message")
    assert message == rest.get("error", "message rejected: see rejected"), body
    return rest


def stored(sink: MemorySink, topic: str) -> list[Any]:
    return [m for m in sink.messages if m.topic == topic]


def events(sink: MemorySink) -> list[BehaviorEvent]:
    return [decode_event(m.value) for m in stored(sink, EVENTS)]


def letters(sink: MemorySink) -> list[DeadLetter]:
    return [decode_dead_letter(m.value) for m in stored(sink, DLQ)]


# -- accepted and rejected messages ------------------------------------------------------------


async def test_a_good_batch_of_100_is_200_with_100_events(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    batch = [track(i, **subject_fields(i)) for i in range(100)]
    status, body, _ = await post(client, "/v1/batch", {"batch": batch}, headers=WEB)
    assert (status, body) == (200, {"success": True, "accepted": 100})
    out = stored(sink, EVENTS)
    assert len(out) == len(sink.messages) == 100
    assert [m.key for m in out] == [expected_key(i) for i in range(100)]
    decoded = events(sink)
    assert [e.event_id for e in decoded] == [f"m-{i}" for i in range(100)]
    assert all(e.type == "demo_request" and e.occurred_at == RECEIVED for e in decoded)
    for i, event in enumerate(decoded):
        assert event.subject == expected_key(i)
        assert event.lead_id == (None if i % 3 == 0 else f"lead-{i}")


# (message, first error of its reject)
BAD: list[tuple[dict[str, Any], str]] = [
    ({"type": "track", "event": "x"}, "message: needs a userId or an anonymousId"),
    ({"type": "track", "userId": "u"}, "event: missing"),
    ({"type": "merge", "userId": "u"}, "type: unknown type 'merge'"),
    ({"type": "track", "event": "x", "userId": ["u"]}, "userId: expected a string"),
    ({"type": "track", "event": "x", "userId": "u", "timestamp": "now"}, "timestamp: 'now'"),
    ({"type": "group", "userId": "u"}, "groupId: required"),
    ({"type": "alias", "userId": "u"}, "previousId: required"),
    ({"type": "track", "event": "Sales Qualified", "userId": "u"}, "event: 'Sales Qualified'"),
    ({"type": "track", "event": "x", "userId": "u", "properties": "p"}, "properties: expected"),
    ({"type": "track", "event": "x", "userId": "u" * 200}, "userId: longer than 128"),
]
BAD_AT = [3, 7, 15, 22, 41, 50, 66, 78, 90, 99]


async def test_10_bad_of_100_are_listed_and_dead_lettered(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    batch: list[dict[str, Any]] = [track(i, **subject_fields(i)) for i in range(100)]
    for at, (message, _) in zip(BAD_AT, BAD, strict=True):
        batch[at] = {**message, "messageId": f"bad-{at}"}
    document = {"batch": batch, "context": {"ip": "10.0.0.1"}}
    status, body, _ = await post(client, "/v1/batch", document, headers=WEB)
    assert status == 200
    assert body["success"] is True
    assert body["accepted"] == 90
    assert [r["index"] for r in body["rejected"]] == BAD_AT
    assert [r["messageId"] for r in body["rejected"]] == [f"bad-{at}" for at in BAD_AT]
    for reject, (_, reason) in zip(body["rejected"], BAD, strict=True):
        assert reject["errors"][0].startswith(reason), reject
    assert set(body) == {"success", "accepted", "rejected"}

    good = [i for i in range(100) if i not in BAD_AT]
    assert [e.event_id for e in events(sink)] == [f"m-{i}" for i in good]
    assert [m.key for m in stored(sink, EVENTS)] == [expected_key(i) for i in good]
    dead = letters(sink)
    assert len(dead) == 10
    assert [m.key for m in stored(sink, DLQ)] == [f"bad-{at}" for at in BAD_AT]
    for letter, reject, at in zip(dead, body["rejected"], BAD_AT, strict=True):
        assert letter.source_topic == "collector:website"
        assert (letter.source_partition, letter.source_offset) == (-1, -1)
        assert letter.errors == reject["errors"]
        assert letter.reason == "; ".join(reject["errors"])
        assert letter.failed_at == RECEIVED
        assert not letter.truncated
        # the message as received, batch context merged in
        assert json.loads(original_payload(letter)) == {**batch[at], "context": {"ip": "10.0.0.1"}}


async def test_an_invalid_single_call_is_400_and_dead_lettered(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    status, body, _ = await post(client, "/v1/track", {"userId": "u"}, headers=WEB)
    assert status == 400
    assert body == {
        "success": False,
        "accepted": 0,
        "rejected": [
            {
                "index": 0,
                "messageId": None,
                "errors": ["event: missing (a track call names its event)"],
            }
        ],
    }
    assert not stored(sink, EVENTS)
    [letter] = letters(sink)
    assert letter.source_topic == "collector:website"
    assert json.loads(original_payload(letter)) == {"userId": "u", "type": "track"}
    assert stored(sink, DLQ)[0].key == "website"  # no messageId: the source names the letter


async def test_a_rejected_message_id_with_a_lone_surrogate_still_names_its_letter(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    """The letter's Kafka key is the messageId, and a Kafka key must be UTF-8."""
    batch = [{"type": "track", "userId": "u", "messageId": "m-\ud800"}]
    status, body, _ = await post(client, "/v1/batch", {"batch": batch}, headers=WEB)
    assert status == 200
    assert body["rejected"][0]["messageId"] == "m-\ud800"  # as sent, in the answer
    [message] = stored(sink, DLQ)
    assert message.key == "m-?"
    [letter] = letters(sink)
    assert letter.errors == ["event: missing (a track call names its event)"]


# -- endpoints ---------------------------------------------------------------------------------

# (call type, fields of a valid message, leadpulse type)
VALID: dict[str, tuple[dict[str, Any], str]] = {
    "track": ({"event": "Demo Requested"}, "demo_request"),
    "identify": ({"traits": {"title": "CTO"}}, "identify"),
    "page": ({"name": "Pricing"}, "page_view"),
    "screen": ({"name": "Home"}, "page_view"),
    "group": ({"groupId": "acme"}, "group"),
    "alias": ({"previousId": "anon-1"}, "identify"),
}
CALL_URLS = [f"{prefix}/{name}" for name in sorted(CALL_PATHS) for prefix in ("/v1", "")]


@pytest.mark.parametrize("path", CALL_URLS)
async def test_every_call_endpoint(
    client: TestClient[Any, Any], sink: MemorySink, path: str
) -> None:
    call = CALL_PATHS[path.rsplit("/", 1)[1]]
    fields, kind = VALID[call]
    document = {"userId": "lead-1", "messageId": "m-1", **fields}
    status, body, _ = await post(client, path, document, headers=WEB)
    assert (status, body) == (200, {"success": True, "accepted": 1})
    [event] = events(sink)
    assert (event.type, event.event_id, event.lead_id) == (kind, "m-1", "lead-1")


@pytest.mark.parametrize("path", [f"{p}/{n}" for n in sorted(BATCH_PATHS) for p in ("/v1", "")])
async def test_every_batch_endpoint(
    client: TestClient[Any, Any], sink: MemorySink, path: str
) -> None:
    batch = [
        {"type": call, "userId": "lead-1", "messageId": f"m-{call}", **fields}
        for call, (fields, _) in VALID.items()
    ]
    status, body, _ = await post(client, path, {"batch": batch}, headers=WEB)
    assert (status, body) == (200, {"success": True, "accepted": len(VALID)})
    assert [e.type for e in events(sink)] == [kind for _, kind in VALID.values()]


@pytest.mark.parametrize("path", ["/v1/nope", "/nope", "/v1/Track", "/v1/health", "/v1"])
async def test_unknown_endpoints_are_404(
    client: TestClient[Any, Any], sink: MemorySink, path: str
) -> None:
    status, body, _ = await post(client, path, track(1, userId="u"), headers=WEB)
    name = path.rsplit("/", 1)[1]
    assert (status, body) == (404, {"success": False, "error": f"no endpoint /{name}"})
    assert not sink.messages


@pytest.mark.parametrize("path", ["/v2/track", "/v1/batch/extra", "/", "/v1/"])
async def test_paths_outside_the_api_are_404(client: TestClient[Any, Any], path: str) -> None:
    status, _, _ = await post(client, path, track(1, userId="u"), headers=WEB)
    assert status == 404
    async with client.options(path, headers={"Origin": "https://site.io", **PREFLIGHT}) as answer:
        assert answer.status == 404
        assert "Access-Control-Allow-Origin" not in answer.headers


async def test_get_of_an_endpoint_is_405(client: TestClient[Any, Any]) -> None:
    async with client.get("/v1/track") as response:
        assert response.status == 405


# -- write keys --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        basic("wk_nobody_0123456789abcdef0"),
        basic(WEB_KEY + "x"),
        basic(WEB_KEY.upper()),
    ],
    ids=["unknown", "one character more", "capitals"],
)
async def test_a_bad_basic_key_is_401_without_detail(
    client: TestClient[Any, Any], sink: MemorySink, headers: dict[str, str]
) -> None:
    # even with a good key in the body: the header is what was presented
    document = {**track(1, userId="u"), "writeKey": WEB_KEY}
    status, body, _ = await post(client, "/v1/track", document, headers=headers)
    assert (status, body) == (401, UNAUTHORIZED)
    assert not sink.messages


# (case, document, headers)
NO_KEY: list[tuple[str, object, dict[str, str]]] = [
    ("no key at all", track(1, userId="u"), {}),
    ("an unknown key in the body", {**track(1, userId="u"), "writeKey": "wk_x" * 5}, {}),
    ("an empty key in the body", {**track(1, userId="u"), "writeKey": ""}, {}),
    ("a lone surrogate key in the body", {**track(1, userId="u"), "writeKey": "\ud800"}, {}),
    ("a list key in the items", {"batch": [{**track(1), "writeKey": [WEB_KEY]}]}, {}),
    ("items with two keys", {"batch": [{"writeKey": WEB_KEY}, {"writeKey": SALES_KEY}]}, {}),
    ("an unreadable header, no body key", track(1, userId="u"), {"Authorization": "Basic !"}),
    ("another scheme", track(1, userId="u"), {"Authorization": f"Bearer {WEB_KEY}"}),
]


@pytest.mark.parametrize(("case", "document", "headers"), NO_KEY, ids=[n[0] for n in NO_KEY])
async def test_a_missing_or_unknown_key_is_401(
    client: TestClient[Any, Any],
    sink: MemorySink,
    case: str,
    document: object,
    headers: dict[str, str],
) -> None:
    path = "/v1/batch" if isinstance(document, dict) and "batch" in document else "/v1/track"
    status, body, _ = await post(client, path, document, headers=headers)
    assert (status, body) == (401, UNAUTHORIZED)
    assert not sink.messages


async def test_the_401_comes_before_the_body_is_read(client: TestClient[Any, Any]) -> None:
    headers = {**basic("wk_nobody_0123456789abcdef0"), "Content-Encoding": "br"}
    status, body, _ = await post(client, "/v1/track", data=b"\xff" * 100, headers=headers)
    assert (status, body) == (401, UNAUTHORIZED)


@pytest.mark.parametrize(
    ("case", "document"),
    [
        ("top level", {**track(1, userId="u"), "writeKey": WEB_KEY}),
        ("every item", {"batch": [{**track(1, userId="u"), "writeKey": WEB_KEY}]}),
    ],
)
async def test_a_key_in_the_body_is_enough(
    client: TestClient[Any, Any], sink: MemorySink, case: str, document: dict[str, Any]
) -> None:
    path = "/v1/batch" if "batch" in document else "/v1/track"
    status, body, _ = await post(client, path, document, headers={"Content-Type": "text/plain"})
    assert (status, body) == (200, {"success": True, "accepted": 1})
    assert len(events(sink)) == 1


async def test_an_unreadable_basic_header_falls_back_to_the_body_key(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    document = {**track(1, userId="u"), "writeKey": WEB_KEY}
    headers = {"Authorization": "Basic %%%"}
    status, _, _ = await post(client, "/v1/track", document, headers=headers)
    assert status == 200
    assert len(events(sink)) == 1


@pytest.mark.parametrize(
    ("header_key", "body_key", "accepted"),
    [(SALES_KEY, WEB_KEY, True), (WEB_KEY, SALES_KEY, False), (SALES_KEY, "wk_nobody" * 3, True)],
    ids=["sales header, website body", "website header, sales body", "sales header, unknown body"],
)
async def test_basic_wins_over_the_body_key(
    client: TestClient[Any, Any],
    sink: MemorySink,
    header_key: str,
    body_key: str,
    accepted: bool,
) -> None:
    """A sales-only event shows whose key counted: only the sales source may send it."""
    document = {"batch": [track(1, event="Sales Qualified", userId="u")], "writeKey": body_key}
    status, body, _ = await post(client, "/v1/batch", document, headers=basic(header_key))
    assert status == 200
    assert body["accepted"] == int(accepted)
    if accepted:
        assert [e.type for e in events(sink)] == ["sales_qualified"]
    else:
        [letter] = letters(sink)
        assert letter.source_topic == "collector:website"


# -- bodies ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/json",
        "application/x-www-form-urlencoded",
        "application/octet-stream",
        None,
    ],
)
async def test_the_content_type_is_not_trusted(
    client: TestClient[Any, Any], sink: MemorySink, content_type: str | None
) -> None:
    """analytics.js posts JSON as text/plain (no CORS preflight), the key in the body."""
    document = {**track(1, anonymousId="anon-1"), "writeKey": WEB_KEY}
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, body, _ = await post(client, "/t", document, headers=headers)
    assert (status, body) == (200, {"success": True, "accepted": 1})
    assert [m.key for m in stored(sink, EVENTS)] == ["anon-1"]


@pytest.mark.parametrize("encoding", ["gzip", "x-gzip", "GZip"])
async def test_a_gzip_body_is_accepted(
    client: TestClient[Any, Any], sink: MemorySink, encoding: str
) -> None:
    batch = [track(i, **subject_fields(i)) for i in range(50)]
    data = gzip.compress(json.dumps({"batch": batch}).encode())
    headers = {**WEB, "Content-Encoding": encoding}
    status, body, _ = await post(client, "/v1/batch", data=data, headers=headers)
    assert (status, body) == (200, {"success": True, "accepted": 50})
    assert len(events(sink)) == 50


async def test_a_gzip_body_under_the_limit_compressed_but_over_it_inflated_is_413(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    batch = [track(i, userId="u", properties={"pad": "x" * 1000}) for i in range(100)]
    raw = json.dumps({"batch": batch}).encode()
    data = gzip.compress(raw)
    assert len(data) < 64 * 1024 < len(raw)
    headers = {**WEB, "Content-Encoding": "gzip"}
    status, body, _ = await post(client, "/v1/batch", data=data, headers=headers)
    assert status == 413
    assert body == {
        "success": False,
        "error": f"body larger than {64 * 1024} bytes once decompressed",
    }
    assert not sink.messages


def gzip_bomb() -> bytes:
    return gzip.compress(bytes(10 * 1024 * 1024), compresslevel=9)  # 10 MB in ~10 KB


async def test_a_gzip_bomb_is_413(client: TestClient[Any, Any], sink: MemorySink) -> None:
    headers = {**WEB, "Content-Encoding": "gzip"}
    status, body, _ = await post(client, "/v1/batch", data=gzip_bomb(), headers=headers)
    assert status == 413
    assert "once decompressed" in body["error"]
    assert not sink.messages


# (case, body bytes, headers, status)
UNREADABLE: list[tuple[str, bytes, dict[str, str], int]] = [
    ("malformed JSON", b'{"batch": [', {}, 400),
    ("empty body", b"", {}, 400),
    ("not UTF-8", b'{"userId": "\xff"}', {}, 400),
    ("UTF-16", json.dumps(track(1, userId="u")).encode("utf-16"), {}, 400),
    ("nested too deeply", b"[" * 5000 + b"]" * 5000, {}, 400),
    ("nested past the recursion limit", b"[" * 30_000, {}, 400),
    ("a JSON list", b"[]", {}, 400),
    ("truncated gzip", gzip.compress(b'{"userId": "u"}')[:-5], {"Content-Encoding": "gzip"}, 400),
    ("not gzip", b'{"userId": "u"}', {"Content-Encoding": "gzip"}, 400),
    ("deflate", b"x", {"Content-Encoding": "deflate"}, 415),
    ("brotli", b"x", {"Content-Encoding": "br"}, 415),
]


@pytest.mark.parametrize(
    ("case", "data", "headers", "status"), UNREADABLE, ids=[u[0] for u in UNREADABLE]
)
async def test_unreadable_bodies(
    client: TestClient[Any, Any],
    sink: MemorySink,
    case: str,
    data: bytes,
    headers: dict[str, str],
    status: int,
) -> None:
    got, body, _ = await post(client, "/v1/track", data=data, headers={**WEB, **headers})
    assert got == status
    assert body["success"] is False
    assert isinstance(body["error"], str)
    assert body["error"]
    assert not sink.messages


async def test_413_by_content_length(client: TestClient[Any, Any], sink: MemorySink) -> None:
    data = json.dumps({"batch": [track(1, userId="u", properties={"p": "x" * 70_000})]})
    status, body, _ = await post(client, "/v1/batch", data=data.encode(), headers=WEB)
    assert (status, body) == (
        413,
        {"success": False, "error": f"body larger than {64 * 1024} bytes"},
    )
    assert not sink.messages


async def test_a_body_at_the_limit_is_read(client: TestClient[Any, Any], sink: MemorySink) -> None:
    document = {"batch": [track(1, userId="u")], "pad": ""}
    size = len(json.dumps(document).encode())
    document["pad"] = "x" * (64 * 1024 - size)
    data = json.dumps(document).encode()
    assert len(data) == 64 * 1024
    status, _, _ = await post(client, "/v1/batch", data=data, headers=WEB)
    assert status == 200
    status, _, _ = await post(client, "/v1/batch", data=data + b" ", headers=WEB)
    assert status == 413


async def raw_request(client: TestClient[Any, Any], head: str, chunks: list[bytes]) -> bytes:
    """Send bytes as they are (aiohttp's client would fix headers up); the whole answer."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    try:
        writer.write(head.encode("utf-8", "surrogateescape"))
        for chunk in chunks:
            writer.write(chunk)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def status_and_body(answer: bytes) -> tuple[int, Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, without_error_code(status, json.loads(body))


async def test_413_for_a_chunked_body_without_content_length(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    head = (
        "POST /v1/batch HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n"
        f"Authorization: {WEB['Authorization']}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    document = json.dumps({"batch": [track(1, userId="u")], "pad": "x" * 100_000}).encode()
    chunks = [
        f"{len(part):x}\r\n".encode() + part + b"\r\n"
        for part in (document[i : i + 8192] for i in range(0, len(document), 8192))
    ]
    answer = await raw_request(client, head, [*chunks, b"0\r\n\r\n"])
    assert status_and_body(answer) == (
        413,
        {"success": False, "error": f"body larger than {64 * 1024} bytes"},
    )
    assert b"content-length" not in head.lower().encode()
    assert not sink.messages


async def test_a_chunked_body_under_the_limit_is_read(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    async def parts() -> AsyncIterator[bytes]:
        data = json.dumps({"batch": [track(i, userId="u") for i in range(20)]}).encode()
        for i in range(0, len(data), 100):
            yield data[i : i + 100]

    async with client.post("/v1/batch", data=parts(), headers=WEB) as response:
        assert response.request_info.headers.get("Transfer-Encoding") == "chunked"
        assert "Content-Length" not in response.request_info.headers
        assert response.status == 200
        assert await response.json() == {"success": True, "accepted": 20}


@pytest.mark.parametrize(
    "authorization",
    ["Basic d2tf\u00e9c2l0ZTo=", "Basic \udcff\udcfe", "B\u00e4sic x"],
    ids=["non-ASCII", "invalid UTF-8 bytes", "non-ASCII scheme"],
)
async def test_a_non_ascii_authorization_header_is_401_not_500(
    client: TestClient[Any, Any], authorization: str
) -> None:
    body = json.dumps(track(1, userId="u")).encode()
    head = (
        "POST /v1/track HTTP/1.1\r\nHost: collector\r\nConnection: close\r\n"
        f"Authorization: {authorization}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    answer = await raw_request(client, head, [body])
    assert status_and_body(answer) == (401, UNAUTHORIZED)


async def test_batch_count_over_the_limit_is_413(sink: MemorySink) -> None:
    async with serving(collector_of(settings(collector_max_batch_messages=5), sink)) as client:
        batch = [track(i, userId="u") for i in range(6)]
        status, body, _ = await post(client, "/v1/batch", {"batch": batch}, headers=WEB)
        assert (status, body) == (413, {"success": False, "error": "batch: 6 messages, at most 5"})
        status, body, _ = await post(client, "/v1/batch", {"batch": batch[:5]}, headers=WEB)
        assert (status, body) == (200, {"success": True, "accepted": 5})


async def test_a_message_over_its_limit_is_rejected_alone(sink: MemorySink) -> None:
    config = settings(collector_max_message_bytes=1024)
    async with serving(collector_of(config, sink)) as client:
        big = track(1, userId="u", properties={"p": "x" * 2000})
        batch = [track(0, userId="u"), big]
        status, body, _ = await post(client, "/v1/batch", {"batch": batch}, headers=WEB)
        assert status == 200
        assert body["accepted"] == 1
        [reject] = body["rejected"]
        assert reject["index"] == 1
        assert reject["errors"][0].endswith("bytes, more than 1024")
        # a single call's body is the message: over the limit it is a 413, never read whole
        status, body, _ = await post(client, "/v1/track", big, headers=WEB)
        assert (status, body) == (413, {"success": False, "error": "body larger than 1024 bytes"})


# -- the broker away ---------------------------------------------------------------------------


async def test_503_with_retry_after_while_the_sink_is_unavailable(
    client: TestClient[Any, Any], sink: MemorySink
) -> None:
    sink.unavailable = True
    document = {"batch": [track(1, userId="u"), {"type": "nope"}]}
    status, body, response = await post(client, "/v1/batch", document, headers=WEB)
    assert status == 503
    assert body == {"success": False, "error": "event store unavailable, retry later"}
    assert response.headers["Retry-After"] == "5"
    assert not sink.messages  # neither the event nor the letter
    async with client.get("/health") as health:
        assert await health.json() == {"status": "ok", "broker": "unreachable"}

    sink.unavailable = False
    status, body, _ = await post(client, "/v1/batch", document, headers=WEB)
    assert status == 200
    assert body["accepted"] == 1
    assert len(stored(sink, EVENTS)) == len(stored(sink, DLQ)) == 1


async def test_health_on_both_ports_stats_and_metrics_on_the_metrics_port_only(
    sink: MemorySink,
) -> None:
    collector = collector_of(settings(), sink)
    async with serving(collector) as client, serving(collector, ops=True) as ops:
        for each in (client, ops):
            async with each.get("/health") as response:
                assert (response.status, await response.json()) == (
                    200,
                    {"status": "ok", "broker": "connected"},
                )
            async with each.get("/ready") as response:
                assert response.status == 200
        await post(client, "/v1/batch", {"batch": [track(1, userId="u"), {}]}, headers=WEB)
        await post(client, "/v1/track", {}, headers={})
        async with ops.get("/stats") as response:  # answers of the API only, not the probes
            assert await response.json() == {
                "accepted": 1,
                "rejected": 1,
                "status_200": 1,
                "status_401": 1,
            }
        async with ops.get("/metrics") as response:
            assert response.status == 200
            assert "leadpulse_collector_events_accepted_total 1.0" in await response.text()
        # the public port: the Segment API, /health and /ready, nothing else
        for path in ("/stats", "/metrics"):  # only a POST of an API endpoint's name
            async with client.get(path) as response:
                assert response.status == 405, path
                assert response.headers["Allow"] == "OPTIONS,POST"
        # and the metrics port takes no events
        async with ops.post("/v1/batch", data=b"{}", headers=WEB) as response:
            assert response.status in (404, 405)


def test_the_public_port_routes_the_segment_api_health_and_ready_only(sink: MemorySink) -> None:
    collector = collector_of(settings(), sink)

    def routes(app: web.Application) -> set[tuple[str, str]]:
        return {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}

    api = {
        (method, path)
        for method in ("POST", "OPTIONS")
        for path in ("/v1/{endpoint}", "/{endpoint}")
    }
    probes = {(method, path) for method in ("GET", "HEAD") for path in ("/health", "/ready")}
    assert routes(public_application(collector)) == api | probes
    ops = {(method, path) for method in ("GET", "HEAD") for path in ("/metrics", "/stats")}
    assert routes(ops_application(collector)) == probes | ops


# -- CORS --------------------------------------------------------------------------------------

PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type,authorization",
}


@pytest.mark.parametrize(
    ("origins", "origin", "allowed"),
    [
        ("*", "https://site.io", True),
        ("*", "http://localhost:3000", True),
        ("https://a.io,https://b.io", "https://a.io", True),
        ("https://a.io, https://b.io", "https://b.io", True),
        ("https://a.io,https://b.io", "https://c.io", False),
        ("https://a.io,https://b.io", "https://a.io.evil.io", False),
        ("https://a.io,https://b.io", "http://a.io", False),
        ("https://a.io", "null", False),
        ("", "https://a.io", False),
    ],
)
async def test_cors_preflight(sink: MemorySink, origins: str, origin: str, allowed: bool) -> None:
    async with serving(collector_of(settings(collector_cors_origins=origins), sink)) as client:
        headers = {"Origin": origin, **PREFLIGHT}
        async with client.options("/v1/batch", headers=headers) as response:
            assert response.status == 204
            cors = {k: v for k, v in response.headers.items() if k.startswith("Access-Control")}
            if allowed:
                assert cors == {
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": "POST, OPTIONS",
                    "Access-Control-Allow-Headers": "content-type,authorization",
                    "Access-Control-Max-Age": "86400",
                    "Access-Control-Expose-Headers": "Retry-After",
                }
                assert response.headers["Vary"] == "Origin"
            else:
                assert cors == {}
        # the answer to the post itself, success or not, carries the origin too
        for document, status in ((track(1, userId="u"), 200), ({}, 401)):
            headers = {"Origin": origin, **(WEB if status == 200 else {})}
            got, _, response = await post(client, "/v1/track", document, headers=headers)
            assert got == status
            assert response.headers.get("Access-Control-Allow-Origin") == (
                origin if allowed else None
            )
            assert "Access-Control-Allow-Methods" not in response.headers


async def test_cors_preflight_without_requested_headers_lists_the_collectors(
    client: TestClient[Any, Any],
) -> None:
    headers = {"Origin": "https://site.io", "Access-Control-Request-Method": "POST"}
    async with client.options("/t", headers=headers) as response:
        assert response.status == 204
        allowed = response.headers["Access-Control-Allow-Headers"]
        assert allowed == "Content-Type, Authorization, Content-Encoding, X-Retry-Count"


async def test_no_origin_no_cors_headers(client: TestClient[Any, Any]) -> None:
    async with client.options("/v1/batch", headers=PREFLIGHT) as response:
        assert response.status == 204
        assert not [k for k in response.headers if k.startswith("Access-Control")]


# -- as `serve` runs it ------------------------------------------------------------------------


async def test_serve_refuses_a_gzip_bomb_and_takes_gzip(sink: MemorySink) -> None:
    """The production entry point, on a real port: the same answers as the test server."""
    port = free_port()
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(
        serve(collector_of(settings(), sink), "127.0.0.1", port, stop, started.set)
    )
    try:
        await asyncio.wait_for(started.wait(), 10)
        url = f"http://127.0.0.1:{port}/v1/batch"
        headers = {**WEB, "Content-Encoding": "gzip"}
        async with aiohttp.ClientSession() as session:
            async with session.post(url, data=gzip_bomb(), headers=headers) as response:
                assert response.status == 413
                assert "once decompressed" in (await response.json())["error"]
            data = gzip.compress(json.dumps({"batch": [track(1, userId="u")]}).encode())
            async with session.post(url, data=data, headers=headers) as response:
                assert (response.status, await response.json()) == (
                    200,
                    {"success": True, "accepted": 1},
                )
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
    assert len(events(sink)) == 1
