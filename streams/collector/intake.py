"""One request's JSON document as events to produce and rejects to report.

Pure: no HTTP, no Kafka, the receive time passed in. A single-call endpoint
(``/v1/track``, ``/t``, ...) carries one message whose type the path names; a
batch endpoint (``/v1/batch``, ``/b``) carries ``{"batch": [...]}`` with
batch-level ``context``, ``integrations`` and ``sentAt`` merged into each
item. Every message is mapped on its own: a bad one is rejected with its
reasons, the others still go through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from leadpulse.schemas.codec import DecodeError
from leadpulse.schemas.segment import from_segment_encoded, merge_batch_item
from leadpulse.streams.collector.auth import Source
from leadpulse.streams.collector.body import BodyError

CALL_PATHS: Final[Mapping[str, str]] = {
    "track": "track",
    "t": "track",
    "identify": "identify",
    "i": "identify",
    "page": "page",
    "p": "page",
    "screen": "screen",
    "s": "screen",
    "group": "group",
    "g": "group",
    "alias": "alias",
    "a": "alias",
}
"""Endpoint name (after ``/v1/`` or ``/``) -> the call type it carries."""
BATCH_PATHS: Final = frozenset({"batch", "b"})


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int = 32 * 1024
    max_batch_messages: int = 2500


@dataclass(frozen=True, slots=True)
class Accepted:
    """An event to produce: its topic key (the subject) and its wire bytes."""

    key: str
    value: bytes
    event_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that cannot become an event; `raw` is kept for the dead-letter topic."""

    index: int
    message_id: str | None
    errors: list[str]
    raw: bytes


@dataclass(slots=True)
class Intake:
    accepted: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)

    def summary(self) -> dict[str, object]:
        """The response body: Segment's ``success`` plus what was accepted and rejected."""
        body: dict[str, object] = {"success": True, "accepted": len(self.accepted)}
        if self.rejected:
            body["rejected"] = [
                {"index": r.index, "messageId": r.message_id, "errors": r.errors}
                for r in self.rejected
            ]
        return body


def messages_of(document: object, endpoint: str, limits: Limits) -> list[object]:
    """The messages of a request, batch fields merged; BodyError(400/413) for a bad shape."""
    if not isinstance(document, dict):
        raise BodyError(400, f"body must be a JSON object, got {type(document).__name__}")
    if endpoint in BATCH_PATHS:
        items = document.get("batch")
        if not isinstance(items, list):
            raise BodyError(400, 'batch: expected {"batch": [message, ...]}')
        if len(items) > limits.max_batch_messages:
            raise BodyError(
                413, f"batch: {len(items)} messages, at most {limits.max_batch_messages}"
            )
        return [_merged(item, document) for item in items]
    return [{**document, "type": CALL_PATHS[endpoint]}]


def write_key_in(document: object) -> str | None:
    """``writeKey`` of the body (analytics.js), else the one key every batch item names."""
    if not isinstance(document, dict):
        return None
    key = document.get("writeKey")
    if isinstance(key, str) and key:
        return key
    items = document.get("batch")
    if isinstance(items, list) and items:
        keys = {_text(item.get("writeKey")) if isinstance(item, dict) else None for item in items}
        if len(keys) == 1:
            (only,) = keys
            if only:
                return only
    return None


_WRITE_KEY_FIELD: Final = re.compile(rb'"writeKey"\s*:\s*("(?:[^"\\]|\\.)*")')
"""A ``"writeKey": "..."`` member in JSON text, the value with its quotes and escapes."""


def write_keys_named(head: bytes, most: int = 8) -> list[str]:
    """The distinct ``writeKey`` values named in the start of a JSON body (up to `most`).

    The body's top-level key or its items' keys, found before the whole body
    is read: only a request naming a known key is read further. Which key
    counts is still decided on the parsed document (`write_key_in`).
    """
    found: list[str] = []
    for match in _WRITE_KEY_FIELD.finditer(head):
        try:
            value = json.loads(match.group(1))
        except ValueError:  # not UTF-8, or an escape JSON does not know
            continue
        if value not in found:
            found.append(value)
            if len(found) == most:
                break
    return found


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None  # a list or an object is not hashable


def take(
    messages: list[object],
    *,
    source: Source,
    received_at: datetime,
    events: Mapping[str, str],
    limits: Limits,
) -> Intake:
    """Map every message; a message the mapping or the size limit refuses is rejected."""
    intake = Intake()
    for index, message in enumerate(messages):
        raw = _raw(message)
        if len(raw) > limits.max_message_bytes:
            errors = [f"message: {len(raw)} bytes, more than {limits.max_message_bytes}"]
            intake.rejected.append(Rejected(index, _message_id(message), errors, raw))
            continue
        try:
            event, value = from_segment_encoded(
                message, received_at=received_at, events=events, trusted=source.sales
            )
        except DecodeError as error:
            intake.rejected.append(Rejected(index, _message_id(message), error.errors, raw))
            continue
        except ValueError as error:  # text JSON allows but UTF-8 cannot carry (lone surrogates)
            errors = [f"message: cannot be encoded as UTF-8 JSON ({type(error).__name__})"]
            intake.rejected.append(Rejected(index, _message_id(message), errors, raw))
            continue
        intake.accepted.append(Accepted(event.subject, value, event.event_id))
    return intake


def _merged(item: object, batch: Mapping[str, object]) -> object:
    return merge_batch_item(item, batch) if isinstance(item, dict) else item


_RAW_JSON: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
"""What ``json.dumps(message, separators=(",", ":"), ensure_ascii=False)`` builds per call,
built once: building it cost about a sixth of each message's serialisation."""


def _raw(message: object) -> bytes:
    text = _RAW_JSON.encode(message)
    return text.encode("utf-8", "surrogatepass")  # lone surrogates survive, for the letter


def _message_id(message: object) -> str | None:
    if isinstance(message, dict):
        value = message.get("messageId")
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)[:200]
    return None
