"""Request bodies: content encodings undone within the limit, JSON parsed or a 4xx."""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from typing import Any

import pytest

from leadpulse.streams.collector import body
from leadpulse.streams.collector.body import MAX_NESTING, BodyError, decoded, parsed

LIMIT = 100_000
DOC = json.dumps({"batch": [{"type": "track", "event": "x", "userId": "u"}] * 50}).encode()


def status_of(call: Any) -> int | None:
    """The status of the BodyError `call` raises (None if it returns); it has a message."""
    try:
        call()
    except BodyError as error:
        caught = error
    else:
        return None
    assert caught.message
    assert str(caught) == caught.message
    return caught.status


# -- content encodings ---------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "", "identity", "IDENTITY", " identity "])
def test_identity_is_the_body_as_it_is(encoding: str | None) -> None:
    assert decoded(DOC, encoding, LIMIT) == DOC
    assert decoded(b"x" * LIMIT, encoding, LIMIT) == b"x" * LIMIT
    assert status_of(lambda: decoded(b"x" * (LIMIT + 1), encoding, LIMIT)) == 413


@pytest.mark.parametrize("encoding", ["gzip", "GZIP", "x-gzip", " gzip "])
def test_gzip_is_undone(encoding: str) -> None:
    assert decoded(gzip.compress(DOC), encoding, LIMIT) == DOC


def test_gzip_up_to_the_limit_exactly() -> None:
    assert decoded(gzip.compress(b"x" * LIMIT), "gzip", LIMIT) == b"x" * LIMIT
    assert status_of(lambda: decoded(gzip.compress(b"x" * (LIMIT + 1)), "gzip", LIMIT)) == 413


def test_the_limit_applies_to_the_compressed_size_too() -> None:
    incompressible = gzip.compress(bytes(range(256)) * 40, compresslevel=0)
    assert len(incompressible) > 10_000
    assert status_of(lambda: decoded(incompressible, "gzip", 10_000)) == 413


# (case, encoding)
UNSUPPORTED: list[tuple[str, str]] = [
    ("deflate", "deflate"),
    ("brotli", "br"),
    ("zstd", "zstd"),
    ("compress", "compress"),
    ("two codings", "gzip, gzip"),
    ("gzip then identity", "gzip, identity"),
    ("garbage", "\x00\xff"),
    ("parameters", "gzip;q=1"),
]


@pytest.mark.parametrize(("case", "encoding"), UNSUPPORTED, ids=[u[0] for u in UNSUPPORTED])
def test_other_content_encodings_are_415(case: str, encoding: str) -> None:
    assert status_of(lambda: decoded(gzip.compress(DOC), encoding, LIMIT)) == 415


GOOD = gzip.compress(DOC)


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


