"""One contract, two stores: the in-memory fake must behave like Redis.

Every test taking `store` (or another parametrized store fixture) runs against
both; tests taking only `contract_redis` are Redis wire details.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.exceptions import MaxConnectionsError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from leadpulse.streams.dev.devstack import RedisServer, free_port
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import SEEN_WINDOW, Commit, LeadStore, MemoryLeadStore, Watermark
from leadpulse.streams.store.models import (
    DRAINING,
    FENCED,
    FIRST_START,
    FORWARD_ONLY,
    Fence,
    FencedError,
    ModelChange,
    ModelRecord,
    ModelRecordError,
)
from leadpulse.streams.store.redis import RedisLeadStore, connect, keys, lead_fields

pytestmark = pytest.mark.integration

PARTITIONS = 4
ALL = range(PARTITIONS)


@pytest.fixture(scope="module")
def contract_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


class Clock:
    """Time for expiry tests: the memory store's fake clock moves, Redis's real one passes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.now = 1_763_900_000.0

    def __call__(self) -> float:
        return self.now

    async def advance(self, seconds: float) -> None:
        if self.kind == "memory":
            self.now += seconds
        else:
            await asyncio.sleep(seconds)


async def _stores(
    kind: str,
    server: RedisServer,
    window: int = SEEN_WINDOW,
    *,
    clock: Clock | None = None,
    max_connections: int | None = None,
    **ttls: Any,
) -> AsyncIterator[LeadStore]:
    if kind == "memory":
        yield MemoryLeadStore(
            partitions=PARTITIONS, seen_window=window, clock=clock or time.time, **ttls
        )
        return
    # the worker's own client (hiredis packing, retries, timeouts), not a plain one
    settings = Settings(redis_url=server.url)
    if max_connections is not None:
        settings = settings.replace(redis_max_connections=max_connections)
    client = connect(settings)
    await client.flushall()
    redis_store = RedisLeadStore(client, partitions=PARTITIONS, seen_window=window, **ttls)
    try:
        yield redis_store
    finally:
        await redis_store.close()


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, contract_redis: RedisServer
) -> AsyncIterator[LeadStore]:
    async for made in _stores(request.param, contract_redis):
        yield made


WINDOW = 5


@pytest.fixture(params=["memory", "redis"])
async def small_window(
    request: pytest.FixtureRequest, contract_redis: RedisServer
) -> AsyncIterator[LeadStore]:
    """A store that remembers only the last WINDOW event ids of a lead."""
    async for made in _stores(request.param, contract_redis, WINDOW):
        yield made


TTL = 1.5
"""Seconds, for expiry tests: long enough that a loaded machine keeps 'not yet'
true for 0.6 TTL, short enough to wait for on Redis."""


@pytest.fixture(params=["memory", "redis"])
async def expiring(
    request: pytest.FixtureRequest, contract_redis: RedisServer
) -> AsyncIterator[tuple[LeadStore, Clock]]:
    """A store whose anonymous visitors expire after TTL, with its clock."""
    clock = Clock(request.param)
    async for made in _stores(request.param, contract_redis, clock=clock, anonymous_ttl=TTL):
        yield made, clock


async def _all(items: Any) -> list[Any]:
    return [item async for item in items]


