"""Every Redis key leadpulse uses, in one place.

All keys of one lead share the hash tag ``{<lead>}`` so one Lua script can
update them atomically on Redis Cluster. A lead at rest is one key (its
``state`` hash) plus one member in a due-index shard; ``outbox`` exists only
while messages wait for Kafka, ``alias``/``detached`` only for merged
anonymous ids.

The due index and the pending-outbox index are sharded by the Kafka partition
of the events topic that a subject's key maps to (`shard_of`), one key per
shard with the shard as hash tag: the worker that owns a partition reads only
its shards, and the shards spread over a cluster.
"""

from __future__ import annotations

from functools import lru_cache

from kafka.partitioner.default import murmur2

PREFIX = "lp"


def state(lead: str) -> str:
    """Hash: ``v`` version counter, ``s`` serialised LeadState, ``w`` seen window.

    ``w`` holds the 12-byte BLAKE2b digests of the last ``seen_window`` event
    ids applied to the lead (idempotency), concatenated oldest first; see
    `streams.store.redis.wire.id_digest`. Absent until an id is recorded. After a
    merge (`detach`) an anonymous id's hash keeps only ``w``. An anonymous
    visitor's hash expires after the store's inactivity TTL.
    """
    return f"{PREFIX}:{{{lead}}}:state"


def outbox(lead: str) -> str:
    """Hash of decided-but-unpublished messages: id -> encoded message."""
    return f"{PREFIX}:{{{lead}}}:outbox"


def alias(anonymous_id: str) -> str:
    """String: the lead an anonymous id was merged into (expires with inactivity)."""
    return f"{PREFIX}:{{{anonymous_id}}}:alias"


def detached(anonymous_id: str) -> str:
    """An anonymous state taken for a merge, kept until the merge is committed."""
    return f"{PREFIX}:{{{anonymous_id}}}:detached"


def due_shard(shard: int) -> str:
    """Sorted set: lead -> next_recycle_at (epoch seconds), for one partition."""
    return f"{PREFIX}:due:{{{shard}}}"


def pending(shard: int) -> str:
    """Set: the leads of one partition whose outbox is (or was just) non-empty.

    Replaces a keyspace SCAN on assignment; may hold stale members (a crash
    between clearing an outbox and removing the lead), which readers drop.
    """
    return f"{PREFIX}:pending:{{{shard}}}"


HOT = f"{PREFIX}:hot"
"""Sorted set: known lead -> engagement at its last commit, the `hot_size` highest.

One key for all partitions (the hot-leads page reads every worker's leads);
written once per batch, after the scripts.
"""

LAYOUT = f"{PREFIX}:layout"
"""String: the index layout the indexes were last built for (see `layout_id`)."""

PREVIOUS_DUE_SHARDS = 16
"""The previous release kept its due index in 16 shards keyed by CRC-32."""

OUTBOX_PATTERN = f"{PREFIX}:{{*}}:outbox"
"""SCAN pattern of every lead's outbox (only for re-indexing after an upgrade)."""


def layout_id(partitions: int) -> str:
    """Names the index layout: shards are the partitions of a `partitions`-partition topic."""
    return f"kafka-partition/{partitions}"


def subject_of_outbox(key: str) -> str:
    """The subject of an outbox key `lp:{<subject>}:outbox`."""
    return key[len(PREFIX) + 2 : -len("}:outbox")]


def progress(topic: str) -> str:
    """Hash: partition -> next offset to read, recorded after the states were committed."""
    return f"{PREFIX}:progress:{{{topic}}}"


def watermarks(topic: str) -> str:
    """Hash: partition -> event-time watermark (epoch seconds) its owner last published."""
    return f"{PREFIX}:watermarks:{{{topic}}}"


def watermarks_live(topic: str) -> str:
    """Hash: partition -> wall-clock time its watermark was last live (caught up or moving).

    Same hash tag as `watermarks`: both are written and read in one round trip.
    """
    return f"{PREFIX}:watermarks-live:{{{topic}}}"


@lru_cache(maxsize=1 << 14)
def shard_of(subject: str, partitions: int) -> int:
    """The partition Kafka's default partitioner sends the key `subject` to.

    The same formula as the Java client, kafka-python and aiokafka, so a
    subject's index entries live in the shard of the partition its events
    arrive on. Cached (about 2.5 MB when full): kafka-python's pure-Python
    murmur2 takes 2-6 us per key, and a batch asks about its leads repeatedly.
    """
    return int(murmur2(subject.encode()) & 0x7FFFFFFF) % partitions


def due(lead: str, partitions: int) -> str:
    """The due-index shard that holds `lead`."""
    return due_shard(shard_of(lead, partitions))


# -- the deliverer (`leadpulse deliver`): one hash tag per destination ----------------


def delivery_due(destination: str) -> str:
    """Sorted set: webhook id -> epoch seconds its next attempt is due (or its lease ends).

    Taking a job moves it to now + lease, so another deliverer (or this one
    after a crash) tries it again only once the lease ran out.
    """
    return f"{PREFIX}:{{dlv:{destination}}}:due"


def delivery_jobs(destination: str) -> str:
    """Hash: webhook id -> the job (JSON: message kind, message, attempts so far)."""
    return f"{PREFIX}:{{dlv:{destination}}}:jobs"


def delivered(destination: str, webhook_id: str) -> str:
    """String ``ok`` or ``dlq`` with a TTL: this id was finished, a replay must not resend it."""
    return f"{PREFIX}:{{dlv:{destination}}}:done:{webhook_id}"


def destination_disabled(destination: str) -> str:
    """String: why the destination was disabled (it answered 410 Gone); absent when enabled."""
    return f"{PREFIX}:{{dlv:{destination}}}:disabled"