# (case, gzip bytes)
BROKEN: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not gzip at all", DOC),
    ("zlib, not gzip", zlib.compress(DOC)),
    ("header only", GOOD[:10]),
    ("truncated in the middle", GOOD[: len(GOOD) // 2]),
    ("truncated before the trailer", GOOD[:-8]),
    ("truncated by one byte", GOOD[:-1]),
    ("bad magic", b"\x1f\x8c" + GOOD[2:]),
    ("corrupt deflate data", flipped(GOOD, 12)),
    ("bad CRC", GOOD[:-8] + bytes(4) + GOOD[-4:]),
    ("bad length", GOOD[:-4] + bytes(4)),
    ("random bytes", bytes(range(256)) * 4),
    ("garbage after the stream", GOOD + b"garbage"),
    ("a second member after the first", GOOD + gzip.compress(b"{}")),
]


@pytest.mark.parametrize(("case", "data"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_gzip_is_400(case: str, data: bytes) -> None:
    assert status_of(lambda: decoded(data, "gzip", LIMIT)) == 400


def bomb(size: int = 10 * 1024 * 1024) -> bytes:
    return gzip.compress(bytes(size), compresslevel=9, mtime=0)  # the same bytes every call


def test_gzip_bomb_is_413_without_inflating_past_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = bomb()
    assert len(data) < 11_000  # 10 MB of zeros in about 10 KB
    produced: list[int] = []
    real = zlib.decompressobj

    class Spy:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self.inner = real(*args, **kwargs)

        def decompress(self, data: bytes, max_length: int = 0) -> bytes:
            assert 0 < max_length <= LIMIT + 1  # never asked for everything
            out = self.inner.decompress(data, max_length)
            produced.append(len(out))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    monkeypatch.setattr(body.zlib, "decompressobj", Spy)
    assert status_of(lambda: decoded(data, "gzip", LIMIT)) == 413
    assert sum(produced) == LIMIT + 1  # stopped one byte past the limit


def test_gzip_bomb_allocates_about_the_limit_not_the_bomb() -> None:
    data = bomb()
    tracemalloc.start()
    try:
        assert status_of(lambda: decoded(data, "gzip", LIMIT)) == 413
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT + len(data), peak


def test_nested_bomb_is_inflated_once_only() -> None:
    """gzip inside gzip: one layer is undone, the inner layer is then not JSON."""
    data = gzip.compress(bomb())
    inner = decoded(data, "gzip", LIMIT)
    assert inner == bomb()
    assert status_of(lambda: parsed(inner)) == 400


# -- JSON ------------------------------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# (case, body, parsed document)
GOOD_JSON: list[tuple[str, bytes, object]] = [
    ("object", b'{"a": 1}', {"a": 1}),
    ("surrounding whitespace", b' \r\n\t{"a": 1}\n', {"a": 1}),
    ("a list (refused later, by shape)", b"[1]", [1]),
    ("a scalar (refused later, by shape)", b"1", 1),
    ("UTF-8 text", '{"name": "Café 日本 🙂"}'.encode(), {"name": "Café 日本 🙂"}),
    ("a UTF-8 byte order mark", b'\xef\xbb\xbf{"a": 1}', {"a": 1}),
    ("lone high surrogate escape", b'{"a": "\\ud800"}', {"a": "\ud800"}),
    ("lone low surrogate escape", b'{"a": "\\udc80x"}', {"a": "\udc80x"}),
    ("surrogate pair escape", b'{"a": "\\ud83d\\ude42"}', {"a": "🙂"}),
    ("NaN and Infinity (Python's JSON)", b'{"a": NaN, "b": -Infinity}', None),
    ("big but allowed int", b'{"a": ' + b"9" * 4000 + b"}", {"a": int("9" * 4000)}),
    ("nested to the limit", nested(MAX_NESTING), None),
    ("many brackets in strings", json.dumps({"a": "[{" * 10_000}).encode(), {"a": "[{" * 10_000}),
    ("wide, not deep", json.dumps({"batch": [[{}]] * 5000}).encode(), {"batch": [[{}]] * 5000}),
]


@pytest.mark.parametrize(("case", "data", "document"), GOOD_JSON, ids=[g[0] for g in GOOD_JSON])
def test_json_bodies(case: str, data: bytes, document: object) -> None:
    got = parsed(data)
    if document is not None:
        assert got == document


# (case, body)
BAD_JSON: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("whitespace", b" \r\n\t "),
    ("truncated", b'{"batch": [{"type": "track"'),
    ("single quotes", b"{'a': 1}"),
    ("trailing comma", b'{"a": 1,}'),
    ("two documents", b'{"a": 1}{"b": 2}'),
    ("garbage after the document", b'{"a": 1} x'),
    ("form encoded", b"writeKey=x&type=track"),
    ("bare word", b"nul"),
    ("invalid UTF-8", b'{"a": "\xff"}'),
    ("overlong UTF-8", b'{"a": "\xc0\xaf"}'),
    ("UTF-8-encoded surrogate (CESU-8)", b'{"a": "\xed\xa0\x80"}'),
    ("Latin-1", '{"a": "café"}'.encode("latin-1")),
    ("UTF-16 with a BOM", '{"a": 1}'.encode("utf-16")),
    ("UTF-16-LE", '{"a": 1}'.encode("utf-16-le")),
    ("UTF-32", '{"a": 1}'.encode("utf-32")),
    ("NUL bytes", b'{"a": 1}\x00'),
    ("random bytes", bytes(range(256))),
    ("int past the digit limit", b'{"a": ' + b"9" * 5000 + b"}"),
    ("nested one past the limit", nested(MAX_NESTING + 1)),
    (
        "objects nested past the limit",
        b'{"a":' * (MAX_NESTING + 1) + b"1" + b"}" * (MAX_NESTING + 1),
    ),
    ("nested near the recursion limit", nested(990)),
    ("nested far past the recursion limit", nested(100_000)),
    ("deep inside a wide document", b"[" + b"[]," * 1000 + nested(MAX_NESTING) + b"]"),
    ("unterminated nesting", b"[" * 100_000),
]


@pytest.mark.parametrize(("case", "data"), BAD_JSON, ids=[b[0] for b in BAD_JSON])
def test_bad_json_is_400(case: str, data: bytes) -> None:
    assert status_of(lambda: parsed(data)) == 400


def test_the_reason_is_in_the_message() -> None:
    with pytest.raises(BodyError) as caught:
        parsed(nested(MAX_NESTING + 1))
    assert "nested too deeply" in caught.value.message
    with pytest.raises(BodyError) as caught:
        parsed(b"\xff")
    assert "not UTF-8" in caught.value.message
    with pytest.raises(BodyError) as caught:
        parsed(b"{")
    assert "not valid JSON" in caught.value.message


# -- the start of a body, before the rest is read ----------------------------------------------


def test_the_head_of_a_plain_body_is_its_first_bytes() -> None:
    assert body.decoded_head(DOC, None, 10) == DOC[:10]
    assert body.decoded_head(DOC, "identity", len(DOC) + 5) == DOC


def test_the_head_of_a_gzip_body_cut_short_is_inflated_up_to_the_limit() -> None:
    compressed = gzip.compress(DOC * 20)
    cut = compressed[: len(compressed) // 2]
    head = body.decoded_head(cut, "gzip", 1000)
    assert head == (DOC * 20)[:1000]


def test_the_head_of_a_corrupt_gzip_is_400_and_of_an_unknown_coding_415() -> None:
    assert status_of(lambda: body.decoded_head(b"\x1f\x8bnot gzip at all", "gzip", 1000)) == 400
    assert status_of(lambda: body.decoded_head(DOC, "br", 1000)) == 415