def in_shard(shard: int, count: int, prefix: str = "lead-") -> list[str]:
    """`count` subjects that Kafka's partitioner sends to `shard`."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        if keys.shard_of(f"{prefix}{n}", PARTITIONS) == shard:
            found.append(f"{prefix}{n}")
        n += 1
    return found


async def test_unknown_lead_is_empty(store: LeadStore) -> None:
    snap = (await store.snapshot({"lead-1": ["e1"]}))["lead-1"]
    assert (snap.state, snap.version, snap.alias, snap.seen, dict(snap.outbox)) == (
        None,
        0,
        None,
        frozenset(),
        {},
    )


async def test_commit_stores_state_and_marks_events_seen(store: LeadStore) -> None:
    lost = await store.commit([Commit("lead-1", 0, b"s1", ["e1", "e2"])])
    assert lost == set()
    snap = (await store.snapshot({"lead-1": ["e1", "e2", "e3"]}))["lead-1"]
    assert (snap.state, snap.version, snap.seen) == (b"s1", 1, frozenset({"e1", "e2"}))


async def test_stale_version_loses_and_changes_nothing(store: LeadStore) -> None:
    await store.commit([Commit("lead-1", 0, b"s1", ["e1"])])
    lost = await store.commit(
        [Commit("lead-1", 0, b"stale", ["e2"]), Commit("lead-2", 0, b"t1", ["e9"])]
    )
    assert lost == {"lead-1"}
    snaps = await store.snapshot({"lead-1": ["e2"], "lead-2": ["e9"]})
    assert (snaps["lead-1"].state, snaps["lead-1"].version, snaps["lead-1"].seen) == (
        b"s1",
        1,
        frozenset(),
    )
    assert snaps["lead-2"].state == b"t1"


async def test_many_event_ids_in_one_commit(store: LeadStore) -> None:
    ids = [f"e{i}" for i in range(SEEN_WINDOW)]
    assert await store.commit([Commit("lead-1", 0, b"s", ids)]) == set()
    snap = (await store.snapshot({"lead-1": [*ids, "other"]}))["lead-1"]
    assert snap.seen == frozenset(ids)


async def test_more_ids_than_the_window_in_one_commit_keeps_the_last(store: LeadStore) -> None:
    ids = [f"e{i}" for i in range(SEEN_WINDOW + 1500)]
    assert await store.commit([Commit("lead-1", 0, b"s", ids)]) == set()
    snap = (await store.snapshot({"lead-1": ids}))["lead-1"]
    assert snap.seen == frozenset(ids[-SEEN_WINDOW:])


async def test_window_forgets_the_oldest_ids_across_commits(small_window: LeadStore) -> None:
    store = small_window
    ids = [f"e{i}" for i in range(8)]
    await store.commit([Commit("lead-1", 0, b"s1", ids[:3])])
    await store.commit([Commit("lead-1", 1, b"s2", [])])  # a sweep records no ids
    await store.commit([Commit("lead-1", 2, b"s3", ids[3:4])])
    snap = (await store.snapshot({"lead-1": ids}))["lead-1"]
    assert snap.seen == frozenset(ids[:4])
    await store.commit([Commit("lead-1", 3, b"s4", ids[4:7])])
    snap = (await store.snapshot({"lead-1": ids}))["lead-1"]
    assert (snap.seen, snap.state, snap.version) == (frozenset(ids[2:7]), b"s4", 4)
    await store.commit([Commit("lead-1", 4, b"s5", ids[7:])])
    snap = (await store.snapshot({"lead-1": ids}))["lead-1"]
    assert snap.seen == frozenset(ids[3:8])


async def test_window_is_per_lead(small_window: LeadStore) -> None:
    store = small_window
    await store.commit([Commit("a", 0, b"s", ["x1"]), Commit("b", 0, b"s", ["y1", "y2"])])
    await store.commit([Commit("b", 1, b"s", [f"y{i}" for i in range(3, 10)])])
    snaps = await store.snapshot({"a": ["x1", "y1"], "b": ["x1", "y1", "y9"]})
    assert (snaps["a"].seen, snaps["b"].seen) == (frozenset({"x1"}), frozenset({"y9"}))


async def test_a_recorded_id_takes_a_slot_each_time(small_window: LeadStore) -> None:
    store = small_window
    await store.commit([Commit("lead-1", 0, b"s", ["a", "b", "c", "d", "e"])])
    await store.commit([Commit("lead-1", 1, b"s", ["a"])])  # callers never do this
    await store.commit([Commit("lead-1", 2, b"s", ["f", "g", "h", "i"])])
    snap = (await store.snapshot({"lead-1": list("abcdefghi")}))["lead-1"]
    assert snap.seen == frozenset("afghi")


async def test_lost_commit_records_no_ids(small_window: LeadStore) -> None:
    store = small_window
    await store.commit([Commit("lead-1", 0, b"s", ["a"])])
    assert await store.commit([Commit("lead-1", 0, b"x", ["b", "c", "d", "e", "f"])]) == {"lead-1"}
    snap = (await store.snapshot({"lead-1": list("abcdef")}))["lead-1"]
    assert (snap.seen, snap.state) == (frozenset("a"), b"s")


async def test_ids_of_any_length_and_alphabet_are_told_apart(store: LeadStore) -> None:
    ids = ["x" * 128, "x" * 127 + "y", "é", "e", "0b7e-ü-漢字", " ", "a:b", "a"]
    await store.commit([Commit("lead-1", 0, b"s", ids[::2])])
    snap = (await store.snapshot({"lead-1": ids}))["lead-1"]
    assert snap.seen == frozenset(ids[::2])


async def test_sweep_snapshot_without_ids_reads_state(store: LeadStore) -> None:
    await store.commit([Commit("lead-1", 0, b"s1", ["e1"], due_at=5.0)])
    snap = (await store.snapshot({"lead-1": ()}))["lead-1"]
    assert (snap.state, snap.version, snap.seen) == (b"s1", 1, frozenset())


# -- outbox and its pending index ---------------------------------------------------------


async def test_outbox_is_kept_until_cleared(store: LeadStore) -> None:
    await store.commit([Commit("lead-{1}", 0, b"s", ["e1"], outbox={"t1": b"m1", "h:t1": b"h1"})])
    snap = (await store.snapshot({"lead-{1}": []}))["lead-{1}"]
    assert dict(snap.outbox) == {"t1": b"m1", "h:t1": b"h1"}
    pending = await _all(store.pending_outboxes(ALL))
    assert pending == [("lead-{1}", {"t1": b"m1", "h:t1": b"h1"})]
    await store.clear_outbox({"lead-{1}": ["t1"]})
    assert await _all(store.pending_outboxes(ALL)) == [("lead-{1}", {"h:t1": b"h1"})]
    await store.clear_outbox({"lead-{1}": ["h:t1"]})
    assert await _all(store.pending_outboxes(ALL)) == []


async def test_pending_outboxes_reads_only_the_given_shards(store: LeadStore) -> None:
    leads = {shard: in_shard(shard, 3) for shard in ALL}
    await store.commit(
        [
            Commit(lead, 0, b"s", [], outbox={f"t:{lead}": lead.encode()})
            for chosen in leads.values()
            for lead in chosen
        ]
    )
    await store.commit([Commit("quiet", 0, b"s", ["e1"])])  # no outbox: not pending
    for shard, chosen in leads.items():
        found = await _all(store.pending_outboxes([shard]))
        assert sorted(found) == sorted((lead, {f"t:{lead}": lead.encode()}) for lead in chosen)
    both = sorted(subject for subject, _ in await _all(store.pending_outboxes([1, 3])))
    assert both == sorted(leads[1] + leads[3])
    assert await _all(store.pending_outboxes([])) == []


async def test_pending_count_follows_the_pending_outboxes(store: LeadStore) -> None:
    leads = {shard: in_shard(shard, 2) for shard in ALL}
    await store.commit(
        [Commit(lead, 0, b"s", [], outbox={"t:1": b"m"}) for lead in leads[1] + leads[3]]
    )
    await store.commit([Commit("quiet", 0, b"s", ["e1"])])  # no outbox: not pending
    assert await store.pending_count(ALL) == 4
    assert await store.pending_count([1]) == 2
    assert await store.pending_count([0, 2]) == 0
    assert await store.pending_count([]) == 0
    await store.clear_outbox({lead: ["t:1"] for lead in leads[1]})
    assert await store.pending_count(ALL) == 2


async def test_a_lost_commit_leaves_no_pending_outbox(store: LeadStore) -> None:
    await store.commit([Commit("a", 0, b"s", [])])
    assert await store.commit([Commit("a", 0, b"x", [], outbox={"t:1": b"m"})]) == {"a"}
    assert await _all(store.pending_outboxes(ALL)) == []


async def test_a_lead_with_new_messages_stays_pending(store: LeadStore) -> None:
    """Clearing what was published keeps a lead whose later commit added messages."""
    await store.commit([Commit("a", 0, b"s", [], outbox={"t:1": b"m1"})])
    await store.commit([Commit("a", 1, b"s", [], outbox={"t:2": b"m2"})])
    await store.clear_outbox({"a": ["t:1"]})
    assert await _all(store.pending_outboxes(ALL)) == [("a", {"t:2": b"m2"})]
    await store.clear_outbox({"a": ["t:2"]})
    await store.commit([Commit("a", 2, b"s", [], outbox={"t:3": b"m3"})])
    assert await _all(store.pending_outboxes(ALL)) == [("a", {"t:3": b"m3"})]


async def test_stale_pending_members_are_dropped(contract_redis: RedisServer) -> None:
    """Redis only: an indexed lead whose outbox is empty (a crash after the HDEL, or
    the outbox key lost) is neither yielded nor kept in the index."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=PARTITIONS)
    try:
        await store.commit(
            [
                Commit("a", 0, b"s", [], outbox={"t:1": b"m"}),
                Commit("b", 0, b"s", [], outbox={"t:1": b"m"}),
            ]
        )
        pending_a = keys.DEFAULT.pending(keys.shard_of("a", PARTITIONS))
        assert await client.sismember(pending_a, "a")
        await client.delete(keys.DEFAULT.outbox("a"))
        assert await _all(store.pending_outboxes(ALL)) == [("b", {"t:1": b"m"})]
        assert not await client.sismember(pending_a, "a")
        await store.clear_outbox({"b": ["t:1"]})
        assert await client.scard(keys.DEFAULT.pending(keys.shard_of("b", PARTITIONS))) == 0
    finally:
        await store.close()


