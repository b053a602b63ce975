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

Every key starts with the deployment's prefix (`LEADPULSE_REDIS_PREFIX`,
default ``lp``), so deployments sharing one Redis never touch each other's
keys. An id is written inside its hash tag with ``%``, ``{`` and ``}``
percent-encoded (`tag`): an id such as ``}x{`` would otherwise end the tag
early or leave it empty, and the keys of one lead would land in different
cluster slots.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache

from leadpulse.streams.kafka.partitioner import partition_of

DEFAULT_PREFIX = "lp"
PREFIX_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
"""A prefix: letters, digits, ``_ . -``; no ``:``, braces or glob characters.

The same rule as the `redis_prefix` setting's, which rejects a bad one at start."""
NAMESPACE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}(\.m[0-9a-f]{12})?")
"""A state namespace: the deployment prefix, or one `namespace_of` names after a model."""


def namespace_of(prefix: str, model_version: str) -> str:
    """The namespace `leadpulse model apply` builds a model's states in: ``<prefix>.m<digest>``.

    The digest is the version's content hash (`ScoringModel.model_version` ends
    ``+<12 hex>``), so one model's namespace has one name whatever its label.
    """
    digest = model_version.rpartition("+")[2]
    if not re.fullmatch(r"[0-9a-f]{12}", digest):
        digest = hashlib.sha256(model_version.encode()).hexdigest()[:12]
    return f"{prefix}.m{digest}"


PREVIOUS_DUE_SHARDS = 16
"""The previous release kept its due index in 16 shards keyed by CRC-32."""

ENCODED = "%x"
"""How an encoded tag starts: the id's UTF-8 bytes in hex follow."""


def tag(subject: str) -> str:
    """`subject` as written inside a hash tag.

    An id with ``{`` or ``}`` would end the tag early or leave it empty (then
    Redis Cluster hashes the whole key, and one lead's keys land in different
    slots): it is written as ``%x`` and its UTF-8 bytes in hex, as are the
    empty id (an empty tag) and an id that starts with ``%x`` itself. Every
    other id is written as it is, so the keys of nearly all ids are those
    earlier releases wrote. Injective.
    """
    if not subject or "{" in subject or "}" in subject or subject.startswith(ENCODED):
        return ENCODED + subject.encode("utf-8", "surrogatepass").hex()
    return subject


def untag(text: str) -> str:
    """The subject `tag` wrote as `text`."""
    if text.startswith(ENCODED):
        return bytes.fromhex(text[len(ENCODED) :]).decode("utf-8", "surrogatepass")
    return text


def layout_id(partitions: int) -> str:
    """Names the index layout: shards are the partitions of a `partitions`-partition topic.

    ``+tag`` marks ids encoded inside their hash tags (`tag`); a store without
    it may still hold keys of ids with braces under their raw spelling
    (`Keys.legacy_pattern`), which re-indexing moves.
    """
    return f"kafka-partition/{partitions}+tag"


LEAD_KEY_KINDS = frozenset({"state", "outbox", "alias", "detached"})
"""The keys named by a lead (or anonymous) id."""


