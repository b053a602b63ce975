"""Request bodies: bounded gzip decompression and JSON parsing, whatever the content type.

analytics.js posts JSON as ``text/plain`` (no CORS preflight) and
rudder-sdk-python gzips by default, so the content type is not trusted and
``Content-Encoding: gzip`` is undone here, never past the size limit (a
small compressed body may expand a thousandfold).
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from typing import Final

MAX_NESTING: Final = 100
"""Deepest nesting of arrays and objects a body may have. Python's parser stops
only at the recursion limit, less the frames already on the stack, and the
collector encodes each message again deeper in the stack: a document just under
that limit would parse, then fail there. Segment payloads nest a few levels."""


class BodyError(ValueError):
    """The body cannot be read; `status` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def decoded(data: bytes, encoding: str | None, limit: int) -> bytes:
    """The body with its content encoding undone; 413 past `limit` bytes, 415 if unknown."""
    inflater = _inflater(encoding)
    if inflater is None:
        if len(data) > limit:
            raise BodyError(413, f"body larger than {limit} bytes")
        return data
    out = _inflate(inflater, data, limit + 1)
    if len(out) > limit or inflater.unconsumed_tail:
        raise BodyError(413, f"body larger than {limit} bytes once decompressed")
    if not inflater.eof:
        raise BodyError(400, "gzip body is truncated")
    if inflater.unused_data:  # more gzip members, or garbage: never take part of a body
        raise BodyError(400, "gzip body has data after the end of its stream")
    return out


def decoded_head(data: bytes, encoding: str | None, limit: int) -> bytes:
    """The start of a body cut short (`data`), its encoding undone, at most `limit` bytes.

    For a look at what the body begins with (its write key) before the rest is
    read; a gzip stream cut short is expected here, a corrupt one is a 400.
    """
    inflater = _inflater(encoding)
    if inflater is None:
        return data[:limit]
    return _inflate(inflater, data, limit)


def _inflater(encoding: str | None) -> zlib._Decompress | None:
    """A gzip decompressor for ``Content-Encoding: gzip``, None for none; 415 otherwise."""
    coding = (encoding or "identity").strip().lower()
    if coding in ("identity", ""):
        return None
    if coding not in ("gzip", "x-gzip"):
        raise BodyError(415, f"Content-Encoding {coding!r} not supported (gzip or none)")
    return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)


def _inflate(inflater: zlib._Decompress, data: bytes, most: int) -> bytes:
    try:
        return inflater.decompress(data, most)
    except zlib.error as error:
        raise BodyError(400, f"gzip body cannot be decompressed ({error})") from None


def parsed(data: bytes) -> object:
    """The JSON document of a body (UTF-8); 400 with the parser's reason otherwise.

    Strictly UTF-8 (a byte order mark is ignored): `json.loads` of bytes would
    also take UTF-16 and UTF-32, and UTF-8-encoded surrogates.
    """
    if not data.strip():
        raise BodyError(400, "empty body: expected a JSON object")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise BodyError(400, "body is not UTF-8 JSON") from None
    try:
        document = json.loads(text)
    except RecursionError:
        raise BodyError(400, "body is JSON nested too deeply") from None
    except ValueError as error:  # JSONDecodeError, and ints past Python's digit limit
        raise BodyError(400, f"body is not valid JSON ({error})") from None
    if (
        data.count(b"[") + data.count(b"{") > MAX_NESTING
        and _text_depth(data) > MAX_NESTING
        and _nested_deeper(document)
    ):
        raise BodyError(400, f"body is JSON nested too deeply (more than {MAX_NESTING} levels)")
    return document


_ESCAPE: Final = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE: Final = bytes(b for b in range(256) if b not in b'"[]{}')
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")


def _text_depth(data: bytes) -> int:
    """How deep the brackets of valid JSON text nest, strings left out: at least the
    parsed document's depth (a key given twice keeps one value), found in C.

    Escapes are dropped first (``\\"`` does not end a string), then everything
    but quotes and brackets; between the quotes then are the strings' brackets.
    """
    unescaped = _ESCAPE.sub(b"", data) if b"\\" in data else data
    # two quotes side by side close one string and open the next (or are an empty one):
    # dropping them leaves the same brackets outside strings
    structure = unescaped.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    outside = b"".join(structure.split(b'"')[::2]) if b'"' in structure else structure
    steps = memoryview(outside.translate(_STEPS)).cast("b")  # +1 per opening, -1 per closing
    return max(itertools.accumulate(steps), default=0)


def _nested_deeper(document: object, limit: int = MAX_NESTING) -> bool:
    """True if arrays and objects nest more than `limit` levels (without recursing)."""
    if not isinstance(document, dict | list):
        return False
    stack: list[tuple[dict[str, object] | list[object], int]] = [(document, 1)]
    while stack:
        node, depth = stack.pop()
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False