async def test_unindexing_puts_back_a_lead_that_got_messages(contract_redis: RedisServer) -> None:
    """Redis only: the second look after SREM closes the race with a concurrent commit
    (its outbox was written after our emptiness check, its SADD came before our SREM)."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=PARTITIONS)
    try:
        shard = keys.shard_of("a", PARTITIONS)
        await client.hset(keys.DEFAULT.outbox("a"), "t:9", b"new")
        await client.sadd(keys.DEFAULT.pending(shard), "a", "gone")
        await store._unindex(shard, ["a", "gone"])
        assert await client.smembers(keys.DEFAULT.pending(shard)) == {b"a"}
    finally:
        await store.close()


async def test_many_pending_outboxes_are_scanned_in_pages(contract_redis: RedisServer) -> None:
    """Redis only: a shard with more pending leads than one SSCAN page yields each once."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=1)
    try:
        leads = [f"lead-{i}" for i in range(2500)]
        await store.commit([Commit(lead, 0, b"s", [], outbox={"t:1": b"m"}) for lead in leads])
        found = [subject for subject, _ in await _all(store.pending_outboxes([0]))]
        assert sorted(found) == sorted(leads)
    finally:
        await store.close()


# -- the due index, one shard per partition -----------------------------------------------


async def test_due_index_follows_commits(store: LeadStore) -> None:
    await store.commit(
        [
            Commit("a", 0, b"s", [], due_at=100.0),
            Commit("b", 0, b"s", [], due_at=200.0),
            Commit("ünïcode lead", 0, b"s", [], due_at=50.0),
        ]
    )
    assert sorted(await store.due(99.0, 10, ALL)) == ["ünïcode lead"]
    assert sorted(await store.due(150.0, 10, ALL)) == ["a", "ünïcode lead"]
    assert await store.due(150.0, 10, ALL) == {"a": 100.0, "ünïcode lead": 50.0}
    await store.commit([Commit("a", 1, b"s2", [], due_at=None)])
    assert sorted(await store.due(1000.0, 10, ALL)) == ["b", "ünïcode lead"]


async def test_one_batch_adds_moves_and_removes_due_entries(store: LeadStore) -> None:
    leads = [f"lead-{i}" for i in range(20)]
    await store.commit([Commit(lead, 0, b"s", [], due_at=10.0) for lead in leads])
    batch = [
        Commit(lead, 1, b"s", [], due_at=None if i % 2 else 20.0 + i)
        for i, lead in enumerate(leads)
        if lead != "lead-3"
    ]
    batch.append(Commit("new", 0, b"s", [], due_at=5.0))
    batch.append(Commit("lead-3", 0, b"stale", [], due_at=1.0))  # loses: keeps its entry
    assert await store.commit(batch) == {"lead-3"}
    assert sorted(await store.due(15.0, 100, ALL)) == ["lead-3", "new"]
    expected = {"lead-3", "new", *(lead for i, lead in enumerate(leads) if i % 2 == 0)}
    assert sorted(await store.due(100.0, 100, ALL)) == sorted(expected)


async def test_due_limit_applies_per_shard(store: LeadStore) -> None:
    leads = [f"lead-{i}" for i in range(40)]
    await store.commit([Commit(lead, 0, b"s", [], due_at=float(i)) for i, lead in enumerate(leads)])
    due = await store.due(1000.0, 2, ALL)
    shards = {keys.shard_of(lead, PARTITIONS) for lead in leads}
    assert len(due) == 2 * len(shards)
    per_shard: dict[int, list[str]] = {}
    for lead in due:
        per_shard.setdefault(keys.shard_of(lead, PARTITIONS), []).append(lead)
    for shard, chosen in per_shard.items():
        earliest = [lead for lead in leads if keys.shard_of(lead, PARTITIONS) == shard][:2]
        assert sorted(chosen) == sorted(earliest)


async def test_due_reads_only_the_given_shards(store: LeadStore) -> None:
    leads = {shard: in_shard(shard, 3) for shard in ALL}
    await store.index_due({lead: 1.0 for chosen in leads.values() for lead in chosen})
    for shard, chosen in leads.items():
        assert sorted(await store.due(10.0, 100, [shard])) == sorted(chosen)
    assert sorted(await store.due(10.0, 100, [0, 2])) == sorted(leads[0] + leads[2])
    assert await store.due(10.0, 100, []) == {}


async def test_index_due_sets_and_removes_entries(store: LeadStore) -> None:
    await store.index_due({"a": 10.0, "b": 20.0})
    assert sorted(await store.due(15.0, 10, ALL)) == ["a"]
    await store.index_due({"a": None, "b": 5.0})
    assert sorted(await store.due(15.0, 10, ALL)) == ["b"]


async def test_due_times_come_back_exactly(store: LeadStore) -> None:
    """The sweeper hands the index time to the search as a hint: no rounding."""
    times = {"a": 1763900000.1234567, "b": 1763900000.0000002, "c": 1e-300}
    await store.index_due(times)
    assert await store.due(1763900001.0, 10, ALL) == times


