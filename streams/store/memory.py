"""The in-memory LeadStore: dict-backed, same semantics as Redis, for fast tests.

It passes the same contract suite as `RedisLeadStore`
(tests/integration/test_store_contract.py).
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import AsyncIterator, Collection, Mapping, Sequence

from streams.store.base import SEEN_WINDOW, Commit, Snapshot
from streams.store.redis import keys


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
