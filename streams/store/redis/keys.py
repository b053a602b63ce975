"""Every Redis key leadpulse uses, in one place.

All keys of one lead share the hash tag ``{<lead>}`` so one Lua script can
update them atomically on Redis Cluster. A lead at rest is one key (its
``state`` hash) plus one member in a due-index shard; ``outbox`` exists only
while messages wait for Kafka, ``alias``/``detached`` only for merged
anonymous ids. The due-index is sharded into
``due_shards`` sorted sets, each its own hash tag, so it spreads over a
cluster and a sweep touches only the shards it reads.
"""

from __future__ import annotations

import zlib

PREFIX = "lp"


def state(lead: str) -> str:
    """Hash: ``v`` version counter, ``s`` serialised LeadState, ``w`` seen window.

    ``w`` holds the 12-byte BLAKE2b digests of the last ``seen_window`` event
    ids applied to the lead (idempotency), concatenated oldest first; see
    `streams.store.redis.wire.id_digest`. Absent until an id is recorded. After a
    merge (`detach`) an anonymous id's hash keeps only ``w``.
    """
    return f"{PREFIX}:{{{lead}}}:state"


def outbox(lead: str) -> str:
    """Hash of decided-but-unpublished messages: id -> encoded message."""
    return f"{PREFIX}:{{{lead}}}:outbox"


def alias(anonymous_id: str) -> str:
    """String: the lead an anonymous id was merged into."""
    return f"{PREFIX}:{{{anonymous_id}}}:alias"


def detached(anonymous_id: str) -> str:
    """An anonymous state taken for a merge, kept until the merge is committed."""
    return f"{PREFIX}:{{{anonymous_id}}}:detached"


def due_shard(shard: int) -> str:
    """Sorted set: lead -> next_recycle_at (epoch seconds)."""
    return f"{PREFIX}:due:{{{shard}}}"


def shard_of(lead: str, shards: int) -> int:
    return zlib.crc32(lead.encode()) % shards


def due(lead: str, shards: int) -> str:
    return due_shard(shard_of(lead, shards))


OUTBOX_PATTERN = f"{PREFIX}:{{*}}:outbox"
"""SCAN pattern for pending outboxes after a restart."""