async def test_due_shards_are_the_kafka_partitions(contract_redis: RedisServer) -> None:
    """Redis only: a lead's due entry is in the sorted set of its Kafka partition."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=PARTITIONS)
    try:
        leads = [f"lead-{i}" for i in range(30)]
        await store.index_due(dict.fromkeys(leads, 1.0))
        for lead in leads:
            shard = keys.shard_of(lead, PARTITIONS)
            assert await client.zscore(keys.DEFAULT.due_shard(shard), lead) == 1.0
        assert sum([await client.zcard(keys.DEFAULT.due_shard(s)) for s in ALL]) == len(leads)
    finally:
        await store.close()


# -- identity: one merge per anonymous visitor --------------------------------------------


async def test_detach_aliases_and_hands_over_state_idempotently(store: LeadStore) -> None:
    await store.commit([Commit("anon-1", 0, b"anon-state", ["a1"], due_at=10.0, anonymous=True)])
    assert await store.detach([("anon-1", "lead-1")]) == [b"anon-state"]
    assert await store.detach([("anon-1", "lead-1")]) == [b"anon-state"]
    snap = (await store.snapshot({"anon-1": ["a1"]}))["anon-1"]
    assert (snap.alias, snap.state, snap.seen) == ("lead-1", None, frozenset({"a1"}))
    assert await store.due(100.0, 10, ALL) == {}
    assert await store.commit([Commit("anon-1", 0, b"late", ["a2"], anonymous=True)]) == {"anon-1"}
    snap = (await store.snapshot({"anon-1": ["a1", "a2"]}))["anon-1"]
    assert (snap.state, snap.seen) == (None, frozenset({"a1"}))
    await store.forget_detached(["anon-1"])
    assert await store.detach([("anon-1", "lead-1")]) == [None]


async def test_detach_of_unknown_anonymous_id_still_links(store: LeadStore) -> None:
    assert await store.detach([("anon-9", "lead-9")]) == [None]
    snap = (await store.snapshot({"anon-9": []}))["anon-9"]
    assert snap.alias == "lead-9"
    assert await store.commit([Commit("anon-9", 0, b"x", ["z"])]) == {"anon-9"}


async def test_a_visitor_merges_into_one_lead_only(store: LeadStore) -> None:
    await store.commit([Commit("z", 0, b"z-history", ["e1"], anonymous=True)])
    assert await store.detach([("z", "lead-1")]) == [b"z-history"]
    assert await store.detach([("z", "lead-2")]) == [None]
    assert (await store.snapshot({"z": []}))["z"].alias == "lead-1"
    # the first lead still gets the history until its merge is committed
    assert await store.detach([("z", "lead-1")]) == [b"z-history"]
    await store.forget_detached(["z"])
    assert await store.detach([("z", "lead-2"), ("z", "lead-1")]) == [None, None]
    assert (await store.snapshot({"z": []}))["z"].alias == "lead-1"


async def test_competing_links_in_one_call_go_in_order(store: LeadStore) -> None:
    await store.commit(
        [Commit("z", 0, b"z", [], anonymous=True), Commit("y", 0, b"y", [], anonymous=True)]
    )
    got = await store.detach([("z", "lead-2"), ("y", "lead-1"), ("z", "lead-1"), ("x", "lead-3")])
    assert got == [b"z", b"y", None, None]
    snaps = await store.snapshot({"z": [], "y": [], "x": []})
    assert [snaps[s].alias for s in "zyx"] == ["lead-2", "lead-1", "lead-3"]


async def test_forget_detached_takes_many(store: LeadStore) -> None:
    anons = [f"anon-{i}" for i in range(10)]
    await store.commit([Commit(a, 0, a.encode(), [], anonymous=True) for a in anons])
    assert await store.detach([(a, f"lead-{a}") for a in anons]) == [a.encode() for a in anons]
    await store.forget_detached(anons[:5])
    await store.forget_detached([])
    got = await store.detach([(a, f"lead-{a}") for a in anons])
    assert got == [None] * 5 + [a.encode() for a in anons[5:]]
    assert await store.detach([]) == []


@pytest.fixture(params=["memory", "redis"])
async def small_pool(
    request: pytest.FixtureRequest, contract_redis: RedisServer
) -> AsyncIterator[LeadStore]:
    """A store whose Redis client may open at most 4 connections."""
    async for made in _stores(request.param, contract_redis, max_connections=4):
        yield made


async def test_200_links_at_once_with_a_small_pool(small_pool: LeadStore) -> None:
    store = small_pool
    anons = [f"anon-{i}" for i in range(200)]
    await store.commit(
        [Commit(a, 0, a.encode(), [f"e-{a}"], due_at=1.0, anonymous=True) for a in anons]
    )
    links = [(a, f"lead-{i}") for i, a in enumerate(anons)]
    assert await store.detach(links) == [a.encode() for a in anons]
    assert await store.due(10.0, 1000, ALL) == {}
    await store.forget_detached(anons)
    assert await store.detach(links) == [None] * 200
    if isinstance(store, RedisLeadStore):
        # what the worker did before: one call per link, all at once, overflows the pool
        results = await asyncio.gather(
            *(store.snapshot({a: []}) for a in anons), return_exceptions=True
        )
        assert any(isinstance(r, MaxConnectionsError) for r in results)


# -- progress and watermarks ---------------------------------------------------------------


async def test_progress_is_what_was_recorded(store: LeadStore) -> None:
    assert await store.progress("events") == {}
    await store.record_progress("events", {0: 10, 3: 7})
    await store.record_progress("events", {3: 9, 1: 0})
    await store.record_progress("other", {0: 99})
    await store.record_progress("events", {})
    assert await store.progress("events") == {0: 10, 1: 0, 3: 9}
    # max-only: a late batch of a former owner never moves a record backwards
    await store.record_progress("events", {0: 2, 1: 1, 3: 9})
    assert await store.progress("events") == {0: 10, 1: 1, 3: 9}
    assert await store.progress("other") == {0: 99}


async def test_a_fence_is_read_back_and_a_fenced_namespace_records_no_progress(
    store: LeadStore,
) -> None:
    assert await store.fence("events") is None
    await store.record_progress("events", {0: 5})
    draining = Fence(DRAINING, "lp.m0123456789ab", 1765000000.25)
    await store.set_fence("events", draining)
    assert await store.fence("events") == draining
    assert await store.fence("other") is None
    await store.record_progress("events", {0: 6})  # batches in flight still record
    fenced = Fence(FENCED, "lp.m0123456789ab", 1765000001.5)
    await store.set_fence("events", fenced)
    assert await store.fence("events") == fenced
    with pytest.raises(FencedError):
        await store.record_progress("events", {0: 7, 1: 3})
    assert await store.progress("events") == {0: 6}  # nothing of the refused record
    await store.record_progress("other", {0: 1})  # another topic is not fenced
    await store.set_fence("events", None)
    assert await store.fence("events") is None
    await store.record_progress("events", {0: 7})
    assert await store.progress("events") == {0: 7}


async def test_watermarks_are_shared_exactly(store: LeadStore) -> None:
    assert await store.watermarks("events") == {}
    marks = {
        0: Watermark(1763900000.1234567, 1763900300.7654321),
        5: Watermark(1e-300, 5e-324),
        11: Watermark(0.0, None),
    }
    await store.publish_watermarks("events", marks)
    await store.publish_watermarks("events", {5: Watermark(1763900001.5, 1763900002.25)})
    await store.publish_watermarks("events", {})
    assert await store.watermarks("events") == {
        **marks,
        5: Watermark(1763900001.5, 1763900002.25),
    }
    # a mark published without a live time keeps the last one recorded
    await store.publish_watermarks("events", {0: Watermark(1763900400.0)})
    assert (await store.watermarks("events"))[0] == Watermark(1763900400.0, 1763900300.7654321)
    assert await store.watermarks("other") == {}


# -- bounded state: inactivity TTLs ------------------------------------------------------


async def test_an_inactive_visitor_expires(expiring: tuple[LeadStore, Clock]) -> None:
    store, clock = expiring
    await store.commit([Commit("anon", 0, b"s1", ["e1"], anonymous=True)])
    await clock.advance(0.6 * TTL)
    await store.commit([Commit("anon", 1, b"s2", ["e2"], anonymous=True)])  # activity
    await clock.advance(0.6 * TTL)
    snap = (await store.snapshot({"anon": ["e1", "e2"]}))["anon"]
    assert (snap.state, snap.version, snap.seen) == (b"s2", 2, frozenset({"e1", "e2"}))
    await clock.advance(0.5 * TTL)
    snap = (await store.snapshot({"anon": ["e1", "e2"]}))["anon"]
    assert (snap.state, snap.version, snap.seen) == (None, 0, frozenset())
    # a visitor that comes back starts over
    assert await store.commit([Commit("anon", 0, b"new", ["e3"], anonymous=True)]) == set()


async def test_known_leads_do_not_expire(expiring: tuple[LeadStore, Clock]) -> None:
    store, clock = expiring
    await store.commit(
        [
            Commit("lead", 0, b"s", ["e1"]),
            Commit("was-anon", 0, b"a", ["e2"], anonymous=True),
        ]
    )
    await store.commit([Commit("was-anon", 1, b"known now", ["e3"])])
    await clock.advance(1.2 * TTL)
    snaps = await store.snapshot({"lead": ["e1"], "was-anon": ["e2", "e3"]})
    assert (snaps["lead"].state, snaps["lead"].seen) == (b"s", frozenset({"e1"}))
    assert (snaps["was-anon"].state, snaps["was-anon"].seen) == (
        b"known now",
        frozenset({"e2", "e3"}),
    )


async def test_a_merged_visitors_alias_expires_when_unused(
    expiring: tuple[LeadStore, Clock],
) -> None:
    store, clock = expiring
    await store.commit(
        [
            Commit("used", 0, b"u", ["e1"], anonymous=True),
            Commit("unused", 0, b"n", ["e2"], anonymous=True),
        ]
    )
    assert await store.detach([("used", "lead-1"), ("unused", "lead-2")]) == [b"u", b"n"]
    await clock.advance(0.6 * TTL)
    assert (await store.snapshot({"used": ["e1"]}))["used"].alias == "lead-1"  # read: active
    await clock.advance(0.6 * TTL)
    snaps = await store.snapshot({"used": ["e1"], "unused": ["e2"]})
    assert (snaps["used"].alias, snaps["unused"].alias) == ("lead-1", None)
    # the window kept at the merge expired too (re-deliveries come within seconds)
    assert snaps["unused"].seen == frozenset()
    assert await store.detach([("unused", "lead-2")]) == [None]  # the state went too


async def test_peeking_is_not_activity_and_writes_nothing(
    expiring: tuple[LeadStore, Clock],
) -> None:
    """Readers (pages, the CLI) peek: an alias they read expires as if never read."""
    store, clock = expiring
    await store.commit([Commit("seen", 0, b"s", ["e1"], anonymous=True)])
    await store.commit([Commit("lead-1", 0, b"l", ["e2"], {"t:1": b"m"})])
    assert await store.detach([("seen", "lead-1")]) == [b"s"]
    await clock.advance(0.6 * TTL)
    peeked = await store.peek(["seen", "lead-1", "nobody"])
    assert peeked["seen"].alias == "lead-1"
    assert (peeked["lead-1"].state, peeked["lead-1"].version) == (b"l", 1)
    assert peeked["lead-1"].outbox == {"t:1": b"m"}
    assert peeked["nobody"].state is None
    await clock.advance(0.6 * TTL)
    assert (await store.peek(["seen"]))["seen"].alias is None  # expired: peeks did not count


async def test_known_ttl_bounds_known_leads(contract_redis: RedisServer) -> None:
    for kind in ("memory", "redis"):
        clock = Clock(kind)
        async for store in _stores(kind, contract_redis, clock=clock, known_ttl=TTL):
            await store.commit([Commit("lead", 0, b"s", ["e1"])])
            await clock.advance(0.6 * TTL)
            assert (await store.snapshot({"lead": []}))["lead"].state == b"s"
            await clock.advance(0.6 * TTL)
            assert (await store.snapshot({"lead": []}))["lead"].state is None, kind


async def test_ttls_on_the_wire(contract_redis: RedisServer) -> None:
    """Redis only: which keys carry which TTL (PTTL -1 = none)."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    day = 86400.0
    store = RedisLeadStore(client, partitions=PARTITIONS, anonymous_ttl=90 * day)
    try:
        await store.commit(
            [
                Commit("anon", 0, b"a", ["e1"], anonymous=True),
                Commit("lead", 0, b"l", ["e2"], outbox={"t:1": b"m"}),
            ]
        )
        assert 89 * day * 1000 < await client.pttl(keys.DEFAULT.state("anon")) <= 90 * day * 1000
        assert await client.pttl(keys.DEFAULT.state("lead")) == -1
        assert await client.pttl(keys.DEFAULT.outbox("lead")) == -1
        await store.commit([Commit("anon", 1, b"a", [])])  # became known: stops expiring
        assert await client.pttl(keys.DEFAULT.state("anon")) == -1
        await store.commit([Commit("z", 0, b"z", ["e3"], anonymous=True)])
        await client.pexpire(keys.DEFAULT.state("z"), 5000)
        assert await store.detach([("z", "lead")]) == [b"z"]
        for key in (keys.DEFAULT.alias("z"), keys.DEFAULT.detached("z"), keys.DEFAULT.state("z")):
            assert await client.pttl(key) > 89 * day * 1000, key
        await client.pexpire(keys.DEFAULT.alias("z"), 5000)
        await store.snapshot({"z": []})
        assert await client.pttl(keys.DEFAULT.alias("z")) > 89 * day * 1000
    finally:
        await store.close()
    forever = RedisLeadStore(connect(Settings(redis_url=contract_redis.url)), anonymous_ttl=None)
    try:
        await forever.commit([Commit("y", 0, b"y", ["e1"], anonymous=True)])
        assert await forever.detach([("y", "lead")]) == [b"y"]
        for key in (keys.DEFAULT.state("y"), keys.DEFAULT.alias("y"), keys.DEFAULT.detached("y")):
            assert await forever.client.pttl(key) == -1, key
    finally:
        await forever.close()


