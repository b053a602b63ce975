"""Fuzz campaign of the collector: 5,000 random requests over HTTP, then 300 into Kafka.

Hypothesis draws whole requests: a path (every endpoint, and some that are
none), an ``Authorization`` header (the write keys, unknown keys, garbage),
``Content-Type`` and ``Content-Encoding`` (gzip or not, and codings that are
not supported), and a body biased toward Segment shapes: batches and single
calls of every type, ids of odd types, times at the ends of the calendar,
lone surrogates, NaN, huge and deeply nested values, sales-only events, body
write keys; and also random JSON, random bytes, truncated or corrupted text,
gzip bombs, chunked uploads. The collector runs as `serve` runs it
(`RUNNER_OPTIONS`), with small limits so that every limit is reached often.

Checked for every request: no 5xx (the sink is never made unavailable, so
not even the deliberate 503), a JSON answer from the collector, and exactly
what the answer says was stored: a 200's ``accepted`` events and one dead
letter per listed reject, a 400 of a single call one letter, nothing for any
other answer; every stored event decodes with `decode_event` under the key
of its subject, every letter with `decode_dead_letter`. Against Kafka, the
topics then hold exactly what the sink acknowledged.

Reproducible: ``derandomize=True`` and no example database, so every run
draws the same requests.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import gzip
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaConsumer

from leadpulse.schemas import decode_dead_letter, decode_event
from leadpulse.schemas.segment import SUPPORTED_TYPES
from leadpulse.streams.collector.app import RUNNER_OPTIONS, Collector, CollectorConfig
from leadpulse.streams.collector.auth import WriteKeys
from leadpulse.streams.collector.intake import BATCH_PATHS, CALL_PATHS
from leadpulse.streams.collector.sink import KafkaSink, MemorySink
from leadpulse.streams.dev.devstack import DevStack, create_topics
from leadpulse.streams.kafka.publisher import Outgoing
from leadpulse.streams.processes.collector import public_application
from leadpulse.streams.settings import Settings

REQUESTS = int(os.environ.get("LEADPULSE_COLLECTOR_FUZZ_REQUESTS", "5000"))
KAFKA_REQUESTS = REQUESTS * 3 // 50
WEB_KEY = "wk_website_0123456789abcdef"
SALES_KEY = "wk_salesforce_0123456789abc"
MAX_BODY = 48 * 1024
MAX_MESSAGE = 8 * 1024
MAX_BATCH = 40
RECEIVED = datetime(2026, 11, 22, 10, 0, 30, tzinfo=UTC)

CAMPAIGN = settings(
    max_examples=REQUESTS,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=False,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# -- values ------------------------------------------------------------------------------------


def weighted(*choices: tuple[int, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """One of the strategies, in proportion to its weight (`st.one_of` removes repeats)."""
    return st.sampled_from([s for weight, s in choices for _ in range(weight)]).flatmap(
        lambda strategy: strategy
    )


SURROGATES = st.sampled_from(["\ud800", "a\udc80b", "\udfff", "\ud83d", "x\ud800\udc00"])
"""Lone surrogates (the last is a pair once written as JSON escapes, two lone ones raw)."""
text = st.text(max_size=24)
odd_text = st.one_of(
    SURROGATES,
    st.text(st.characters(codec="ascii", categories=["Cc"]), min_size=1, max_size=4),
    st.sampled_from(["", " ", "null", "日本", "Café", "🙂", "a" * 129, "x" * 5000]),
)
good_id = st.builds(
    "{}-{}".format, st.sampled_from(["lead", "anon", "acct", "u", "crm"]), st.integers(0, 999)
)
odd_id = st.one_of(
    odd_text,
    st.integers(),
    st.integers(min_value=10**100, max_value=10**300),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(text, st.integers(), max_size=2),
)
ids = weighted((3, good_id), (1, odd_id))

offsets = st.builds(
    timezone,
    st.timedeltas(
        min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59)
    ),
)
near = st.datetimes(datetime(2026, 11, 1), datetime(2026, 12, 31), timezones=st.just(UTC))
anywhen = st.datetimes(timezones=offsets)
times = weighted(
    (4, near.map(datetime.isoformat)),
    (1, anywhen.map(datetime.isoformat)),
    (1, st.datetimes().map(datetime.isoformat)),  # naive
    (
        1,
        st.sampled_from(
            [
                "9999-12-31T23:59:59.999999-23:59",
                "0001-01-01T00:00:00+23:59",
                "2026-11-22",
                "now",
                "",
                "2026-11-22T10:00:00.123456789Z",
                "x" * 100,
            ]
        ),
    ),
    (1, st.integers() | st.none()),
)

keys = st.one_of(text, st.sampled_from(["", "context", "url", "k" * 200, "\ud800", "__proto__"]))
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**50, max_value=10**1000),
    st.floats(allow_nan=True, allow_infinity=True),
    text,
    odd_text,
)


def nest(depth: int, leaf: object = 1) -> object:
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"n": value}
    return value


json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=5),
    max_leaves=10,
)
big_values = st.one_of(
    st.integers(min_value=1, max_value=120).map(nest),
    st.integers(min_value=500, max_value=6000).map(lambda n: "x" * n),
    st.integers(min_value=100, max_value=2000).map(lambda n: "é日" * n),
    st.integers(min_value=50, max_value=400).map(lambda n: list(range(n))),
    st.integers(min_value=50, max_value=400).map(lambda n: {f"k{i}": i for i in range(n)}),
)
values = weighted((3, json_values), (1, big_values))
objects = st.one_of(st.dictionaries(keys, values, max_size=6), values)
contexts = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "ip": st.one_of(st.just("10.0.0.1"), scalars),
            "userAgent": st.one_of(st.just("Mozilla/5.0"), scalars, big_values),
            "page": st.fixed_dictionaries(
                {}, optional={"url": scalars, "referrer": scalars, "path": scalars}
            )
            | values,
            "campaign": st.dictionaries(
                st.sampled_from(["name", "source", "medium", "term", "content", "x"]), scalars
            )
            | values,
            "traits": objects,
            "library": values,
        },
    ),
    values,
)
event_names = st.one_of(
    st.sampled_from(
        [
            "Demo Requested",
            "Signed Up",
            "Page Viewed",
            "Sales Qualified",
            "sales_rejected",
            "Identify",
            "Group",
            "404 Seen",
            "日本",
            "",
            "e" * 80,
        ]
    ),
    text,
    odd_id,
)


# -- messages and documents --------------------------------------------------------------------

OPTIONAL: dict[str, st.SearchStrategy[Any]] = {
    "anonymousId": ids,
    "timestamp": times,
    "originalTimestamp": times,
    "sentAt": times,
    "properties": objects,
    "traits": objects,
    "context": contexts,
    "integrations": values,
    "name": st.one_of(text, scalars),
    "category": st.one_of(text, scalars),
    "receivedAt": times,
    "writeKey": st.sampled_from([WEB_KEY, SALES_KEY, "wk_wrong_0123456789abcdef"]),
    "extra": values,
}
REQUIRED: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "track": {"event": event_names},
    "group": {"groupId": ids},
    "alias": {"previousId": ids},
}
sound = st.sampled_from(SUPPORTED_TYPES).flatmap(
    lambda call: st.fixed_dictionaries(
        {"type": st.just(call), "userId": ids, "messageId": ids, **REQUIRED.get(call, {})},
        optional=OPTIONAL,
    )
)
anything = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(st.sampled_from([*SUPPORTED_TYPES, "Track", "merge", "batch"]), odd_id),
        "event": event_names,
        "userId": ids,
        "messageId": ids,
        "previousId": ids,
        "groupId": ids,
        **OPTIONAL,
    },
)
plain = st.one_of(st.none(), st.booleans(), st.integers(-1000, 1000), st.text(max_size=12))
clean = st.sampled_from(SUPPORTED_TYPES).flatmap(
    lambda call: st.fixed_dictionaries(
        {
            "type": st.just(call),
            "messageId": good_id,
            **{
                "track": {"event": st.sampled_from(["Demo Requested", "Signed Up", "Clicked"])},
                "group": {"groupId": good_id},
                "alias": {"previousId": good_id},
            }.get(call, {}),
        },
        optional={
            "userId": good_id,
            "anonymousId": good_id,
            "timestamp": near.map(datetime.isoformat),
            "properties": st.dictionaries(st.text(min_size=1, max_size=8), plain, max_size=4),
            "traits": st.dictionaries(st.text(min_size=1, max_size=8), plain, max_size=4),
            "context": st.fixed_dictionaries({}, optional={"ip": st.just("10.0.0.1")}),
        },
    ).map(lambda m: m if "userId" in m or "anonymousId" in m else {**m, "userId": "lead-1"})
)
"""Messages that map (mostly), so that a good share of the requests store events."""
messages = weighted((6, clean), (2, sound), (1, anything), (1, values))


@st.composite
def documents(draw: st.DrawFn, batch: bool) -> tuple[object, int | None]:
    """A body's document, and how many messages it carries (None: not a Segment shape)."""
    if draw(st.integers(0, 19)) == 0:
        return draw(values), None
    if not batch:
        message = draw(messages)
        return message, 1 if isinstance(message, dict) else None
    size = draw(
        weighted(
            (6, st.integers(0, 8)),
            (1, st.integers(0, MAX_BATCH)),
            (1, st.integers(MAX_BATCH + 1, MAX_BATCH + 5)),  # 413
        )
    )
    distinct = draw(st.lists(messages, min_size=min(size, 1), max_size=min(size, 8)))
    items = [distinct[i % len(distinct)] for i in range(size)]  # a large batch repeats a few
    document = draw(
        st.fixed_dictionaries(
            {"batch": st.just(items)},
            optional={
                "context": contexts,
                "integrations": values,
                "sentAt": times,
                "writeKey": st.sampled_from([WEB_KEY, SALES_KEY, "wk_wrong_0123456789abc"]),
            },
        )
    )
    return document, len(items)


