"""The lead state store port, and its in-memory implementation for fast tests.

The store keeps opaque state blobs with a version counter; callers read a
snapshot, compute the new state in Python (scoring is pure), and commit with
compare-and-set on the version. A commit also records the applied event ids
(idempotency) and the decided messages (outbox) in the same atomic step, so
a crash anywhere leaves either nothing or everything of one update.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What a lead looks like now, for one read-compute-commit round."""

    subject: str
    state: bytes | None
    version: int
    alias: str | None
    seen: frozenset[str]
    """The subset of the asked-about event ids already applied."""
    outbox: Mapping[str, bytes]


@dataclass(frozen=True, slots=True)
class Commit:
    """One lead's update: applied only if nobody committed since `expected_version`."""

    subject: str
    expected_version: int
    state: bytes
    event_ids: Sequence[str]
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

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        """Forget outbox entries whose publication Kafka acknowledged."""
        ...

    def pending_outboxes(self) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        """Every lead with unpublished messages (replayed after a restart)."""
        ...

    async def due(self, now: float, limit: int) -> list[str]:
        """Leads whose next_recycle_at is <= now, at most `limit` per shard."""
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

    def __init__(self, due_shards: int = 16) -> None:
        self.states: dict[str, tuple[int, bytes]] = {}
        self.seen: dict[str, set[str]] = {}
        self.outboxes: dict[str, dict[str, bytes]] = {}
        self.aliases: dict[str, str] = {}
        self.detached: dict[str, bytes] = {}
        self.due_index: dict[str, float] = {}
        self.due_shards = due_shards

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        result = {}
        for subject, ids in wanted.items():
            version, blob = self.states.get(subject, (0, None))
            seen = self.seen.get(subject, set())
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
            self.seen.setdefault(c.subject, set()).update(c.event_ids)
            if c.outbox:
                self.outboxes.setdefault(c.subject, {}).update(c.outbox)
        for c in commits:
            if c.subject in lost:
                continue
            if c.due_at is None:
                self.due_index.pop(c.subject, None)
            else:
                self.due_index[c.subject] = c.due_at
        return lost

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

    async def due(self, now: float, limit: int) -> list[str]:
        from streams import keys

        per_shard: dict[int, list[tuple[float, str]]] = {}
        for subject, at in self.due_index.items():
            if at <= now:
                shard = keys.shard_of(subject, self.due_shards)
                per_shard.setdefault(shard, []).append((at, subject))
        leads: list[str] = []
        for shard in sorted(per_shard):
            leads.extend(s for _, s in sorted(per_shard[shard])[:limit])
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