# -- Redis wire details ----------------------------------------------------------------------


async def test_bulk_load_fields_are_what_commits_write(contract_redis: RedisServer) -> None:
    """Redis only: `lead_fields` (bulk loading) writes the same hash as commits."""
    client = aioredis.Redis.from_url(contract_redis.url)
    await client.flushall()
    store = RedisLeadStore(client, partitions=PARTITIONS, seen_window=WINDOW)
    try:
        ids = [f"e{i}" for i in range(7)]
        await store.commit([Commit("a", 0, b"s1", ids[:3])])
        await store.commit([Commit("a", 1, b"s2", ids[3:])])
        await store.commit([Commit("b", 0, b"t1", [])])
        assert await client.hgetall(keys.DEFAULT.state("a")) == {
            k.encode(): v for k, v in lead_fields(2, b"s2", ids, WINDOW).items()
        }
        assert await client.hgetall(keys.DEFAULT.state("b")) == {
            k.encode(): v for k, v in lead_fields(1, b"t1", [], WINDOW).items()
        }
        await client.hset(keys.DEFAULT.state("c"), mapping=lead_fields(3, b"u", ["x", "y"], WINDOW))
        snap = (await store.snapshot({"c": ["x", "y", "z"]}))["c"]
        assert (snap.state, snap.version, snap.seen) == (b"u", 3, frozenset({"x", "y"}))
    finally:
        await store.close()