# -- requests ----------------------------------------------------------------------------------


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


CALL_URLS = [f"{p}/{name}" for name in CALL_PATHS for p in ("/v1", "")]
BATCH_URLS = [f"{p}/{name}" for name in BATCH_PATHS for p in ("/v1", "")]
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
authorizations = weighted(
    (12, st.sampled_from([basic(f"{WEB_KEY}:"), basic(f"{SALES_KEY}:"), basic(WEB_KEY)])),
    (
        1,
        st.sampled_from(
            [
                basic("wk_wrong_0123456789abcdef:"),
                basic(f"{WEB_KEY}:password"),
                basic(":"),
                "basic " + base64.b64encode(f"{WEB_KEY}:".encode()).decode(),
                "Basic !!!",
                "Basic",
                f"Bearer {WEB_KEY}",
                "",
            ]
        ),
    ),
    (1, header_text),
    (1, header_text.map(lambda t: "Basic " + t)),
    (1, st.binary(max_size=30).map(lambda b: "Basic " + base64.b64encode(b).decode())),
)
content_types = st.sampled_from(
    [
        "application/json",
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/octet-stream",
        "",
        "garbage/;;;=",
    ]
)
encodings = weighted(
    (8, st.sampled_from(["gzip", "gzip", "gzip", "x-gzip", "identity", "GZIP"])),
    (1, st.sampled_from(["deflate", "br", "gzip, gzip", "compress", ""])),
    (1, header_text),
)


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    headers: dict[str, str]
    chunked: bool
    messages: int | None
    """Messages in a Segment-shaped body as drawn (None for anything else)."""


