"""Wire-level helpers of the Redis store: command packing and seen-window digests."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import hiredis

from leadpulse.streams.store.base import SEEN_WINDOW

DIGEST_SIZE = 12
"""Bytes of an event id's digest in a lead's seen window (96-bit BLAKE2b)."""


def pack(commands: Sequence[tuple[Any, ...]]) -> bytes:
    """Commands in the Redis protocol, packed by hiredis (C).

    redis-py 8's asyncio connection packs in pure Python; with two commands
    per lead per batch that was 17 % of the scoring agent's batch work in a
    py-spy profile of the throughput benchmark.
    """
    return b"".join(hiredis.pack_command(command) for command in commands)


def id_digest(event_id: str) -> bytes:
    """What a seen window stores for an event id: 12 bytes whatever the id's length.

    Two different ids share a digest with probability 2**-96 per pair, so an
    event is wrongly taken for a duplicate with probability below
    seen_window * 2**-96 (about 1e-26 for the default window).
    """
    return hashlib.blake2b(event_id.encode(), digest_size=DIGEST_SIZE).digest()


def window_field(event_ids: Sequence[str], window: int = SEEN_WINDOW) -> bytes:
    """Field ``w`` of a lead that recorded `event_ids` (oldest first) in one commit."""
    return b"".join(id_digest(i) for i in event_ids[-window:])


def lead_fields(
    version: int, state: bytes, event_ids: Sequence[str], window: int = SEEN_WINDOW
) -> dict[str, bytes]:
    """The hash `keys.state` holds for a lead at `version` that recorded `event_ids`.

    What the commit script writes, for bulk loading (benchmarks, imports) with
    plain HSET; not atomic with anything, so never for a live lead.
    """
    fields = {"v": str(version).encode(), "s": state}
    if event_ids:
        fields["w"] = window_field(event_ids, window)
    return fields


def in_window(digest: bytes, window: bytes) -> bool:
    """Whether `window` holds `digest` as one of its aligned entries.

    A search in C instead of a set of every entry: a snapshot asks about a
    few ids, a window holds up to a thousand.
    """
    at = window.find(digest)
    while at != -1:
        if at % DIGEST_SIZE == 0:
            return True
        at = window.find(digest, at + 1)
    return False