async def test_scripts_the_server_lost_are_loaded_again(contract_redis: RedisServer) -> None:
    """Redis only: after SCRIPT FLUSH (or a restart) every call still runs exactly once."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=PARTITIONS)
    try:
        await store.commit([Commit("a", 0, b"s1", ["e1"], {"t:1": b"m"})])
        await client.script_flush()
        assert (
            await store.commit([Commit("a", 1, b"s2", ["e2"]), Commit("b", 0, b"t", [])]) == set()
        )
        await client.script_flush()
        snaps = await store.snapshot({"a": ["e1", "e2", "e3"], "b": []})
        assert (snaps["a"].state, snaps["a"].version, snaps["a"].seen) == (
            b"s2",
            2,
            frozenset({"e1", "e2"}),
        )
        assert (snaps["b"].version, dict(snaps["a"].outbox)) == (1, {"t:1": b"m"})
        await client.script_flush()
        assert await store.detach([("b", "a")]) == [b"t"]
    finally:
        await store.close()


async def test_an_error_reply_leaves_the_connection_usable(contract_redis: RedisServer) -> None:
    """Redis only: every reply of a batch is read even when one is an error."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=PARTITIONS)
    try:
        await client.set(keys.DEFAULT.state("x"), b"not a hash")
        batch = [Commit("a", 0, b"s", ["e1"]), Commit("x", 0, b"s", []), Commit("b", 0, b"t", [])]
        with pytest.raises(ResponseError, match="WRONGTYPE"):
            await store.commit(batch)
        snaps = await store.snapshot({"a": ["e1"], "b": []})
        assert (snaps["a"].state, snaps["a"].seen, snaps["b"].state) == (
            b"s",
            frozenset({"e1"}),
            b"t",
        )
        assert await client.ping()
    finally:
        await store.close()


async def test_over_resp2(contract_redis: RedisServer) -> None:
    """Redis only: a redis:// URL with ?protocol=2 gets flat replies; same results."""
    client = connect(Settings(redis_url=contract_redis.url + "?protocol=2"))
    await client.flushall()
    store = RedisLeadStore(client, partitions=PARTITIONS)
    try:
        times = {"a": 1763900000.1234567, "b": 5.0}
        await store.index_due(times)
        assert await store.due(1763900001.0, 10, ALL) == times
        await store.commit([Commit("a", 0, b"s", ["e1"], {"t:1": b"m"})])
        snap = (await store.snapshot({"a": ["e1"]}))["a"]
        assert (snap.state, snap.seen, dict(snap.outbox)) == (
            b"s",
            frozenset({"e1"}),
            {"t:1": b"m"},
        )
        assert await _all(store.pending_outboxes(ALL)) == [("a", {"t:1": b"m"})]
        await store.record_progress("t", {1: 5})
        await store.publish_watermarks("t", {1: Watermark(2.5, 3.5)})
        assert (await store.progress("t"), await store.watermarks("t")) == (
            {1: 5},
            {1: Watermark(2.5, 3.5)},
        )
    finally:
        await store.close()


def _every_call(store: LeadStore, n: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    """One call of every LeadStore method but close, on subjects of their own."""
    return {
        "snapshot": lambda: store.snapshot({f"a{n}": ["e1"]}),
        "peek": lambda: store.peek([f"a{n}"]),
        "commit": lambda: store.commit([Commit(f"b{n}", 0, b"s", ["e1"], {"t:1": b"m"})]),
        "index_due": lambda: store.index_due({f"c{n}": 5.0}),
        "clear_outbox": lambda: store.clear_outbox({f"d{n}": ["t:1"]}),
        "pending_outboxes": lambda: _all(store.pending_outboxes(ALL)),
        "pending_count": lambda: store.pending_count(ALL),
        "due": lambda: store.due(10.0, 10, ALL),
        "detach": lambda: store.detach([(f"z{n}", f"e{n}")]),
        "forget_detached": lambda: store.forget_detached([f"z{n}"]),
        "record_progress": lambda: store.record_progress("t", {0: n}),
        "progress": lambda: store.progress("t"),
        "fence": lambda: store.fence(f"t{n}"),
        "set_fence": lambda: store.set_fence(f"t{n}", None),
        "publish_watermarks": lambda: store.publish_watermarks("t", {0: Watermark(1.5, 2.0)}),
        "watermarks": lambda: store.watermarks("t"),
        "hot": lambda: store.hot(10),
        "drop_hot": lambda: store.drop_hot([f"h{n}"]),
        "rescore_hot": lambda: store.rescore_hot({f"h{n}": 1.0}),
        "recorded_model": store.recorded_model,
        "record_model": lambda: store.record_model(
            ModelRecord.first(f"m-{n}", "version: m", "m.yaml", 1.0), replacing=None
        ),
        "ping": store.ping,
    }


def test_the_stall_test_covers_every_method() -> None:
    methods = {name for name in vars(LeadStore) if not name.startswith("_")} - {"close"}
    assert set(_every_call(MemoryLeadStore(), 0)) == methods


async def test_a_stalled_redis_times_out_and_the_store_recovers() -> None:
    """Redis only: with the worker's own client (`connect`) and only the socket timeout
    lowered, every method fails within about that timeout while Redis is stopped
    (the worker retries the batch), and works again once Redis is back."""
    timeout = 1.0
    with RedisServer() as server:  # private: SIGSTOP would stall every other test
        pid = server.pid
        assert pid is not None
        store = RedisLeadStore(
            connect(Settings(redis_url=server.url, redis_socket_timeout=timeout)),
            partitions=PARTITIONS,
        )
        try:
            await store.commit([Commit("a", 0, b"s", ["e1"])])
            os.kill(pid, signal.SIGSTOP)
            try:
                for name, run in _every_call(store, 1).items():
                    started = time.monotonic()
                    with pytest.raises((TimeoutError, RedisTimeoutError)):
                        await run()
                    took = time.monotonic() - started
                    assert took < 2 * timeout, (name, took)
            finally:
                os.kill(pid, signal.SIGCONT)
            for run in _every_call(store, 2).values():
                await run()
            snap = (await store.snapshot({"a": ["e1"]}))["a"]
            assert (snap.state, snap.seen) == (b"s", frozenset({"e1"}))
        finally:
            await store.close()


async def test_reindex_moves_the_previous_releases_index_entries(
    contract_redis: RedisServer,
) -> None:
    """An upgrade from the release with 16 CRC-32 due shards and scanned outboxes."""
    import zlib

    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=4)
    try:
        leads = [f"old-{n}" for n in range(40)]
        for n, lead in enumerate(leads):  # as the previous release indexed them
            await client.zadd(
                keys.DEFAULT.due_shard(zlib.crc32(lead.encode()) % 16), {lead: 1000.0 + n}
            )
        await client.hset(keys.DEFAULT.outbox("old-3"), "t:0000000001", b"{}")
        moved = await store.reindex()
        assert moved > 0
        due = await store.due(2000.0, 1000, range(4))
        assert due == {lead: 1000.0 + n for n, lead in enumerate(leads)}
        for shard in range(4, 16):
            assert await client.zcard(keys.DEFAULT.due_shard(shard)) == 0
        pending = [s async for s, _ in store.pending_outboxes(range(4))]
        assert pending == ["old-3"]
        assert await store.reindex() == 0, "the layout is recorded: later starts skip it"
        # a new partition count re-homes again
        wider = RedisLeadStore(client, partitions=8)
        await wider.reindex()
        assert await wider.due(2000.0, 1000, range(8)) == due
    finally:
        await store.close()