def damaged(data: bytes, how: str, at: int) -> bytes:
    if not data or how == "none":
        return data
    at %= len(data)
    if how == "truncate":
        return data[:at]
    if how == "flip":
        return data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]
    if how == "garbage":
        return data + b"\x00\xff garbage"
    if how == "bom":
        return b"\xef\xbb\xbf" + data
    if how == "utf16":
        return data.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass")
    raise AssertionError(how)


@functools.lru_cache(maxsize=64)
def bomb(size: int) -> bytes:
    return gzip.compress(bytes(size), compresslevel=9, mtime=0)


raw_bodies = st.one_of(
    st.binary(max_size=2000),
    st.sampled_from([b"", b" ", b"null", b"[]", b"{}", b'{"batch": null}', b"\xef\xbb\xbf{}"]),
    st.integers(1, MAX_BODY * 2).map(lambda n: b"[" * n),
    st.integers(4000, 5000).map(lambda n: b'{"userId": ' + b"9" * n + b"}"),
    st.integers(90, 140).map(lambda n: b'{"batch": [' * n),
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    if draw(st.integers(0, 29)) == 0:
        path = draw(st.sampled_from(["/v1/nope", "/v2/track", "/v1/batch/x", "/health", "/v1"]))
    else:
        path = draw(st.sampled_from(BATCH_URLS if draw(st.booleans()) else CALL_URLS))
    batch = path.rsplit("/", 1)[1] in BATCH_PATHS
    swapped = draw(st.integers(0, 9)) == 0  # a batch to a call endpoint, or the other way
    count: int | None = None
    if draw(st.integers(0, 14)) == 0:
        data = draw(raw_bodies)
    else:
        document, count = draw(documents(batch != swapped))
        if swapped:
            count = None
        ascii_only = draw(st.sampled_from([True, True, True, False]))  # False: raw surrogates
        data = json.dumps(document, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")
        how = draw(st.sampled_from(["none"] * 30 + ["truncate", "flip", "garbage", "bom", "utf16"]))
        if how != "none":
            data, count = damaged(data, how, draw(st.integers(0, 1 << 30))), None
    headers: dict[str, str] = {}
    if draw(st.integers(0, 9)) < 9:
        headers["Authorization"] = draw(authorizations)
    if draw(st.booleans()):
        headers["Content-Type"] = draw(content_types)
    if draw(st.integers(0, 3)) == 0:
        encoding = draw(encodings)
        headers["Content-Encoding"] = encoding
        if encoding.strip().lower() in ("gzip", "x-gzip"):
            kind = draw(st.sampled_from(["gzip"] * 6 + ["plain", "truncated", "bomb", "twice"]))
            if kind == "gzip":
                data = gzip.compress(data, compresslevel=1, mtime=0)
            elif kind == "truncated":
                data = gzip.compress(data, compresslevel=1, mtime=0)[: draw(st.integers(0, 30))]
            elif kind == "bomb":
                data = bomb(draw(st.integers(MAX_BODY, 2 << 20)))
                count = None
            elif kind == "twice":
                data = gzip.compress(
                    gzip.compress(data, compresslevel=1, mtime=0), compresslevel=1, mtime=0
                )
                count = None
            if kind in ("plain", "truncated"):
                count = None
        elif encoding.strip().lower() not in ("identity", ""):
            count = None
    return Request(path, data, headers, draw(st.integers(0, 9)) == 0, count)


# -- the campaign ------------------------------------------------------------------------------


class Recording:
    """A sink that keeps what its inner sink acknowledged (the real one, for the Kafka run)."""

    def __init__(self, inner: KafkaSink) -> None:
        self.inner = inner
        self.messages: list[Outgoing] = []

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        await self.inner.publish(messages)
        self.messages.extend(messages)


@dataclass
class Campaign:
    """Sends requests to a collector over `sink` and checks each answer against the sink."""

    client: TestClient[Any, Any]
    sink: MemorySink | Recording
    events_topic: str
    dlq_topic: str
    statuses: Counter[int] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    rejected: int = 0
    sent_bytes: int = 0

    async def send(self, request: Request) -> None:
        seen = len(self.sink.messages)
        data: Any = request.body
        if request.chunked:
            data = _chunks(request.body)
        async with self.client.post(request.path, data=data, headers=request.headers) as answer:
            status = answer.status
            text = await answer.text()
        self.sent_bytes += len(request.body)
        self.statuses[status] += 1
        assert status < 500, (status, text)
        new = self.sink.messages[seen:]
        events = [m for m in new if m.topic == self.events_topic]
        letters = [m for m in new if m.topic == self.dlq_topic]
        assert len(events) + len(letters) == len(new)
        if status in (404, 405) and not text.startswith("{"):
            assert not new  # aiohttp's router: no route for this path or method
            return
        body = json.loads(text)
        assert isinstance(body, dict)
        assert isinstance(body["success"], bool)
        rejects = body.get("rejected", [])
        if status == 200:
            assert body["success"] is True
            assert body["accepted"] == len(events), (body, len(events))
            assert len(letters) == len(rejects)
            self.kinds["200 with events" if events else "200 without events"] += 1
            self.kinds["200 with rejects"] += bool(rejects)
        elif status == 400 and "rejected" in body:
            assert request.path.rsplit("/", 1)[1] in CALL_PATHS
            assert (body["success"], body["accepted"], len(events)) == (False, 0, 0)
            assert len(rejects) == len(letters) == 1
            self.kinds["400 of a single call"] += 1
        else:
            assert set(body) == {"code", "message", "success", "error"}, body
            assert body["success"] is False
            assert isinstance(body["error"], str)
            assert body["error"]
            assert body["message"] == body["error"]
            assert isinstance(body["code"], str)
            assert not new
        if request.messages is not None and status == 200:
            assert body["accepted"] + len(rejects) == request.messages, (body, request.messages)
        for reject in rejects:
            assert set(reject) == {"index", "messageId", "errors"}
            assert reject["errors"]
            assert all(isinstance(line, str) and line.strip() for line in reject["errors"])
        for message in events:
            event = decode_event(message.value)
            assert message.key == event.subject
        for message in letters:
            letter = decode_dead_letter(message.value)
            assert letter.errors
            assert letter.source_topic.startswith("collector:")
        self.accepted += len(events)
        self.rejected += len(letters)

    def assert_covered(self, *, at_least: int) -> None:
        """The generator reached every kind of answer (else it tests less than it claims)."""
        for status in (200, 400, 401, 404, 413, 415):
            assert self.statuses[status] >= at_least, self.statuses
        for kind in ("200 with events", "200 with rejects", "400 of a single call"):
            assert self.kinds[kind] >= at_least, self.kinds

    def summary(self) -> str:
        return (
            f"{sum(self.statuses.values())} requests ({self.sent_bytes} bytes): "
            f"statuses {dict(sorted(self.statuses.items()))}, {self.accepted} events and "
            f"{self.rejected} dead letters stored, {dict(self.kinds)}"
        )


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), 4096):
        yield data[at : at + 4096]
    if not data:
        yield b""


