"""The collector authenticates before it works, over HTTP (aiohttp's test client, a `MemorySink`).

A Basic-auth key is checked before the body is read; a body key must show in
the first `PRE_AUTH_BYTES` of the body before more is read; requests in
flight are bounded (503 at once beyond); a source past its rate gets 429 with
the Retry-After its token bucket computes.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from leadpulse.streams.collector.app import PRE_AUTH_BYTES
from leadpulse.streams.collector.sink import MemorySink
from leadpulse.streams.kafka.publisher import Outgoing
from tests.component.test_collector_http import (
    SALES_KEY,
    UNAUTHORIZED,
    WEB,
    WEB_KEY,
    basic,
    collector_of,
    events,
    post,
    serving,
    settings,
    track,
)

BIG = 500 * 1024
"""collector_max_batch_bytes of these tests: larger than PRE_AUTH_BYTES."""
NOT_GZIP = b"\x1f\x8b\x08\x00 this is not a gzip stream" * 10
NOBODY = "wk_nobody_0123456789abcdef0"


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()


def test_the_pre_auth_limit_is_64_kib() -> None:
    assert PRE_AUTH_BYTES == 65536


# -- Basic auth: checked before the body is touched ----------------------------------------------


async def test_a_wrong_basic_key_with_a_broken_gzip_body_is_401_not_400(
    sink: MemorySink,
) -> None:
    async with serving(collector_of(settings(), sink)) as client:
        gzipped = {"Content-Encoding": "gzip"}
        status, body, _ = await post(
            client, "/v1/batch", data=NOT_GZIP, headers={**basic(NOBODY), **gzipped}
        )
        assert (status, body) == (401, UNAUTHORIZED)
        # with the right key it is the body that is refused: it was decompressed only then
        status, body, _ = await post(client, "/v1/batch", data=NOT_GZIP, headers={**WEB, **gzipped})
        assert status == 400
        assert "gzip body cannot be decompressed" in body["error"]
    assert not sink.messages


# -- a key in the body: read no further than PRE_AUTH_BYTES without one -------------------------


def keyed_at(end: int, key: str, total: int) -> bytes:
    """A valid batch of `total` bytes whose ``"writeKey": "<key>"`` member ends at byte `end`."""
    start = json.dumps({"batch": [track(1, userId="u")]}).encode()[:-1]  # open: no closing brace
    member = b',"writeKey":"' + key.encode() + b'"'
    before = end - len(start) - len(member)
    after = total - end - 1
    assert before >= 0
    assert after >= 0
    document = start + b" " * before + member + b" " * after + b"}"
    assert len(document) == total
    assert document.index(member) + len(member) == end
    assert json.loads(document)["writeKey"] == key
    return document


@pytest.mark.parametrize(
    ("end", "total", "status"),
    [
        (PRE_AUTH_BYTES - 1, PRE_AUTH_BYTES, 200),  # the whole body is the head: parsed
        (PRE_AUTH_BYTES, PRE_AUTH_BYTES + 1, 200),  # the key ends on the head's last byte
        (PRE_AUTH_BYTES + 1, PRE_AUTH_BYTES + 2, 401),  # its closing quote is one byte further
        (PRE_AUTH_BYTES + 1, 3 * PRE_AUTH_BYTES, 401),
        (200, 3 * PRE_AUTH_BYTES, 200),  # a known key early: the rest is read
    ],
    ids=["whole", "key ends at the limit", "key one byte past", "key past, big", "key early"],
)
async def test_a_body_key_counts_within_the_first_pre_auth_bytes(
    sink: MemorySink, end: int, total: int, status: int
) -> None:
    async with serving(collector_of(settings(collector_max_batch_bytes=BIG), sink)) as client:
        data = keyed_at(end, WEB_KEY, total)
        got, body, _ = await post(client, "/v1/batch", data=data, headers={})
        assert got == status, body
        if status == 401:
            assert body == UNAUTHORIZED
    assert len(events(sink)) == (status == 200)


async def test_a_gzip_body_names_its_key_in_its_first_inflated_bytes(sink: MemorySink) -> None:
    async with serving(collector_of(settings(collector_max_batch_bytes=BIG), sink)) as client:
        raw = keyed_at(200, WEB_KEY, 3 * PRE_AUTH_BYTES)
        data = gzip.compress(raw, compresslevel=0)  # stored blocks: longer than the head
        assert len(data) > PRE_AUTH_BYTES
        headers = {"Content-Encoding": "gzip"}
        assert (await post(client, "/v1/batch", data=data, headers=headers))[0] == 200
        late = gzip.compress(keyed_at(PRE_AUTH_BYTES + 1, WEB_KEY, 3 * PRE_AUTH_BYTES), 0)
        status, body, _ = await post(client, "/v1/batch", data=late, headers=headers)
        assert (status, body) == (401, UNAUTHORIZED)
    assert len(events(sink)) == 1


async def test_a_known_key_early_is_still_checked_on_the_whole_document(sink: MemorySink) -> None:
    """The head only opens the door: the parsed body's key decides, as for a small body."""
    async with serving(collector_of(settings(collector_max_batch_bytes=BIG), sink)) as client:
        items = [{**track(1, userId="u"), "writeKey": WEB_KEY}] + [
            {**track(i, userId="u"), "writeKey": SALES_KEY} for i in range(2, 4)
        ]
        document = json.dumps({"batch": items}).encode()
        data = document[:-1] + b" " * PRE_AUTH_BYTES + b"}"  # two keys: no single one counts
        status, body, _ = await post(client, "/v1/batch", data=data, headers={})
        assert (status, body) == (401, UNAUTHORIZED)
    assert not sink.messages