AWKWARD = ["}x{", "{", "a}b", "{a}", "%x7b", "50%off", "é" * 100]
"""Ids that would break a hash tag written raw (issue 15, 1.12); 200 UTF-8 bytes last."""


async def test_any_id_commits_reads_indexes_and_merges_on_its_own_keys(store: LeadStore) -> None:
    commits = [Commit(lead, 0, lead.encode(), [f"e-{lead}"], {"t:1": b"m"}) for lead in AWKWARD]
    assert await store.commit(commits) == set()
    await store.index_due({lead: 100.0 + n for n, lead in enumerate(AWKWARD)})
    snaps = await store.snapshot({lead: [f"e-{lead}"] for lead in AWKWARD})
    assert {lead: snap.state for lead, snap in snaps.items()} == {
        lead: lead.encode() for lead in AWKWARD
    }
    assert all(snap.seen == {f"e-{lead}"} for lead, snap in snaps.items())
    pending = sorted([s async for s, _ in store.pending_outboxes(ALL)])
    assert pending == sorted(AWKWARD)
    assert await store.due(1000.0, 100, ALL) == {lead: 100.0 + n for n, lead in enumerate(AWKWARD)}
    # an anonymous id with braces merges into a lead with braces
    await store.commit([Commit("anon}{", 0, b"anon", ["e-anon"], anonymous=True)])
    assert await store.detach([("anon}{", "a}b")]) == [b"anon"]
    assert (await store.snapshot({"anon}{": ()}))["anon}{"].alias == "a}b"


def test_every_key_of_an_awkward_id_is_in_one_cluster_slot(tmp_path: Path) -> None:
    """CLUSTER KEYSLOT of a redis-server in cluster mode, not a re-implementation.

    The cluster bus port is named explicitly: Redis' default (port + 10000) is past 65535
    for a free port above 55535, and redis-server then refuses to start.
    """
    port, bus = free_port(), free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--cluster-port", str(bus), "--bind", "127.0.0.1",
         "--cluster-enabled", "yes",
         "--cluster-config-file", str(tmp_path / "nodes.conf"), "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        for _ in range(600):  # up to 30 s on a loaded machine
            assert server.poll() is None, "redis-server in cluster mode did not start"
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        named = keys.Keys("lp")
        for lead in [*AWKWARD, "", "}", "x" * 300]:
            made = [named.state(lead), named.outbox(lead), named.alias(lead), named.detached(lead)]
            slots = {client.execute_command("CLUSTER", "KEYSLOT", k) for k in made}
            assert len(slots) == 1, (lead, made, slots)
    finally:
        client.close()
        server.terminate()
        server.wait(10)


async def test_reindex_moves_keys_an_earlier_release_wrote_with_braces_raw(
    contract_redis: RedisServer,
) -> None:
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=4)
    try:
        ours = RedisLeadStore(client, partitions=4)
        await ours.commit([Commit("a}b", 0, b"state-a", ["e1"], {"t:1": b"m"})])
        written = {
            k: await client.dump(k) for k in [keys.DEFAULT.state("a}b"), keys.DEFAULT.outbox("a}b")]
        }
        await client.flushall()
        # as the previous release named them: the id raw inside the braces
        for new, blob in written.items():
            old = new.replace("%x617d62", "a}b")
            await client.restore(old, 0, blob)
        await client.pexpire("lp:{a}b}:state", 600_000)
        await client.set("lp:{lead-1}:alias", "lead-2")  # an ordinary key stays
        assert await store.reindex() >= 2
        assert sorted(await client.keys("*")) == sorted(
            [b"lp:{%x617d62}:state", b"lp:{%x617d62}:outbox", b"lp:{lead-1}:alias",
             b"lp:layout", keys.DEFAULT.pending(keys.shard_of("a}b", 4)).encode()]
        )  # fmt: skip
        assert 0 < await client.pttl("lp:{%x617d62}:state") <= 600_000
        snap = (await store.snapshot({"a}b": ["e1"]}))["a}b"]
        assert (snap.state, snap.seen, snap.outbox) == (b"state-a", {"e1"}, {"t:1": b"m"})
    finally:
        await store.close()


async def test_two_prefixes_share_one_redis_without_touching_each_other(
    contract_redis: RedisServer,
) -> None:
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    blue = RedisLeadStore(client, partitions=4, keys=keys.Keys("blue"))
    green = RedisLeadStore(client, partitions=4, keys=keys.Keys("green"))
    try:
        for store, name in ((blue, b"blue"), (green, b"green")):
            await store.commit([Commit("lead-1", 0, name, ["e1"], {"t:1": name}, hot=5.0)])
            await store.index_due({"lead-1": 10.0})
            await store.record_progress("events", {0: len(name)})
            await store.publish_watermarks("events", {0: Watermark(float(len(name)), 1.0)})
        assert (await blue.snapshot({"lead-1": ()}))["lead-1"].state == b"blue"
        assert (await green.snapshot({"lead-1": ()}))["lead-1"].state == b"green"
        assert await blue.progress("events") == {0: 4}
        assert await green.progress("events") == {0: 5}
        await blue.clear_outbox({"lead-1": ["t:1"]})
        assert [s async for s, _ in green.pending_outboxes(ALL)] == ["lead-1"]
        await blue.reindex()
        assert all(k.startswith((b"blue:", b"green:")) for k in await client.keys("*"))
        assert await green.due(100.0, 10, ALL) == {"lead-1": 10.0}
    finally:
        await blue.close()
        await green.close()


# -- the hot-leads index ------------------------------------------------------------------


