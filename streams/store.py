"""The lead state store port, and its in-memory implementation for fast tests.

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

from collections import Counter, deque
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


class MemoryLeadStore:
    """Dict-backed LeadStore with the same semantics as the Redis one."""

    def __init__(self, due_shards: int = 16, seen_window: int = SEEN_WINDOW) -> None:
        if seen_window < 1:
            raise ValueError("seen_window must be at least 1")
        self.states: dict[str, tuple[int, bytes]] = {}
        self.seen: dict[str, _Window] = {}
        self.outboxes: dict[str, dict[str, bytes]] = {}
        self.aliases: dict[str, str] = {}
        self.detached: dict[str, bytes] = {}
        self.due_index: dict[str, float] = {}
        self.due_shards = due_shards
        self.seen_window = seen_window

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        result = {}
        for subject, ids in wanted.items():
            version, blob = self.states.get(subject, (0, None))
            seen = self.seen.get(subject, _EMPTY)
            result[subject] = Snapshot(
                subject=subject,
                state=blob,
                version=version,
                alias=self.aliases.get(subject),
                seen=frozenset(i for i in ids if i in seen),
                outbox=dict(self.outboxes.get(subject, {})),
            )
        return result

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        lost = set()
        for c in commits:
            version = self.states.get(c.subject, (0, b""))[0]
            if version != c.expected_version or c.subject in self.aliases:
                lost.add(c.subject)
                continue
            self.states[c.subject] = (version + 1, c.state)
            if c.event_ids:
                window = self.seen.setdefault(c.subject, _Window(self.seen_window))
                window.extend(c.event_ids)
            if c.outbox:
                self.outboxes.setdefault(c.subject, {}).update(c.outbox)
        await self.index_due({c.subject: c.due_at for c in commits if c.subject not in lost})
        return lost

    async def index_due(self, due_at: Mapping[str, float | None]) -> None:
        for subject, at in due_at.items():
            if at is None:
                self.due_index.pop(subject, None)
            else:
                self.due_index[subject] = at

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        for subject, ids in published.items():
            box = self.outboxes.get(subject)
            if box is None:
                continue
            for message_id in ids:
                box.pop(message_id, None)
            if not box:
                del self.outboxes[subject]

    async def pending_outboxes(self) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        for subject, box in list(self.outboxes.items()):
            if box:
                yield subject, dict(box)

    async def due(self, now: float, limit: int) -> dict[str, float]:
        from streams import keys

        per_shard: dict[int, list[tuple[float, str]]] = {}
        for subject, at in self.due_index.items():
            if at <= now:
                shard = keys.shard_of(subject, self.due_shards)
                per_shard.setdefault(shard, []).append((at, subject))
        leads: dict[str, float] = {}
        for shard in sorted(per_shard):
            leads.update((s, at) for at, s in sorted(per_shard[shard])[:limit])
        return leads

    async def detach(self, anonymous_id: str, lead_id: str) -> bytes | None:
        self.aliases[anonymous_id] = lead_id
        if anonymous_id in self.states:
            self.detached[anonymous_id] = self.states.pop(anonymous_id)[1]
            self.due_index.pop(anonymous_id, None)
        return self.detached.get(anonymous_id)

    async def forget_detached(self, anonymous_id: str) -> None:
        self.detached.pop(anonymous_id, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


class _Window:
    """The last `size` recorded ids in order, repeats included (as Redis keeps them)."""

    def __init__(self, size: int) -> None:
        self.order: deque[str] = deque()
        self.counts: Counter[str] = Counter()
        self.size = size

    def extend(self, ids: Sequence[str]) -> None:
        for event_id in ids:
            self.order.append(event_id)
            self.counts[event_id] += 1
            if len(self.order) > self.size:
                dropped = self.order.popleft()
                self.counts[dropped] -= 1
                if not self.counts[dropped]:
                    del self.counts[dropped]

    def __contains__(self, event_id: object) -> bool:
        return event_id in self.counts


_EMPTY = _Window(1)
