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
from typing import Protocol

SEEN_WINDOW = 1000
"""Event ids remembered per lead for idempotency (see the module docstring)."""


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


class LeadStore(Protocol):
    """Port for lead state; RedisLeadStore and MemoryLeadStore pass one contract suite."""

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        """Read state, version, alias, outbox, and which of the given event ids were seen."""
        ...

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        """Apply commits atomically per lead; return subjects that lost a race.

        A commit loses when the version moved or the subject became an alias
        (merged into a known lead) since the snapshot.
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

    def pending_outboxes(self) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        """Every lead with unpublished messages (replayed after a restart)."""
        ...

    async def due(self, now: float, limit: int) -> dict[str, float]:
        """Leads whose next_recycle_at is <= now, with it; at most `limit` per shard."""
        ...

    async def detach(self, anonymous_id: str, lead_id: str) -> bytes | None:
        """Point the anonymous id at the lead and hand over its state for merging.

        Idempotent: called again (after a crash) it returns the same state
        until `forget_detached` confirms the merge was committed.
        """
        ...

    async def forget_detached(self, anonymous_id: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