async def test_hot_index_orders_winning_commits_by_engagement(store: LeadStore) -> None:
    await store.commit(
        [
            Commit("lead-a", 0, b"a", ["e1"], hot=12.5),
            Commit("lead-b", 0, b"b", ["e2"], hot=80.0),
            Commit("lead-c", 0, b"c", ["e3"], hot=40.25),
            Commit("anon-1", 0, b"v", ["e4"], anonymous=True),  # no hot value: not indexed
        ]
    )
    assert await store.hot(10) == [("lead-b", 80.0), ("lead-c", 40.25), ("lead-a", 12.5)]
    assert await store.hot(2) == [("lead-b", 80.0), ("lead-c", 40.25)]
    assert await store.hot(0) == []
    # a later commit moves the lead; a lost one (stale version) changes nothing
    lost = await store.commit(
        [Commit("lead-a", 1, b"a2", ["e5"], hot=99.0), Commit("lead-b", 0, b"x", [], hot=1.0)]
    )
    assert lost == {"lead-b"}
    assert await store.hot(10) == [("lead-a", 99.0), ("lead-b", 80.0), ("lead-c", 40.25)]


async def test_hot_index_ties_and_drops(store: LeadStore) -> None:
    await store.commit([Commit(f"lead-{n}", 0, b"s", [], hot=5.0) for n in "xyz"])
    assert [lead for lead, _ in await store.hot(3)] == ["lead-z", "lead-y", "lead-x"]
    await store.drop_hot(["lead-y", "nobody"])
    await store.drop_hot([])
    assert await store.hot(3) == [("lead-z", 5.0), ("lead-x", 5.0)]


async def test_hot_index_keeps_only_the_highest(contract_redis: RedisServer) -> None:
    for kind in ("memory", "redis"):
        async for made in _stores(kind, contract_redis, hot_size=3):
            await made.commit([Commit(f"lead-{n}", 0, b"s", [], hot=float(n)) for n in range(5)])
            await made.commit([Commit("lead-9", 0, b"s", [], hot=2.5)])
            assert await made.hot(10) == [("lead-4", 4.0), ("lead-3", 3.0), ("lead-9", 2.5)], kind


async def test_rescoring_the_hot_index_updates_only_its_members(store: LeadStore) -> None:
    await store.commit(
        [Commit("lead-a", 0, b"a", [], hot=90.0), Commit("lead-b", 0, b"b", [], hot=50.0)]
    )
    await store.rescore_hot({"lead-a": 10.5, "lead-new": 99.0})
    await store.rescore_hot({})
    assert await store.hot(10) == [("lead-b", 50.0), ("lead-a", 10.5)]


async def test_a_merged_id_leaves_the_hot_index(store: LeadStore) -> None:
    await store.commit(
        [Commit("anon-1", 0, b"visitor", ["e1"], hot=30.0), Commit("lead-1", 0, b"l", [], hot=9.0)]
    )
    assert await store.detach([("anon-1", "lead-1")]) == [b"visitor"]
    assert await store.hot(10) == [("lead-1", 9.0)]


# -- the namespace's model record -----------------------------------------------------------

FIRST = ModelRecord.first("t-1+aaaaaaaaaaaa", "version: t-1\n", "/models/a.yaml", 1765000000.5)
SECOND = FIRST.changed_to(
    "t-2+bbbbbbbbbbbb", "version: t-2\n", "/models/b.yaml", 1765000100.25, FORWARD_ONLY
)


async def test_no_model_is_recorded_until_one_is(store: LeadStore) -> None:
    assert await store.recorded_model() is None
    assert await store.record_model(FIRST, replacing=None) == FIRST
    assert await store.recorded_model() == FIRST


async def test_recording_a_model_is_compare_and_set_on_the_version(store: LeadStore) -> None:
    await store.record_model(FIRST, replacing=None)
    # another first start lost the race: the record stays, and is what it gets back
    other = ModelRecord.first("t-9+cccccccccccc", "version: t-9\n", "/c.yaml", 2.0)
    assert await store.record_model(other, replacing=None) == FIRST
    # a change from a version that is no longer recorded writes nothing
    assert await store.record_model(other, replacing="t-0+000000000000") == FIRST
    assert await store.record_model(SECOND, replacing="t-1+aaaaaaaaaaaa") == SECOND
    got = await store.recorded_model()
    assert got == SECOND
    assert got is not None
    assert got.history == (
        ModelChange(
            from_version=None, to_version="t-1+aaaaaaaaaaaa", at=1765000000.5, mode=FIRST_START
        ),
        ModelChange(
            from_version="t-1+aaaaaaaaaaaa",
            to_version="t-2+bbbbbbbbbbbb",
            at=1765000100.25,
            mode=FORWARD_ONLY,
        ),
    )
    assert (got.source, got.origin, got.recorded_at) == (
        "version: t-2\n",
        "/models/b.yaml",
        1765000100.25,
    )


async def test_replacing_a_version_when_none_is_recorded_writes_nothing(store: LeadStore) -> None:
    assert await store.record_model(SECOND, replacing="t-1+aaaaaaaaaaaa") is None
    assert await store.recorded_model() is None


async def test_workers_recording_the_same_change_together_add_one_history_entry(
    store: LeadStore,
) -> None:
    await store.record_model(FIRST, replacing=None)
    got = await asyncio.gather(
        *(store.record_model(SECOND, replacing=FIRST.version) for _ in range(5))
    )
    assert got == [SECOND] * 5
    recorded = await store.recorded_model()
    assert recorded is not None
    assert [change.mode for change in recorded.history] == [FIRST_START, FORWARD_ONLY]


async def test_the_model_record_is_one_key_under_the_prefix(contract_redis: RedisServer) -> None:
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    blue = RedisLeadStore(client, partitions=4, keys=keys.Keys("blue"))
    green = RedisLeadStore(client, partitions=4, keys=keys.Keys("green"))
    try:
        await blue.record_model(FIRST, replacing=None)
        assert await client.keys("*") == [b"blue:model"]
        assert await green.recorded_model() is None
        stored = json.loads(await client.get("blue:model"))
        assert stored == {
            "format": 1,
            "version": "t-1+aaaaaaaaaaaa",
            "source": "version: t-1\n",
            "origin": "/models/a.yaml",
            "recorded_at": 1765000000.5,
            "history": [
                {
                    "from_version": None,
                    "to_version": "t-1+aaaaaaaaaaaa",
                    "at": 1765000000.5,
                    "mode": "first-start",
                }
            ],
        }
    finally:
        await blue.close()
        await green.close()


async def test_an_unreadable_model_record_is_reported_and_never_overwritten(
    contract_redis: RedisServer,
) -> None:
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, partitions=4)
    try:
        await client.set("lp:model", b"{not json")
        with pytest.raises(ModelRecordError, match="the model record is not JSON"):
            await store.recorded_model()
        with pytest.raises(ModelRecordError, match="not JSON"):
            await store.record_model(FIRST, replacing=None)
        assert await client.get("lp:model") == b"{not json"
        await client.set("lp:model", b'{"format":1,"version":7}')
        with pytest.raises(ModelRecordError, match="version"):
            await store.record_model(FIRST, replacing=None)
        assert await client.get("lp:model") == b'{"format":1,"version":7}'
    finally:
        await store.close()