async def test_a_body_key_request_with_a_bad_key_is_refused_before_the_rest_is_sent(
    sink: MemorySink,
) -> None:
    """The body streams (chunked) and stops after 80 KiB until the answer came: it is a 401."""
    sent: list[int] = []
    release = asyncio.Event()
    chunk = 16 * 1024

    async def body() -> AsyncIterator[bytes]:
        yield b'{"writeKey": "' + NOBODY.encode() + b'", "batch": ['
        for _ in range(5):
            sent.append(chunk)
            yield b" " * chunk
        await asyncio.wait_for(release.wait(), 10)
        for _ in range(20):
            sent.append(chunk)
            yield b" " * chunk
        yield b"]}"

    collector = collector_of(settings(collector_max_batch_bytes=BIG), sink)
    async with serving(collector) as client, client.post("/v1/batch", data=body()) as response:
        assert response.status == 401
        assert await response.json() == {
            "code": "unauthorized",
            "message": "unauthorized",
            **UNAUTHORIZED,
        }
        assert sum(sent) == 5 * chunk  # answered while the rest was still held back
        release.set()
    assert not sink.messages


# -- requests in flight ----------------------------------------------------------------------


class HeldSink(MemorySink):
    """A sink whose publishes wait for `release`; `entered` counts those waiting."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.entered = 0

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        self.entered += 1
        await asyncio.wait_for(self.release.wait(), 10)
        await super().publish(messages)


async def until(condition: Any, what: str) -> None:
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not within 5 s")


async def test_beyond_max_in_flight_a_request_is_503_at_once() -> None:
    sink = HeldSink()
    collector = collector_of(settings(collector_max_in_flight=2), sink)
    async with serving(collector) as client:
        held = [
            asyncio.create_task(post(client, "/v1/track", track(i, userId="u"), headers=WEB))
            for i in range(2)
        ]
        await until(lambda: sink.entered == 2, "two requests in the sink")
        # exactly at the limit: the third is refused without being worked on
        status, body, response = await post(client, "/v1/track", track(3, userId="u"), headers=WEB)
        assert status == 503
        assert body == {"success": False, "error": "too many requests in flight, retry later"}
        assert response.headers["Retry-After"] == "1"
        assert sink.entered == 2
        async with client.get("/health") as health:  # probes are not requests to work on
            assert health.status == 200
        sink.release.set()
        assert [(await task)[0] for task in held] == [200, 200]
        assert (await post(client, "/v1/track", track(4, userId="u"), headers=WEB))[0] == 200
    assert len(events(sink)) == 3
    assert collector.in_flight.count == 0


# -- rate per source -------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_past_its_rate_a_source_gets_429_with_the_buckets_retry_after(
    sink: MemorySink,
) -> None:
    clock = Clock()
    config = settings(collector_rate=0.5, collector_rate_burst=2)  # a token every 2 s, 2 saved
    async with serving(collector_of(config, sink, monotonic=clock)) as client:

        async def send(headers: dict[str, str], data: bytes | None = None) -> tuple[int, Any]:
            document = track(len(sink.messages), userId="u")
            status, body, response = await post(
                client, "/v1/track", document, data=data, headers=headers
            )
            return status, (body, response.headers.get("Retry-After"))

        assert (await send(WEB))[0] == 200
        assert (await send(WEB))[0] == 200
        status, (body, retry_after) = await send(WEB)
        assert (status, retry_after) == (429, "2")
        assert body == {"success": False, "error": "rate limit of source 'website', retry later"}
        # refused before the body is read: a broken body is not what is answered
        status, (_, retry_after) = await send({**WEB, "Content-Encoding": "gzip"}, NOT_GZIP)
        assert (status, retry_after) == (429, "2")
        clock.now += 1.0  # half a token back
        assert (await send(WEB))[1][1] == "1"
        clock.now += 1.0  # exactly one token back
        assert (await send(WEB))[0] == 200
        assert (await send(WEB))[1][1] == "2"
        # a key in the body counts against the same source
        keyed = json.dumps({**track(9, userId="u"), "writeKey": WEB_KEY}).encode()
        status, (_, retry_after) = await send({}, keyed)
        assert (status, retry_after) == (429, "2")
        # another source has a bucket of its own; an unknown key is a 401, not a 429
        assert (await send(basic(SALES_KEY)))[0] == 200
        assert (await send(basic(NOBODY)))[0] == 401
    assert len(events(sink)) == 4
