"""The lead state store port: what the pipeline needs from wherever state lives.

The store keeps opaque state blobs with a version counter; callers read a
snapshot, compute the new state in Python (scoring is pure), and commit with
compare-and-set on the version. A commit also records the applied event ids
(idempotency) and the decided messages (outbox) in the same atomic step, so
a crash anywhere leaves either nothing or everything of one update.

Idempotency window: a store remembers the last `seen_window` event ids
recorded for a lead (default `SEEN_WINDOW`), in commit order. An id is reported
as seen while fewer than `seen_window` ids were recorded for the lead after it,
so a re-delivered event counts once unless the lead took `seen_window` newer
event ids in between (Kafka re-delivers what came after the last committed
offset, a few seconds of traffic), and a lead's memory stays bounded however
many events it gets. Every id in a commit takes a slot, even one recorded
before; callers record only ids their snapshot did not report as seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from leadpulse.streams.store.models import Fence, ModelRecord

SEEN_WINDOW = 1000
"""Event ids remembered per lead for idempotency (see the module docstring)."""
HOT_SIZE = 10_000
"""Known leads the hot-leads index keeps: the most engaged at their last evaluation."""
ANONYMOUS_TTL = 90 * 86400.0
"""Default seconds of inactivity after which an anonymous visitor's state and alias expire."""


@dataclass(frozen=True, slots=True)
class Watermark:
    """A partition's shared event-time watermark and when it was last known to be live.

    `live_at` is the wall-clock time the owner last saw the partition caught up
    or moving; a watermark not live for a while belongs to a stalled partition,
    a dead owner or a partition that no longer exists, and must not hold every
    worker's sweeps back. None: written by a release that did not record it.
    """

    at: float
    live_at: float | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a lead looks like now, for one read-compute-commit round."""

    subject: str
    state: bytes | None
    version: int
    alias: str | None
    seen: frozenset[str]
    """The subset of the asked-about event ids already applied (within the window)."""
    outbox: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Commit:
    """One lead's update: applied only if nobody committed since `expected_version`."""

    subject: str
    expected_version: int
    state: bytes
    event_ids: Sequence[str]
    """Ids to remember as applied, oldest first; the last `seen_window` are kept."""
    outbox: Mapping[str, bytes] = field(default_factory=dict)
    due_at: float | None = None
    """Next time decay alone could recycle the lead; None removes it from the index."""
    anonymous: bool = False
    """An anonymous visitor's state: it expires after the store's inactivity TTL."""
    hot: float | None = None
    """Engagement at the lead's clock, for the hot-leads index; None leaves it out."""


