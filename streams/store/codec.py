"""How a LeadState is stored: the one place that encodes and decodes it.

Format 2 (this release) is an envelope, ``{"format":2,"state":{...}}``, with
the state as `LeadState.model_dump_json` writes it; the envelope keeps the
version apart from the state's own fields. `decode_state` also reads:

- format 1, the previous release's blobs: the bare state object, no envelope;
- newer formats (``format`` > 2): their ``state`` is read, and keys this
  release does not know, in the envelope or anywhere in the state, are
  ignored, so a rollback after a newer release wrote some states still works.

Anything else (not JSON, not an object, wrong types) is a `CorruptStateError`:
the lead is dead-lettered with the reason, never retried.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from leadpulse.schemas.codec import known_fields
from leadpulse.scoring import LeadState
from leadpulse.streams.errors import CorruptStateError

FORMAT = 2
"""The version `encode_state` writes."""
_HEAD = b'{"format":2,"state":'
"""What every blob of this release starts with; the state follows, then ``}``."""
_FORMAT_1_HEAD = b'{"lead_id":'
"""How `LeadState.model_dump_json` starts: the previous release's bare blobs."""


def encode_state(state: LeadState) -> bytes:
    """Fields at their default are left out: they decode to the same value, and most
    leads never use most of them (account, sales feedback), so a lead stays small."""
    return _HEAD + state.model_dump_json(exclude_defaults=True).encode() + b"}"


def decode_state(blob: bytes, *, subject: str | None = None) -> LeadState:
    """The LeadState in `blob`, whichever format wrote it (see the module docstring)."""
    if blob.startswith(_HEAD) and blob.endswith(b"}"):
        # this release's own blobs: validated straight from the bytes (pydantic's
        # Rust parser), no dict built first; this runs for every lead of a batch
        try:
            return LeadState.model_validate_json(blob[len(_HEAD) : -1])
        except ValidationError:
            pass  # say why below, from the general path
    elif blob.startswith(_FORMAT_1_HEAD):
        # the previous release's blobs, until their lead's next commit rewrites them
        try:
            return LeadState.model_validate_json(blob)
        except ValidationError:
            pass
    return _decode_any(blob, subject)


def _decode_any(blob: bytes, subject: str | None) -> LeadState:
    try:
        document = json.loads(blob)
    except ValueError as error:  # includes bytes that are not UTF-8
        raise CorruptStateError(f"state is not JSON: {error}", subject=subject) from error
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise CorruptStateError(f"state is a JSON {kind}, not an object", subject=subject)
    if "format" not in document:
        fields: Any = document  # format 1: the bare state
    else:
        version = document["format"]
        if not isinstance(version, int) or isinstance(version, bool) or version < FORMAT:
            raise CorruptStateError(f"unknown state format {version!r}", subject=subject)
        fields = document.get("state")
        if not isinstance(fields, dict):
            reason = f"format {version} state has no 'state' object"
            raise CorruptStateError(reason, subject=subject)
    known = known_fields(fields, LeadState)  # nested models' new fields too
    try:
        # validated as JSON again: the same (JSON-mode) rules as the fast path
        return LeadState.model_validate_json(json.dumps(known))
    except ValidationError as error:
        raise CorruptStateError(
            f"state does not validate: {error.error_count()} error(s): "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()),
            subject=subject,
        ) from error
