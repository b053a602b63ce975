"""Segment HTTP Tracking API messages to `BehaviorEvent`: the pure part of the collector.

One message, as the SDKs send it (analytics-python / segment-analytics-python,
rudder-sdk-python, analytics.js / analytics-next) and already parsed from JSON,
becomes one `BehaviorEvent` or a `DecodeError` whose `errors` name the Segment
field to fix. Nothing here reads a clock: the receive time is passed in.

Mapping, per call ``type``:

- ``track``: ``event`` through the caller's name table (exact match), else
  normalised to the event type pattern (`normalise_event_name`).
- ``page`` / ``screen``: ``page_view``; ``properties.url`` from
  ``properties.url`` or (page) ``context.page.url``; ``name`` and ``category``
  kept in properties (the message's properties win, top-level fields fill gaps).
- ``identify``: ``identify`` with ``traits`` = ``context.traits`` overlaid by the
  top-level ``traits`` (top level wins per key).
- ``alias``: ``identify`` with ``lead_id=userId``, ``anonymous_id=previousId``
  and no traits. leadpulse links are anonymous→known; an alias of two known ids
  is expressed as the same link (previousId's history merges into userId).
  The alias message's own ``anonymousId`` is not used.
- ``group``: ``group`` with ``properties = {"account_id": groupId,
  "account_traits": traits}`` (plus the kept ``context``, as for every call).
  The worker stores the account on the lead (`LeadState.account_id` and
  ``account_traits``, see `scoring.engine`): the latest group call wins, and
  one naming another account replaces the account traits rather than merging
  them; a handoff carries the lead's ``account_id``.

Ids: ``messageId`` → ``event_id`` (missing or empty: `message_digest`);
``userId`` → ``lead_id``, ``anonymousId`` → ``anonymous_id``, at least one
(numbers are accepted and written as strings, empty strings count as absent).

Event time (`event_time`), as Segment corrects client clock skew: with
``sentAt``, ``received_at - (sentAt - original)`` where original is
``originalTimestamp``, else ``timestamp`` (never later than ``received_at``:
nothing happens after the server received it); without ``sentAt``,
``timestamp``, else ``originalTimestamp``, as given (the worker clamps future
times to the record time); with none of them, ``received_at``. Every time field
present must be an ISO-8601 string with a timezone, or the message is rejected.

Context: only ``context.campaign`` (name, source, medium, term, content),
``context.page.referrer``, ``context.userAgent`` and ``context.ip`` are kept, in
``properties.context``, each string cut to `CONTEXT_STRING_LIMITS` (at most
about 3.9k characters in all). A tracker's own ``properties.context`` is
replaced (dropped), so it cannot pose as the collector's.

Bounds: properties, traits and account traits are *trimmed* deterministically
to `BehaviorEvent`'s limits (see `trim_json`) rather than rejected: the call
and its time are what scores, and Segment payloads (product lists, nested
objects) routinely exceed them. An event whose JSON would still exceed
``limits.MAX_MESSAGE_BYTES`` (long non-ASCII strings) is rejected.

Event types only sales tools may send (`SALES_ONLY_EVENTS`) are rejected
unless the caller says the source is trusted; those are the feedback events,
whose properties must match their type (`schemas.feedback`), or the message
is rejected naming the property.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Final

from pydantic import JsonValue, ValidationError

from leadpulse.schemas import limits
from leadpulse.schemas.codec import DecodeError, _describe, encode
from leadpulse.schemas.feedback import feedback_errors
from leadpulse.schemas.messages import BehaviorEvent, is_sales_only

SUPPORTED_TYPES: Final = ("alias", "group", "identify", "page", "screen", "track")

DIGEST_PREFIX: Final = "seg-"
DIGEST_EXCLUDED: Final = frozenset({"messageId", "sentAt", "receivedAt", "writeKey"})
"""Top-level fields left out of `message_digest`: an SDK sets or changes them per
upload (``sentAt``), the server adds them (``receivedAt``), or they are not part of
the event (``writeKey``, an empty ``messageId``)."""

CONTEXT_STRING_LIMITS: Final[Mapping[str, int]] = {
    "campaign": 256,
    "referrer": 2048,
    "userAgent": 512,
    "ip": 64,
}
"""Characters kept of each context string (``campaign`` is per value)."""

CAMPAIGN_KEYS: Final = ("name", "source", "medium", "term", "content")

TIME_FIELDS: Final = ("timestamp", "originalTimestamp", "sentAt")
MAX_TIME_LENGTH: Final = 64

RESERVED_BY_CALL: Final = frozenset({"identify", "group"})
"""Types a ``track`` may not produce: they have their own calls and shapes."""

_NOT_ALLOWED: Final = re.compile(r"[^a-z0-9.:-]+")
_EDGES: Final = "_.:-"
_TYPE: Final = re.compile(limits.EVENT_TYPE_PATTERN)
_CONTROL: Final = re.compile("[\x00-\x1f\x7f]")
"""A control character (below 32, or DEL): not allowed in ids."""


def is_known_type(value: object) -> bool:
    return isinstance(value, str) and _TYPE.match(value) is not None


def normalise_event_name(name: str) -> str | None:
    """A Segment event name as a leadpulse event type, or None if nothing is left.

    NFKD-decomposed with accents dropped, case-folded, every run of characters
    outside ``[a-z0-9.:-]`` (``_`` included) becomes one ``_``, separators are
    trimmed from both ends, ``e_`` is prefixed when the result does not start
    with a letter, and it is cut to 64 characters (``"Demo Requested"`` →
    ``"demo_requested"``, ``"Café Visité"`` → ``"cafe_visite"``, ``"404 Seen"`` →
    ``"e_404_seen"``, ``"日本"`` → None).
    """
    decomposed = unicodedata.normalize("NFKD", name)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    text = _NOT_ALLOWED.sub("_", plain.casefold()).strip(_EDGES)
    if not text:
        return None
    if not ("a" <= text[0] <= "z"):
        text = "e_" + text
    return text[: limits.MAX_TYPE_LENGTH].rstrip(_EDGES)


def merge_batch_item(item: Mapping[str, object], batch: Mapping[str, object]) -> dict[str, object]:
    """One ``/v1/batch`` item with the batch-level ``context``, ``integrations`` and ``sentAt``.

    ``context`` and ``integrations`` merge key by key, one level deep for
    ``context``'s objects (``context.page`` etc.), the item winning on conflicts;
    the batch ``sentAt`` is used when the item has none. A batch field that is
    not an object (or an item field that is not) is left to the item as it is,
    so `from_segment` reports it.
    """
    merged = dict(item)
    for name in ("context", "integrations"):
        outer = batch.get(name)
        inner = merged.get(name)
        if not isinstance(outer, dict):
            continue
        if inner is None:
            merged[name] = dict(outer)
        elif isinstance(inner, dict):
            combined = dict(outer)
            for key, value in inner.items():
                base = combined.get(key)
                if name == "context" and isinstance(base, dict) and isinstance(value, dict):
                    combined[key] = {**base, **value}
                else:
                    combined[key] = value
            merged[name] = combined
    if merged.get("sentAt") is None and batch.get("sentAt") is not None:
        merged["sentAt"] = batch["sentAt"]
    return merged


def message_digest(message: Mapping[str, object]) -> str:
    """``seg-`` + SHA-256 of the canonical JSON of the message without `DIGEST_EXCLUDED`.

    Canonical: sorted keys, no whitespace, UTF-8. A retry of the same message
    (same fields, another ``sentAt``) gets the same id, so it counts once. Two
    identical messages without ``messageId`` and without a timestamp are taken
    for one: senders that mean two events must set a messageId or a timestamp.
    """
    kept = {key: value for key, value in message.items() if key not in DIGEST_EXCLUDED}
    try:
        text = json.dumps(
            kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise DecodeError([f"message: not JSON data ({exc})"]) from None
    return DIGEST_PREFIX + hashlib.sha256(text.encode()).hexdigest()


def parse_time(value: object, field: str) -> datetime:
    """An ISO-8601 string with a timezone (``Z``, offsets, any fractional digits)."""
    if not isinstance(value, str):
        raise DecodeError([f"{field}: expected an ISO-8601 string, got {_kind(value)}"])
    shown = value if len(value) <= MAX_TIME_LENGTH else value[:MAX_TIME_LENGTH] + "..."
    if len(value) > MAX_TIME_LENGTH:
        raise DecodeError([f"{field}: {shown!r} is not an ISO-8601 time"])
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DecodeError([f"{field}: {shown!r} is not an ISO-8601 time"]) from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise DecodeError([f"{field}: {shown!r} has no timezone (add Z or an offset)"])
    return parsed


def event_time(message: Mapping[str, object], received_at: datetime) -> datetime:
    """When the event happened, corrected for client clock skew (see the module doc)."""
    if received_at.tzinfo is None or received_at.utcoffset() is None:
        raise ValueError(f"received_at={received_at.isoformat()} has no timezone")
    times: dict[str, datetime] = {}
    errors: list[str] = []
    for field in TIME_FIELDS:
        raw = message.get(field)
        if raw is None:
            continue
        try:
            times[field] = parse_time(raw, field)
        except DecodeError as exc:
            errors += exc.errors
    if errors:
        raise DecodeError(errors)
    sent = times.get("sentAt")
    if sent is not None:
        original = times.get("originalTimestamp", times.get("timestamp"))
        if original is None:
            return received_at
        skew = sent - original
        if skew <= timedelta(0):
            return received_at  # happened after it was sent: not later than received
        try:
            return received_at - skew
        except OverflowError:  # e.g. sent in 9999 what happened in year 1
            raise DecodeError(
                [f"sentAt: {skew.days} days after the event time, not a real clock skew"]
            ) from None
    return times.get("timestamp", times.get("originalTimestamp", received_at))


def _finite(value: object) -> bool:
    return isinstance(value, float) and math.isfinite(value)


def trim_json(
    value: Mapping[str, object], budget: int = limits.MAX_MAP_ITEMS
) -> dict[str, JsonValue]:
    """`value` cut to `BehaviorEvent`'s tree bounds, deterministically.

    Breadth first in the order given, so shallow keys outlive nested ones: at
    most `budget` keys and list items in all (the rest dropped), objects and
    lists deeper than ``limits.MAX_DEPTH`` dropped, empty keys and keys longer
    than ``limits.MAX_KEY_LENGTH`` dropped, strings cut to
    ``limits.MAX_STRING_LENGTH``, non-finite numbers and non-JSON values dropped.
    """
    root: dict[str, JsonValue] = {}
    queue: list[tuple[object, dict[str, JsonValue] | list[JsonValue], int]] = [(value, root, 1)]
    used = 0
    head = 0
    while head < len(queue):
        source, target, depth = queue[head]
        head += 1
        if isinstance(source, Mapping):
            children: list[tuple[str | None, object]] = []
            for key, child in source.items():
                if isinstance(key, str) and 0 < len(key) <= limits.MAX_KEY_LENGTH:
                    children.append((key, child))
        else:
            assert isinstance(source, list)
            children = [(None, child) for child in source]
        for key, child in children:
            if used >= budget:
                return root
            kept: JsonValue
            if isinstance(child, Mapping | list):
                if depth + 1 > limits.MAX_DEPTH:
                    continue
                kept = {} if isinstance(child, Mapping) else []
                queue.append((child, kept, depth + 1))
            elif isinstance(child, str):
                kept = child[: limits.MAX_STRING_LENGTH]
            elif child is None or isinstance(child, bool | int) or _finite(child):
                kept = child  # type: ignore[assignment]
            else:
                continue
            used += 1
            if isinstance(target, dict):
                assert key is not None
                target[key] = kept
            else:
                target.append(kept)
    return root


def from_segment(
    message: object,
    *,
    received_at: datetime,
    events: Mapping[str, str] | None = None,
    trusted: bool = False,
) -> BehaviorEvent:
    """One Segment message (batch fields already merged) as a `BehaviorEvent`.

    `events` maps Segment ``track`` names to leadpulse types (the model file's
    ``events:``); `trusted` allows `SALES_ONLY_EVENTS` (a sales tool's write
    key). Bad input raises `DecodeError`; a naive `received_at` is a caller bug
    (ValueError).
    """
    event, _ = from_segment_encoded(
        message, received_at=received_at, events=events, trusted=trusted
    )
    return event


def from_segment_encoded(
    message: object,
    *,
    received_at: datetime,
    events: Mapping[str, str] | None = None,
    trusted: bool = False,
) -> tuple[BehaviorEvent, bytes]:
    """`from_segment`, and the event's wire bytes (`schemas.codec.encode`).

    The size check serialises the event anyway: the collector produces those
    bytes instead of serialising it a second time.
    """
    if not isinstance(message, Mapping):
        raise DecodeError([f"message: expected a JSON object, got {_kind(message)}"])
    call = message.get("type")
    if call not in SUPPORTED_TYPES:
        shown = "missing" if call is None else f"unknown type {_short(call)}"
        raise DecodeError([f"type: {shown}; supported: {', '.join(SUPPORTED_TYPES)}"])
    assert isinstance(call, str)

    errors: list[str] = []
    context = _object(message, "context", errors)
    properties = _object(message, "properties", errors)
    traits = _object(message, "traits", errors)
    event_id = _event_id(message, errors)
    if call == "alias":
        lead_id = _identifier(message, "userId", errors)
        anonymous_id = _identifier(message, "previousId", errors)
    else:
        lead_id = _identifier(message, "userId", errors)
        anonymous_id = _identifier(message, "anonymousId", errors)
    group_id = _identifier(message, "groupId", errors) if call == "group" else None
    try:
        occurred_at = event_time(message, received_at)
    except DecodeError as exc:
        errors += exc.errors
    if errors:
        raise DecodeError(errors)
    if call == "alias":
        if lead_id is None:
            errors.append("userId: required for an alias (the id previousId becomes)")
        if anonymous_id is None:
            errors.append("previousId: required for an alias (the id that becomes userId)")
    elif call == "group" and group_id is None:
        errors.append("groupId: required for a group call")
    if errors:
        raise DecodeError(errors)
    if lead_id is None and anonymous_id is None:
        raise DecodeError(["message: needs a userId or an anonymousId (both are missing or empty)"])

    event_type, out_properties, out_traits = _shape(
        call,
        message,
        context=context,
        properties=properties,
        traits=traits,
        group_id=group_id,
        events=events or {},
        trusted=trusted,
    )
    try:
        event = BehaviorEvent.model_validate(
            {
                "event_id": event_id,
                "type": event_type,
                "lead_id": lead_id,
                "anonymous_id": anonymous_id,
                "occurred_at": occurred_at,
                "properties": out_properties,
                "traits": out_traits,
            }
        )
    except ValidationError as exc:
        raise DecodeError(_describe(exc)) from None
    invalid = feedback_errors(event)
    if invalid:
        raise DecodeError(invalid)
    value = encode(event)
    size = len(value)
    if size > limits.MAX_MESSAGE_BYTES:
        raise DecodeError(
            [
                f"message: {size} bytes as a leadpulse event, more than "
                f"{limits.MAX_MESSAGE_BYTES} (properties or traits too large)"
            ]
        )
    return event, value


def _shape(
    call: str,
    message: Mapping[str, object],
    *,
    context: Mapping[str, object],
    properties: Mapping[str, object],
    traits: Mapping[str, object],
    group_id: str | None,
    events: Mapping[str, str],
    trusted: bool,
) -> tuple[str, dict[str, JsonValue], dict[str, JsonValue]]:
    """The event type, properties and traits of one call (ids and time already checked)."""
    kept_context = _kept_context(context)
    out_traits: dict[str, JsonValue] = {}
    if call == "track":
        event_type = _track_type(message, events, trusted)
        out_properties = _with_context(properties, kept_context)
    elif call in ("page", "screen"):
        event_type = "page_view"
        first: dict[str, object] = {}
        url = properties.get("url")
        page = context.get("page")
        if url is None and call == "page" and isinstance(page, dict):
            url = page.get("url")
        if url is not None:
            first["url"] = url
        for key in ("name", "category"):
            value = properties.get(key, message.get(key))
            if value is not None:
                first[key] = value
        out_properties = _with_context({**first, **properties}, kept_context)
    elif call == "identify":
        event_type = "identify"
        in_context = context.get("traits")
        merged = {**in_context, **traits} if isinstance(in_context, dict) else dict(traits)
        out_traits = trim_json(merged)
        out_properties = _with_context({}, kept_context)
    elif call == "alias":
        event_type = "identify"
        out_properties = _with_context({}, kept_context)
    else:  # group
        event_type = "group"
        account = {"account_id": group_id, "account_traits": traits}
        out_properties = _with_context(account, kept_context)
    return event_type, out_properties, out_traits


def _track_type(message: Mapping[str, object], events: Mapping[str, str], trusted: bool) -> str:
    name = message.get("event")
    if not isinstance(name, str) or not name:
        shown = "missing" if name is None or name == "" else f"expected a name, got {_kind(name)}"
        raise DecodeError([f"event: {shown} (a track call names its event)"])
    mapped = events.get(name)
    if mapped is not None:
        if not is_known_type(mapped):
            raise DecodeError(
                [f"event: {_short(name)} is mapped to {_short(mapped)}, not a valid event type"]
            )
        event_type = mapped
    else:
        normalised = normalise_event_name(name)
        if normalised is None:
            raise DecodeError(
                [
                    f"event: {_short(name)} has no letters or digits a leadpulse event type "
                    "can keep; map it in the model's events: table"
                ]
            )
        event_type = normalised
        if event_type in RESERVED_BY_CALL:
            raise DecodeError(
                [f"event: {_short(name)} is the {event_type} call's type; send a {event_type} call"]
            )
    if is_sales_only(event_type) and not trusted:
        raise DecodeError(
            [f"event: {_short(name)} ({event_type}) may only be sent by a sales tool's write key"]
        )
    return event_type


def _event_id(message: Mapping[str, object], errors: list[str]) -> str:
    raw = message.get("messageId")
    if raw is None or raw == "":
        try:
            return message_digest(message)
        except DecodeError as exc:
            errors += exc.errors
            return ""
    checked = _checked_id(raw, "messageId", errors)
    return checked or ""


def _identifier(message: Mapping[str, object], field: str, errors: list[str]) -> str | None:
    raw = message.get(field)
    if raw is None or raw == "":
        return None
    return _checked_id(raw, field, errors)


def _checked_id(raw: object, field: str, errors: list[str]) -> str | None:
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        errors.append(f"{field}: expected a string, got {_kind(raw)}")
        return None
    if len(raw) > limits.MAX_ID_LENGTH:
        errors.append(f"{field}: longer than {limits.MAX_ID_LENGTH} characters")
        return None
    if _CONTROL.search(raw) is not None:
        errors.append(f"{field}: must not contain control characters")
        return None
    return raw


def _object(message: Mapping[str, object], field: str, errors: list[str]) -> dict[str, object]:
    value = message.get(field)
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors.append(f"{field}: expected a JSON object, got {_kind(value)}")
        return {}
    return value


def _kept_context(context: Mapping[str, object]) -> dict[str, JsonValue]:
    kept: dict[str, JsonValue] = {}
    campaign = context.get("campaign")
    if isinstance(campaign, dict):
        values: dict[str, JsonValue] = {
            key: campaign[key][: CONTEXT_STRING_LIMITS["campaign"]]
            for key in CAMPAIGN_KEYS
            if isinstance(campaign.get(key), str) and campaign[key]
        }
        if values:
            kept["campaign"] = values
    page = context.get("page")
    referrer = page.get("referrer") if isinstance(page, dict) else None
    for key, value in (
        ("referrer", referrer),
        ("userAgent", context.get("userAgent")),
        ("ip", context.get("ip")),
    ):
        if isinstance(value, str) and value:
            kept[key] = value[: CONTEXT_STRING_LIMITS[key]]
    return kept


def _context_items(kept: Mapping[str, JsonValue]) -> int:
    campaign = kept.get("campaign")
    return 1 + len(kept) + (len(campaign) if isinstance(campaign, dict) else 0)


def _with_context(
    properties: Mapping[str, object], kept: dict[str, JsonValue]
) -> dict[str, JsonValue]:
    """Trimmed properties (a tracker's own ``context`` dropped) plus the kept context."""
    own = {key: value for key, value in properties.items() if key != "context"}
    if not kept:
        return trim_json(own)
    trimmed = trim_json(own, limits.MAX_MAP_ITEMS - _context_items(kept))
    trimmed["context"] = kept
    return trimmed


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