def collector_settings(**changes: Any) -> Settings:
    fields: dict[str, Any] = {
        "write_keys": f"website={WEB_KEY},salesforce={SALES_KEY}",
        "sales_sources": "salesforce",
        "collector_max_batch_bytes": MAX_BODY,
        "collector_max_message_bytes": MAX_MESSAGE,
        "collector_max_batch_messages": MAX_BATCH,
        **changes,
    }
    return Settings(**fields)


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop of the campaign's own: hypothesis drives a plain function, one request a call."""
    loop = asyncio.new_event_loop()
    try:
        yield loop
    finally:
        loop.close()


async def start(config: Settings, sink: MemorySink | Recording) -> TestClient[Any, Any]:
    collector = Collector(
        CollectorConfig.from_settings(config, {"Demo Requested": "demo_request"}),
        WriteKeys(config.write_key_sources, config.sales_source_names),
        sink,
        clock=lambda: RECEIVED,
    )
    server = TestServer(public_application(collector))  # as the public port serves it
    await server.start_server(**RUNNER_OPTIONS)  # as serve() runs it (auto_decompress off)
    client = TestClient(server)
    await client.start_server()
    return client


def run_campaign(
    loop: asyncio.AbstractEventLoop, campaign: Campaign, examples: int
) -> tuple[int, float]:
    sent = 0

    @settings(CAMPAIGN, max_examples=examples)
    @given(request=requests())
    def one(request: Request) -> None:
        nonlocal sent
        sent += 1
        loop.run_until_complete(asyncio.wait_for(campaign.send(request), 30))

    started = time.monotonic()
    one()
    return sent, time.monotonic() - started


