"""The in-memory LeadStore: dict-backed, same semantics as Redis, for fast tests.

It passes the same contract suite as `RedisLeadStore`
(tests/integration/test_store_contract.py). Expiry is emulated with the
store's clock, per Redis key: a lead's state and seen window (one hash in
Redis) expire together, an alias and a detached state each on their own.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from typing import Literal

from leadpulse.streams.store.base import (
    ANONYMOUS_TTL,
    HOT_SIZE,
    SEEN_WINDOW,
    Commit,
    Snapshot,
    Watermark,
)
from leadpulse.streams.store.models import (
    FENCED,
    Fence,
    FencedError,
    ModelRecord,
    decode_model_record,
    encode_model_record,
)
from leadpulse.streams.store.redis import keys

_Kind = Literal["state", "alias", "detached"]


class MemoryLeadStore:
    """Dict-backed LeadStore with the same semantics as the Redis one."""

    def __init__(
        self,
        *,
        partitions: int = 12,
        seen_window: int = SEEN_WINDOW,
        anonymous_ttl: float | None = ANONYMOUS_TTL,
        known_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
        hot_size: int = HOT_SIZE,
    ) -> None:
        if seen_window < 1:
            raise ValueError("seen_window must be at least 1")
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if hot_size < 1:
            raise ValueError("hot_size must be at least 1")
        for name, ttl in (("anonymous_ttl", anonymous_ttl), ("known_ttl", known_ttl)):
            if ttl is not None and not ttl > 0:
                raise ValueError(f"{name} must be positive or None")
        self.states: dict[str, tuple[int, bytes]] = {}
        self.seen: dict[str, _Window] = {}
        self.outboxes: dict[str, dict[str, bytes]] = {}
        self.aliases: dict[str, str] = {}
        self.detached: dict[str, bytes] = {}
        self.due_index: dict[str, float] = {}
        self.hot_index: dict[str, float] = {}
        self.hot_size = hot_size
        self.offsets: dict[str, dict[int, int]] = {}
        self.marks: dict[str, dict[int, Watermark]] = {}
        self.model_blob: bytes | None = None
        self.fences: dict[str, Fence] = {}
        """The namespace's model record, encoded as Redis stores it."""
        self.partitions = partitions
        self.seen_window = seen_window
        self.anonymous_ttl = anonymous_ttl
        self.known_ttl = known_ttl
        self.clock = clock
        self._deadlines: dict[tuple[_Kind, str], float] = {}
        self._heap: list[tuple[float, _Kind, str]] = []

    # -- expiry, as Redis does it per key ------------------------------------------------

    def _expire(self) -> None:
        """Drop every key whose deadline passed (Redis: expired once now > deadline)."""
        now = self.clock()
        heap = self._heap
        while heap and heap[0][0] < now:
            at, kind, key = heapq.heappop(heap)
            if self._deadlines.get((kind, key)) == at:
                del self._deadlines[kind, key]
                self._drop(kind, key)

    def _drop(self, kind: _Kind, key: str) -> None:
        if kind == "state":
            self.states.pop(key, None)
            self.seen.pop(key, None)
        elif kind == "alias":
            self.aliases.pop(key, None)
        else:
            self.detached.pop(key, None)

    def _set_ttl(self, kind: _Kind, key: str, ttl: float | None) -> None:
        """PEXPIRE (ttl) or PERSIST (None)."""
        if ttl is None:
            self._deadlines.pop((kind, key), None)
            return
        at = self.clock() + ttl
        self._deadlines[kind, key] = at
        heapq.heappush(self._heap, (at, kind, key))
        if len(self._heap) > 2 * len(self._deadlines) + 64:  # superseded deadlines
            self._heap = [(at, k, key) for (k, key), at in self._deadlines.items()]
            heapq.heapify(self._heap)

    # -- the port -------------------------------------------------------------------------

    async def peek(self, subjects: Collection[str]) -> dict[str, Snapshot]:
        return self._read(dict.fromkeys(subjects, ()), refresh=False)

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        return self._read(wanted, refresh=True)

    def _read(self, wanted: Mapping[str, Collection[str]], *, refresh: bool) -> dict[str, Snapshot]:
        self._expire()
        result = {}
        for subject, ids in wanted.items():
            version, blob = self.states.get(subject, (0, None))
            seen = self.seen.get(subject, _EMPTY)
            alias = self.aliases.get(subject)
            if refresh and alias is not None and self.anonymous_ttl is not None:
                self._set_ttl("alias", subject, self.anonymous_ttl)
            result[subject] = Snapshot(
                subject=subject,
                state=blob,
                version=version,
                alias=alias,
                seen=frozenset(i for i in ids if i in seen),
                outbox=dict(self.outboxes.get(subject, {})),
            )
        return result

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        self._expire()
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
            self._set_ttl("state", c.subject, self.anonymous_ttl if c.anonymous else self.known_ttl)
            if c.outbox:
                self.outboxes.setdefault(c.subject, {}).update(c.outbox)
        await self.index_due({c.subject: c.due_at for c in commits if c.subject not in lost})
        hot = {c.subject: c.hot for c in commits if c.hot is not None and c.subject not in lost}
        if hot:
            self.hot_index.update(hot)
            if len(self.hot_index) > self.hot_size:  # ZREMRANGEBYRANK: the lowest go
                kept = _hot_order(self.hot_index)[: self.hot_size]
                self.hot_index = dict(kept)
        return lost

    async def hot(self, limit: int) -> list[tuple[str, float]]:
        return _hot_order(self.hot_index)[: max(limit, 0)]

    async def drop_hot(self, leads: Collection[str]) -> None:
        for lead in leads:
            self.hot_index.pop(lead, None)

    async def rescore_hot(self, scores: Mapping[str, float]) -> None:
        for lead, score in scores.items():
            if lead in self.hot_index:  # ZADD XX: only members already there
                self.hot_index[lead] = score

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

    async def pending_outboxes(
        self, shards: Collection[int]
    ) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        wanted = set(shards)
        for subject, box in list(self.outboxes.items()):
            if box and keys.shard_of(subject, self.partitions) in wanted:
                yield subject, dict(box)

    async def pending_count(self, shards: Collection[int]) -> int:
        wanted = set(shards)
        return sum(
            1
            for subject, box in self.outboxes.items()
            if box and keys.shard_of(subject, self.partitions) in wanted
        )

    async def due(self, now: float, limit: int, shards: Collection[int]) -> dict[str, float]:
        wanted = set(shards)
        per_shard: dict[int, list[tuple[float, str]]] = {}
        for subject, at in self.due_index.items():
            if at <= now:
                shard = keys.shard_of(subject, self.partitions)
                if shard in wanted:
                    per_shard.setdefault(shard, []).append((at, subject))
        leads: dict[str, float] = {}
        for shard in sorted(per_shard):
            leads.update((s, at) for at, s in sorted(per_shard[shard])[:limit])
        return leads

    async def detach(self, links: Sequence[tuple[str, str]]) -> list[bytes | None]:
        self._expire()
        ttl = self.anonymous_ttl
        blobs: list[bytes | None] = []
        for anonymous_id, lead_id in links:
            owner = self.aliases.get(anonymous_id)
            if owner is not None:
                blobs.append(self.detached.get(anonymous_id) if owner == lead_id else None)
                continue
            self.aliases[anonymous_id] = lead_id
            self._set_ttl("alias", anonymous_id, ttl)
            if anonymous_id not in self.states:
                blobs.append(None)
                continue
            blob = self.states.pop(anonymous_id)[1]
            self.detached[anonymous_id] = blob
            self._set_ttl("detached", anonymous_id, ttl)
            self.due_index.pop(anonymous_id, None)
            self.hot_index.pop(anonymous_id, None)
            if anonymous_id not in self.seen:  # the hash is gone, and its TTL with it
                self._deadlines.pop(("state", anonymous_id), None)
            elif ttl is not None:
                self._set_ttl("state", anonymous_id, ttl)
            blobs.append(blob)
        return blobs

    async def forget_detached(self, anonymous_ids: Collection[str]) -> None:
        for anonymous_id in anonymous_ids:
            self.detached.pop(anonymous_id, None)
            self._deadlines.pop(("detached", anonymous_id), None)

    async def record_progress(self, topic: str, offsets: Mapping[int, int]) -> None:
        fence = self.fences.get(topic)
        if fence is not None and fence.phase == FENCED:
            raise FencedError(f"namespace switched to {fence.to}: progress not recorded")
        known = self.offsets.setdefault(topic, {})
        for partition, offset in offsets.items():
            known[partition] = max(offset, known.get(partition, -1))

    async def progress(self, topic: str) -> dict[int, int]:
        return dict(self.offsets.get(topic, {}))

    async def fence(self, topic: str) -> Fence | None:
        return self.fences.get(topic)

    async def set_fence(self, topic: str, fence: Fence | None) -> None:
        if fence is None:
            self.fences.pop(topic, None)
        else:
            self.fences[topic] = fence

    async def publish_watermarks(self, topic: str, marks: Mapping[int, Watermark]) -> None:
        known = self.marks.setdefault(topic, {})
        for partition, mark in marks.items():
            kept = known.get(partition)
            live_at = mark.live_at if mark.live_at is not None or kept is None else kept.live_at
            known[partition] = Watermark(mark.at, live_at)

    async def watermarks(self, topic: str) -> dict[int, Watermark]:
        return dict(self.marks.get(topic, {}))

    async def recorded_model(self) -> ModelRecord | None:
        return None if self.model_blob is None else decode_model_record(self.model_blob)

    async def record_model(
        self, record: ModelRecord, *, replacing: str | None
    ) -> ModelRecord | None:
        current = None if self.model_blob is None else decode_model_record(self.model_blob)
        if (None if current is None else current.version) == replacing:
            self.model_blob = encode_model_record(record)
            return record
        return current

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _hot_order(index: Mapping[str, float]) -> list[tuple[str, float]]:
    """Redis' ZRANGE ... REV order: highest score first, ties by member (bytes) descending."""
    by_member = sorted(index.items(), key=lambda item: item[0].encode(), reverse=True)
    return sorted(by_member, key=lambda item: -item[1])  # stable: ties keep member order


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
