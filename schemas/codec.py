"""The only place bytes become messages and messages become bytes.

Every failure is a `DecodeError` whose `errors` are short, human-readable
lines of the form ``field.path: problem`` so an operator reading the DLQ can
fix the tracker without reading code.
"""

from __future__ import annotations

import base64
import hashlib
import json
import typing
from datetime import datetime, timedelta
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from leadpulse.schemas import limits
from leadpulse.schemas.feedback import feedback_errors
from leadpulse.schemas.messages import (
    IDENTIFIER_PATTERN,
    BehaviorEvent,
    DeadLetter,
    Handoff,
    StageTransition,
)

M = TypeVar("M", bound=BaseModel)


class DecodeError(ValueError):
    """Input that cannot become a message; `errors` says why, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))

    @property
    def reason(self) -> str:
        return str(self)


def _loc(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def _describe(error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        loc = _loc(tuple(item["loc"]))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "json_invalid":
            lines.append(f"invalid JSON: {item['ctx'].get('error', message)}")
        elif item["type"] == "string_pattern_mismatch" and (
            item["ctx"].get("pattern") == IDENTIFIER_PATTERN
        ):
            lines.append(f"{loc}: must not contain control characters")
        elif item["type"] in ("model_type", "dict_type"):
            lines.append(f"{loc or 'message'}: expected a JSON object")
        elif not loc:
            lines.append(f"message: {message}")
        else:
            lines.append(f"{loc}: {message}")
    return lines


def decode(data: bytes | str, model: type[M]) -> M:
    """Parse and validate one JSON message, or raise DecodeError."""
    if isinstance(data, bytes):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError([f"message: not UTF-8 (byte {exc.start}: {exc.reason})"]) from None
    if not data or not data.strip():
        raise DecodeError(["message: empty"])
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        raise DecodeError(_describe(exc)) from None


def decode_event(
    data: bytes | str, *, now: datetime | None = None, latest: datetime | None = None
) -> BehaviorEvent:
    """Decode a tracker event and bound its time.

    `latest` is the Kafka record timestamp plus the allowed skew, computed by
    the caller: a later occurred_at is clamped to it, the tracker's value kept
    in `reported_at`, so a fast tracker clock cannot move a lead's clock into
    the future. Without `latest` (validating a file), `now` rejects events
    more than MAX_FUTURE_SKEW_SECONDS ahead as clock bugs. The size limit
    applies to tracker input only: leadpulse's own messages (a dead letter
    embeds a whole rejected payload) may be larger. A feedback event
    (`schemas.feedback`) whose properties do not match its type is rejected,
    each line naming the property.
    """
    size = len(data) if isinstance(data, bytes) else len(data.encode())
    if size > limits.MAX_MESSAGE_BYTES:
        raise DecodeError([f"message: larger than {limits.MAX_MESSAGE_BYTES} bytes"])
    event = decode(data, BehaviorEvent)
    invalid = feedback_errors(event)
    if invalid:
        raise DecodeError(invalid)
    if event.reported_at is not None:
        # set only by the clamp below: a tracker cannot claim its time was clamped
        event = event.model_copy(update={"reported_at": None})
    if latest is not None:
        if latest.tzinfo is None or latest.utcoffset() is None:
            raise ValueError(f"latest={latest.isoformat()} has no timezone")
        if event.occurred_at <= latest:
            return event
        if latest.year < limits.MIN_EVENT_YEAR:
            raise DecodeError(
                [
                    f"occurred_at: {event.occurred_at.isoformat()} is later than the record "
                    f"time allows ({latest.isoformat()}), which is not a real event time"
                ]
            )
        return event.model_copy(update={"occurred_at": latest, "reported_at": event.occurred_at})
    if now is not None:
        bound = now + timedelta(seconds=limits.MAX_FUTURE_SKEW_SECONDS)
        if event.occurred_at > bound:
            raise DecodeError(
                [
                    f"occurred_at: {event.occurred_at.isoformat()} is more than "
                    f"{limits.MAX_FUTURE_SKEW_SECONDS // 3600}h in the future"
                ]
            )
    return event


def encode(message: BaseModel) -> bytes:
    """Compact JSON, UTF-8; the wire form of every leadpulse message."""
    return message.model_dump_json(exclude_none=False).encode()


def decode_transition(data: bytes | str, *, lenient: bool = False) -> StageTransition:
    """A transition; `lenient` ignores fields this release does not know.

    Lenient is for reading back what a newer release may have written (an
    outbox entry during a rolling upgrade); messages from outside stay strict.
    """
    return decode_lenient(data, StageTransition) if lenient else decode(data, StageTransition)


def decode_lenient(data: bytes | str, model: type[M]) -> M:
    """`decode`, but fields unknown to `model` (at any depth of nested models) are dropped."""
    try:
        parsed = json.loads(data)
    except ValueError:
        return decode(data, model)  # the strict path words the error
    try:
        return model.model_validate(known_fields(parsed, model))
    except ValidationError as exc:
        raise DecodeError(_describe(exc)) from None


def known_fields(value: object, model: type[BaseModel]) -> object:
    """`value` (parsed JSON) with the keys `model` and its nested models do not know dropped.

    For reading what a newer release wrote: its new fields are ignored, at any depth.
    """
    if not isinstance(value, dict):
        return value
    kept: dict[str, object] = {}
    for name, info in model.model_fields.items():
        if name not in value:
            continue
        inner = _nested_model(info.annotation)
        item = value[name]
        if inner is not None and isinstance(item, list):
            kept[name] = [known_fields(x, inner) for x in item]
        elif inner is not None:
            kept[name] = known_fields(item, inner)
        else:
            kept[name] = item
    return kept


def _nested_model(annotation: object) -> type[BaseModel] | None:
    """The model a field holds directly, optionally or as list items, if any.

    Maps of models are left alone: their keys are data, not field names.
    """
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) is dict:
        return None
    for arg in typing.get_args(annotation):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def decode_handoff(data: bytes | str) -> Handoff:
    return decode(data, Handoff)


def decode_dead_letter(data: bytes | str) -> DeadLetter:
    return decode(data, DeadLetter)


def dead_letter(
    payload: bytes | None,
    error: DecodeError | str,
    *,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    failed_at: datetime,
    lead_id: str | None = None,
    max_payload: int = limits.MAX_DEAD_LETTER_PAYLOAD,
    kind: str | None = None,
    replay_of: str | None = None,
) -> DeadLetter:
    """Wrap rejected bytes: readable UTF-8 when that is compact, else base64.

    Control characters cost six bytes each as JSON escapes, so the shorter of
    the two forms is kept; a payload whose shorter form still exceeds
    `max_payload` (default MAX_DEAD_LETTER_PAYLOAD) is cut to a prefix, with
    its size and SHA-256, so every letter fits a Kafka request and the worker
    never stalls on one.
    """
    raw = payload or b""
    as_base64 = base64.b64encode(raw).decode("ascii")
    text, encoding, size = as_base64, "base64", len(as_base64)
    try:
        readable = raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        escaped = len(json.dumps(readable, ensure_ascii=False).encode()) - 2
        if escaped <= size:
            text, encoding, size = readable, "utf-8", escaped
    truncated = size > max_payload
    if truncated:
        keep = max_payload * 3 // 4
        text, encoding = base64.b64encode(raw[:keep]).decode("ascii"), "base64"
    errors = error.errors if isinstance(error, DecodeError) else [error]
    key_text: str | None = None
    if key is not None:
        try:
            key_text = key.decode("utf-8")
        except UnicodeDecodeError:
            key_text = "base64:" + base64.b64encode(key).decode("ascii")
    return DeadLetter(
        reason="; ".join(errors),
        errors=errors,
        kind=kind,
        payload=text,
        payload_encoding="utf-8" if encoding == "utf-8" else "base64",
        key=key_text,
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        lead_id=lead_id,
        failed_at=failed_at,
        truncated=truncated,
        payload_size=len(raw),
        payload_sha256=hashlib.sha256(raw).hexdigest(),
        replay_of=replay_of,
    )


REPLAY_HEADER = "leadpulse-replay-of"
"""Kafka header of a record `leadpulse dlq replay` re-injected: the letter's id."""


def letter_id(partition: int, offset: int) -> str:
    """A letter's id: where it is in the DLQ topic, ``PARTITION:OFFSET``."""
    return f"{partition}:{offset}"


def original_key(letter: DeadLetter) -> bytes | None:
    """The rejected record's key as it was (`dead_letter` wrote non-UTF-8 as ``base64:``)."""
    if letter.key is None:
        return None
    if letter.key.startswith("base64:"):
        return base64.b64decode(letter.key[len("base64:") :])
    return letter.key.encode("utf-8")


def original_payload(letter: DeadLetter) -> bytes:
    """The rejected bytes, for replay after a fix (only a prefix if `truncated`)."""
    if letter.payload_encoding == "base64":
        return base64.b64decode(letter.payload)
    return letter.payload.encode("utf-8")