def test_5000_random_requests_never_a_5xx_and_the_sink_holds_what_was_answered(
    loop: asyncio.AbstractEventLoop,
) -> None:
    sink = MemorySink()
    config = collector_settings()
    client = loop.run_until_complete(start(config, sink))
    try:
        campaign = Campaign(client, sink, config.events_topic, config.dlq_topic)
        sent, seconds = run_campaign(loop, campaign, REQUESTS)
    finally:
        loop.run_until_complete(client.close())
    print(f"\ncollector fuzz (memory): {campaign.summary()}, {seconds:.0f}s")
    assert sent >= REQUESTS * 0.95
    campaign.assert_covered(at_least=20)


def read_topic(bootstrap: str, topic: str, count: int, timeout: float = 60.0) -> list[Outgoing]:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=[bootstrap],
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=300,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    records: list[Outgoing] = []
    deadline = time.monotonic() + timeout
    try:
        while len(records) < count and time.monotonic() < deadline:
            records.extend(Outgoing(topic, m.key.decode(), m.value) for m in consumer)
        records.extend(Outgoing(topic, m.key.decode(), m.value) for m in consumer)  # no more
    finally:
        consumer.close()
    return records


def test_300_random_requests_into_kafka_store_exactly_what_was_acknowledged(
    loop: asyncio.AbstractEventLoop, stack: DevStack
) -> None:
    suffix = uuid.uuid4().hex[:8]
    config = collector_settings(
        broker=f"kafka://{stack.bootstrap}",
        events_topic=f"collector-fuzz.{suffix}",
        dlq_topic=f"collector-fuzz-dlq.{suffix}",
        collector_produce_timeout=10.0,
    )
    create_topics(stack.bootstrap, [config.events_topic, config.dlq_topic], 3)
    kafka = KafkaSink(config)
    sink = Recording(kafka)
    client = loop.run_until_complete(start(config, sink))
    try:
        campaign = Campaign(client, sink, config.events_topic, config.dlq_topic)
        sent, seconds = run_campaign(loop, campaign, KAFKA_REQUESTS)
    finally:
        loop.run_until_complete(client.close())
        loop.run_until_complete(kafka.close())
    assert sent >= KAFKA_REQUESTS * 0.95
    assert campaign.statuses[503] == 0
    assert campaign.accepted > 100, campaign.summary()
    for topic in (config.events_topic, config.dlq_topic):
        acknowledged = [m for m in sink.messages if m.topic == topic]
        stored = read_topic(stack.bootstrap, topic, len(acknowledged))
        assert Counter((m.key, m.value) for m in stored) == Counter(
            (m.key, m.value) for m in acknowledged
        ), topic
    print(f"\ncollector fuzz (Kafka): {campaign.summary()}, {seconds:.0f}s, all in the topics")