class LeadStore(Protocol):
    """Port for lead state; RedisLeadStore and MemoryLeadStore pass one contract suite.

    A store is built for one events topic with `partitions` partitions: the
    due index and the pending-outbox index are sharded by the partition a
    subject's key maps to (`keys.shard_of`, Kafka's default partitioner), so
    the worker that owns a partition is the one that sweeps and replays it.
    """

    partitions: int
    """The events topic's partition count: the shards are 0 .. partitions - 1."""

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        """Read state, version, alias, outbox, and which of the given event ids were seen."""
        ...

    async def peek(self, subjects: Collection[str]) -> dict[str, Snapshot]:
        """Read state, version, alias and outbox, writing nothing (for readers: pages, CLI).

        Unlike `snapshot`, reading an alias does not extend its inactivity TTL:
        looking at a visitor is not the visitor being active.
        """
        ...

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        """Apply commits atomically per lead; return subjects that lost a race.

        A commit loses when the version moved or the subject became an alias
        (merged into a known lead) since the snapshot. Winning commits with
        outbox entries are added to the pending-outbox index of their shard.
        """
        ...

    async def index_due(self, due_at: Mapping[str, float | None]) -> None:
        """Set (or, for None, remove) leads' next_recycle_at in the due index.

        `commit` does this after its scripts; it is a separate step because the
        index lives in other cluster slots, so a crash in between is repaired by
        calling it again when the events are re-delivered.
        """
        ...

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        """Forget outbox entries whose publication Kafka acknowledged."""
        ...

    def pending_outboxes(
        self, shards: Collection[int]
    ) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        """Every lead of these shards with unpublished messages (replayed on assignment)."""
        ...

    async def pending_count(self, shards: Collection[int]) -> int:
        """How many leads of these shards the pending-outbox index holds (for metrics).

        An upper bound: a stale member (its outbox emptied, the index not yet)
        counts until a replay or a later publish drops it.
        """
        ...

    async def due(self, now: float, limit: int, shards: Collection[int]) -> dict[str, float]:
        """Leads of these shards whose next_recycle_at is <= now; at most `limit` per shard."""
        ...

    async def detach(self, links: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """For each (anonymous id, lead id): alias the anonymous id, hand over its history.

        One merge per visitor: the first lead to detach an anonymous id gets
        its state (and gets it again, idempotently, until `forget_detached`);
        a later link of the same id to another lead gets None and only keeps
        the alias pointing at the first. One round trip for all links.
        """
        ...

    async def forget_detached(self, anonymous_ids: Collection[str]) -> None:
        """Drop handed-over states whose merge was committed."""
        ...

    async def hot(self, limit: int) -> list[tuple[str, float]]:
        """The hot-leads index, most engaged first: (lead, engagement at its last commit).

        Winning commits with a `Commit.hot` value enter it (one step per
        batch, after the scripts); it keeps the `hot_size` highest, and a lead
        leaves it when it is merged away (`detach`) or `drop_hot`. The scores
        are as of each lead's last commit, not decayed to now: readers take
        more than they show and score them again.
        """
        ...

    async def drop_hot(self, leads: Collection[str]) -> None:
        """Take leads out of the hot-leads index (readers found them gone or merged)."""
        ...

    async def rescore_hot(self, scores: Mapping[str, float]) -> None:
        """Set the index's value of leads it still holds; others are not added.

        Readers write back the engagement they computed at now, so leads that
        cooled since their last commit stop taking the top ranks from leads
        that are hot now. A commit racing with it may be overwritten by the
        reader's (older) value until the lead's next commit.
        """
        ...

    async def record_progress(self, topic: str, offsets: Mapping[int, int]) -> None:
        """Remember the next offset to read per partition, after the states were committed.

        Max-only: an offset below the recorded one is ignored, so a batch that
        outlived a rebalance cannot move a partition's record backwards (the
        record going back is how a worker notices that Redis lost data).
        `models.FencedError`, recording nothing, once the namespace's fence for
        `topic` is `FENCED` (checked in the same atomic step).
        """
        ...

    async def fence(self, topic: str) -> Fence | None:
        """The namespace's fence for `topic` (`leadpulse model apply` switching away), if any."""
        ...

    async def set_fence(self, topic: str, fence: Fence | None) -> None:
        """Set (or with None lift) the namespace's fence for `topic`."""
        ...

    async def progress(self, topic: str) -> dict[int, int]:
        """The recorded next offsets per partition of `topic` (a worker resumes from them)."""
        ...

    async def publish_watermarks(self, topic: str, marks: Mapping[int, Watermark]) -> None:
        """Share partitions' event-time watermarks with the other workers."""
        ...

    async def watermarks(self, topic: str) -> dict[int, Watermark]:
        """Every partition's last published watermark."""
        ...

    async def recorded_model(self) -> ModelRecord | None:
        """The model the namespace's states are built with; None before a worker recorded one.

        `models.ModelRecordError` if the stored record cannot be read.
        """
        ...

    async def record_model(
        self, record: ModelRecord, *, replacing: str | None
    ) -> ModelRecord | None:
        """Store `record` if the recorded version is `replacing` (None: nothing recorded yet).

        Compare-and-set in one atomic step: returns the record stored now,
        `record` if it was written, else the one another writer recorded
        first, unchanged; None if nothing is recorded and `replacing` named a
        version. Workers starting together with the same model thus
        all see their version recorded, and only one history entry is added.
        """
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