@dataclass(frozen=True, slots=True)
class Keys:
    """The key names of one deployment, all under `prefix`."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        if not NAMESPACE_PATTERN.fullmatch(self.prefix):
            raise ValueError(
                f"Redis key prefix {self.prefix!r}: 1-32 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit"
            )

    def state(self, lead: str) -> str:
        """Hash: ``v`` version counter, ``s`` serialised LeadState, ``w`` seen window.

        ``w`` holds the 12-byte BLAKE2b digests of the last ``seen_window`` event
        ids applied to the lead (idempotency), concatenated oldest first; see
        `streams.store.redis.wire.id_digest`. Absent until an id is recorded. After a
        merge (`detach`) an anonymous id's hash keeps only ``w``. An anonymous
        visitor's hash expires after the store's inactivity TTL.
        """
        return f"{self.prefix}:{{{tag(lead)}}}:state"

    def outbox(self, lead: str) -> str:
        """Hash of decided-but-unpublished messages: id -> encoded message."""
        return f"{self.prefix}:{{{tag(lead)}}}:outbox"

    def alias(self, anonymous_id: str) -> str:
        """String: the lead an anonymous id was merged into (expires with inactivity)."""
        return f"{self.prefix}:{{{tag(anonymous_id)}}}:alias"

    def detached(self, anonymous_id: str) -> str:
        """An anonymous state taken for a merge, kept until the merge is committed."""
        return f"{self.prefix}:{{{tag(anonymous_id)}}}:detached"

    def due_shard(self, shard: int) -> str:
        """Sorted set: lead -> next_recycle_at (epoch seconds), for one partition."""
        return f"{self.prefix}:due:{{{shard}}}"

    def due(self, lead: str, partitions: int) -> str:
        """The due-index shard that holds `lead`."""
        return self.due_shard(shard_of(lead, partitions))

    def pending(self, shard: int) -> str:
        """Set: the leads of one partition whose outbox is (or was just) non-empty.

        Replaces a keyspace SCAN on assignment; may hold stale members (a crash
        between clearing an outbox and removing the lead), which readers drop.
        """
        return f"{self.prefix}:pending:{{{shard}}}"

    @property
    def hot(self) -> str:
        """Sorted set: known lead -> engagement at its last commit, the `hot_size` highest.

        One key for all partitions (the hot-leads page reads every worker's leads);
        written once per batch, after the scripts.
        """
        return f"{self.prefix}:hot"

    @property
    def layout(self) -> str:
        """String: the index layout the indexes were last built for (see `layout_id`)."""
        return f"{self.prefix}:layout"

    @property
    def model(self) -> str:
        """String: the model the namespace's states are built with (JSON, `store.models`).

        Its version, source text, origin, when recorded and the history of changes.
        """
        return f"{self.prefix}:model"

    @property
    def outbox_pattern(self) -> str:
        """SCAN pattern of every lead's outbox (only for re-indexing after an upgrade)."""
        return f"{self.prefix}:{{*}}:outbox"

    @property
    def legacy_pattern(self) -> str:
        """SCAN pattern of lead keys an earlier release wrote with braces raw in the tag.

        `tag` never writes a brace, so only such keys match.
        """
        return f"{self.prefix}:{{*[{{}}]*}}:*"

    def legacy_moves(self, key: str) -> tuple[str, str] | None:
        """(old, new) name of a key `legacy_pattern` matched, or None if it is no lead key."""
        rest = key[len(self.prefix) + 2 :]
        subject, sep, kind = rest.rpartition("}:")
        name = getattr(self, kind, None) if kind in LEAD_KEY_KINDS else None
        if not sep or name is None:
            return None
        new: str = name(subject)
        return None if new == key else (key, new)

    @property
    def state_pattern(self) -> str:
        """SCAN pattern of every lead's and visitor's state (`leadpulse model apply`'s rescore)."""
        return f"{self.prefix}:{{*}}:state"

    def subject_of_state(self, key: str) -> str:
        """The subject of a state key ``<prefix>:{<subject>}:state``."""
        return untag(key[len(self.prefix) + 2 : -len("}:state")])

    def subject_of_outbox(self, key: str) -> str:
        """The subject of an outbox key ``<prefix>:{<subject>}:outbox``."""
        return untag(key[len(self.prefix) + 2 : -len("}:outbox")])

    def progress(self, topic: str) -> str:
        """Hash: partition -> next offset to read, recorded after the states were committed."""
        return f"{self.prefix}:progress:{{{tag(topic)}}}"

    def fence(self, topic: str) -> str:
        """Hash ``phase``/``to``/``at``: this namespace is being switched away from (`Fence`).

        Same hash tag as `progress`: recording progress checks it in one script.
        """
        return f"{self.prefix}:fence:{{{tag(topic)}}}"

    def namespace_patterns(self) -> tuple[str, ...]:
        """SCAN patterns of every key of this namespace's states (what `model gc` deletes).

        Not the deployment's own keys under the same prefix (`active`,
        `namespaces`, `apply`, the deliverer's): a namespace named like its
        deployment shares the prefix with them.
        """
        p = self.prefix
        return (
            f"{p}:{{*}}:state",
            f"{p}:{{*}}:outbox",
            f"{p}:{{*}}:alias",
            f"{p}:{{*}}:detached",
            f"{p}:due:*",
            f"{p}:pending:*",
            f"{p}:progress:*",
            f"{p}:fence:*",
            f"{p}:watermarks:*",
            f"{p}:watermarks-live:*",
        )

    def namespace_keys(self) -> tuple[str, ...]:
        """The namespace's keys with fixed names (deleted with `namespace_patterns`)."""
        return (self.hot, self.layout, self.model)

    # -- the deployment: which namespace is active, and the apply under way -----------

    @property
    def active(self) -> str:
        """String: the namespace the workers score in (JSON `Active`); absent: the prefix."""
        return f"{self.prefix}:active"

    @property
    def namespaces(self) -> str:
        """Hash: namespace -> JSON `NamespaceInfo` (its model, when built, when retired)."""
        return f"{self.prefix}:namespaces"

    @property
    def apply(self) -> str:
        """String: the latest `leadpulse model apply`'s progress (JSON `ApplyStatus`)."""
        return f"{self.prefix}:apply"

    def watermarks(self, topic: str) -> str:
        """Hash: partition -> event-time watermark (epoch seconds) its owner last published."""
        return f"{self.prefix}:watermarks:{{{tag(topic)}}}"

    def watermarks_live(self, topic: str) -> str:
        """Hash: partition -> wall-clock time its watermark was last live (caught up or moving).

        Same hash tag as `watermarks`: both are written and read in one round trip.
        """
        return f"{self.prefix}:watermarks-live:{{{tag(topic)}}}"

    # -- the deliverer (`leadpulse deliver`): one hash tag per destination ------------

    def delivery_due(self, destination: str) -> str:
        """Sorted set: webhook id -> epoch seconds its next attempt is due (or its lease ends).

        Taking a job moves it to now + lease, so another deliverer (or this one
        after a crash) tries it again only once the lease ran out.
        """
        return f"{self.prefix}:{{dlv:{tag(destination)}}}:due"

    def delivery_jobs(self, destination: str) -> str:
        """Hash: webhook id -> the job (JSON: message kind, message, attempts so far)."""
        return f"{self.prefix}:{{dlv:{tag(destination)}}}:jobs"

    def delivered(self, destination: str, webhook_id: str) -> str:
        """String ``ok`` or ``dlq`` with a TTL: this id is finished, a replay must not resend it."""
        return f"{self.prefix}:{{dlv:{tag(destination)}}}:done:{webhook_id}"

    def destination_disabled(self, destination: str) -> str:
        """String: why the destination was disabled (it answered 410 Gone); absent when enabled."""
        return f"{self.prefix}:{{dlv:{tag(destination)}}}:disabled"


@lru_cache(maxsize=1 << 14)
def shard_of(subject: str, partitions: int) -> int:
    """The partition Kafka's default partitioner sends the key `subject` to.

    The same formula as the Java client, kafka-python and aiokafka, so a
    subject's index entries live in the shard of the partition its events
    arrive on (`streams.kafka.partitioner`, the one implementation). Cached
    (about 2.5 MB when full): murmur2 in Python takes about a microsecond per
    key, and a batch asks about its leads repeatedly.
    """
    return partition_of(subject.encode(), partitions)


DEFAULT = Keys()
"""The keys under the default prefix: what tests and tools outside a deployment use."""
