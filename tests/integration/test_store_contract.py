"""One contract, two stores: the in-memory fake must behave like Redis."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.dev.devstack import RedisServer
from streams.settings import Settings
from streams.store import SEEN_WINDOW, Commit, LeadStore, MemoryLeadStore
from streams.store.redis import RedisLeadStore, connect, keys, lead_fields

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def contract_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


async def _stores(kind: str, server: RedisServer, window: int) -> AsyncIterator[LeadStore]:
    if kind == "memory":
        yield MemoryLeadStore(due_shards=4, seen_window=window)
        return
    # the worker's own client (hiredis packing, retries), not a plain one
    client = connect(Settings(redis_url=server.url))
    await client.flushall()
    redis_store = RedisLeadStore(client, due_shards=4, seen_window=window)
    try:
        yield redis_store
    finally:
        await redis_store.close()


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, contract_redis: RedisServer
) -> AsyncIterator[LeadStore]:
    async for made in _stores(request.param, contract_redis, SEEN_WINDOW):
        yield made


WINDOW = 5


@pytest.fixture(params=["memory", "redis"])
async def small_window(
    request: pytest.FixtureRequest, contract_redis: RedisServer
) -> AsyncIterator[LeadStore]:
    """A store that remembers only the last WINDOW event ids of a lead."""
    async for made in _stores(request.param, contract_redis, WINDOW):
        yield made


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


async def test_outbox_is_kept_until_cleared(store: LeadStore) -> None:
    await store.commit([Commit("lead-{1}", 0, b"s", ["e1"], outbox={"t1": b"m1", "h:t1": b"h1"})])
    snap = (await store.snapshot({"lead-{1}": []}))["lead-{1}"]
    assert dict(snap.outbox) == {"t1": b"m1", "h:t1": b"h1"}
    pending = [item async for item in store.pending_outboxes()]
    assert pending == [("lead-{1}", {"t1": b"m1", "h:t1": b"h1"})]
    await store.clear_outbox({"lead-{1}": ["t1"]})
    assert [item async for item in store.pending_outboxes()] == [("lead-{1}", {"h:t1": b"h1"})]
    await store.clear_outbox({"lead-{1}": ["h:t1"]})
    assert [item async for item in store.pending_outboxes()] == []


async def test_due_index_follows_commits(store: LeadStore) -> None:
    await store.commit(
        [
            Commit("a", 0, b"s", [], due_at=100.0),
            Commit("b", 0, b"s", [], due_at=200.0),
            Commit("ünïcode lead", 0, b"s", [], due_at=50.0),
        ]
    )
    assert sorted(await store.due(99.0, limit=10)) == ["ünïcode lead"]
    assert sorted(await store.due(150.0, limit=10)) == ["a", "ünïcode lead"]
    assert await store.due(150.0, limit=10) == {"a": 100.0, "ünïcode lead": 50.0}
    await store.commit([Commit("a", 1, b"s2", [], due_at=None)])
    assert sorted(await store.due(1000.0, limit=10)) == ["b", "ünïcode lead"]


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
    assert sorted(await store.due(15.0, limit=100)) == ["lead-3", "new"]
    expected = {"lead-3", "new", *(lead for i, lead in enumerate(leads) if i % 2 == 0)}
    assert sorted(await store.due(100.0, limit=100)) == sorted(expected)


async def test_due_limit_applies_per_shard(store: LeadStore) -> None:
    leads = [f"lead-{i}" for i in range(40)]
    await store.commit([Commit(lead, 0, b"s", [], due_at=float(i)) for i, lead in enumerate(leads)])
    due = await store.due(1000.0, limit=2)
    shards = {keys.shard_of(lead, 4) for lead in leads}
    assert len(due) == 2 * len(shards)
    per_shard: dict[int, list[str]] = {}
    for lead in due:
        per_shard.setdefault(keys.shard_of(lead, 4), []).append(lead)
    for shard, chosen in per_shard.items():
        earliest = [lead for lead in leads if keys.shard_of(lead, 4) == shard][:2]
        assert sorted(chosen) == sorted(earliest)


async def test_detach_aliases_and_hands_over_state_idempotently(store: LeadStore) -> None:
    await store.commit([Commit("anon-1", 0, b"anon-state", ["a1"], due_at=10.0)])
    assert await store.detach("anon-1", "lead-1") == b"anon-state"
    assert await store.detach("anon-1", "lead-1") == b"anon-state"
    snap = (await store.snapshot({"anon-1": ["a1"]}))["anon-1"]
    assert (snap.alias, snap.state, snap.seen) == ("lead-1", None, frozenset({"a1"}))
    assert await store.due(100.0, limit=10) == {}
    assert await store.commit([Commit("anon-1", 0, b"late", ["a2"])]) == {"anon-1"}
    snap = (await store.snapshot({"anon-1": ["a1", "a2"]}))["anon-1"]
    assert (snap.state, snap.seen) == (None, frozenset({"a1"}))
    await store.forget_detached("anon-1")
    assert await store.detach("anon-1", "lead-1") is None


async def test_detach_of_unknown_anonymous_id_still_links(store: LeadStore) -> None:
    assert await store.detach("anon-9", "lead-9") is None
    snap = (await store.snapshot({"anon-9": []}))["anon-9"]
    assert snap.alias == "lead-9"
    assert await store.commit([Commit("anon-9", 0, b"x", ["z"])]) == {"anon-9"}


async def test_bulk_load_fields_are_what_commits_write(contract_redis: RedisServer) -> None:
    """Redis only: `lead_fields` (bulk loading) writes the same hash as commits."""
    client = aioredis.Redis.from_url(contract_redis.url)
    await client.flushall()
    store = RedisLeadStore(client, due_shards=4, seen_window=WINDOW)
    try:
        ids = [f"e{i}" for i in range(7)]
        await store.commit([Commit("a", 0, b"s1", ids[:3])])
        await store.commit([Commit("a", 1, b"s2", ids[3:])])
        await store.commit([Commit("b", 0, b"t1", [])])
        assert await client.hgetall(keys.state("a")) == {
            k.encode(): v for k, v in lead_fields(2, b"s2", ids, WINDOW).items()
        }
        assert await client.hgetall(keys.state("b")) == {
            k.encode(): v for k, v in lead_fields(1, b"t1", [], WINDOW).items()
        }
        await client.hset(keys.state("c"), mapping=lead_fields(3, b"u", ["x", "y"], WINDOW))
        snap = (await store.snapshot({"c": ["x", "y", "z"]}))["c"]
        assert (snap.state, snap.version, snap.seen) == (b"u", 3, frozenset({"x", "y"}))
    finally:
        await store.close()


async def test_index_due_sets_and_removes_entries(store: LeadStore) -> None:
    await store.index_due({"a": 10.0, "b": 20.0})
    assert sorted(await store.due(15.0, limit=10)) == ["a"]
    await store.index_due({"a": None, "b": 5.0})
    assert sorted(await store.due(15.0, limit=10)) == ["b"]


async def test_scripts_the_server_lost_are_loaded_again(contract_redis: RedisServer) -> None:
    """Redis only: after SCRIPT FLUSH (or a restart) every call still runs exactly once."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, due_shards=4)
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
        assert await store.detach("b", "a") == b"t"
    finally:
        await store.close()


async def test_an_error_reply_leaves_the_connection_usable(contract_redis: RedisServer) -> None:
    """Redis only: every reply of a batch is read even when one is an error."""
    client = connect(Settings(redis_url=contract_redis.url))
    await client.flushall()
    store = RedisLeadStore(client, due_shards=4)
    try:
        await client.set(keys.state("x"), b"not a hash")
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


async def test_due_times_come_back_exactly(store: LeadStore) -> None:
    """The sweeper hands the index time to the search as a hint: no rounding."""
    times = {"a": 1763900000.1234567, "b": 1763900000.0000002, "c": 1e-300}
    await store.index_due(times)
    assert await store.due(1763900001.0, limit=10) == times


async def test_due_over_resp2(contract_redis: RedisServer) -> None:
    """Redis only: a redis:// URL with ?protocol=2 gets flat replies; same result."""
    client = connect(Settings(redis_url=contract_redis.url + "?protocol=2"))
    await client.flushall()
    store = RedisLeadStore(client, due_shards=4)
    try:
        times = {"a": 1763900000.1234567, "b": 5.0}
        await store.index_due(times)
        assert await store.due(1763900001.0, limit=10) == times
        await store.commit([Commit("a", 0, b"s", ["e1"], {"t:1": b"m"})])
        snap = (await store.snapshot({"a": ["e1"]}))["a"]
        assert (snap.state, snap.seen, dict(snap.outbox)) == (
            b"s",
            frozenset({"e1"}),
            {"t:1": b"m"},
        )
    finally:
        await store.close()


async def test_a_stalled_redis_times_out_and_the_store_recovers(
    contract_redis: RedisServer,
) -> None:
    """Redis only: replies that stop coming fail the call within the socket timeout
    (the batch is retried by the worker), and the next call works."""
    client = aioredis.Redis.from_url(contract_redis.url, socket_timeout=0.3)
    await client.flushall()
    store = RedisLeadStore(client, due_shards=4)
    pid = contract_redis.pid
    assert pid is not None
    try:
        await store.commit([Commit("a", 0, b"s", ["e1"])])
        os.kill(pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises((TimeoutError, RedisTimeoutError)):
                await store.snapshot({"a": ["e1"]})
            assert time.monotonic() - started < 3
        finally:
            os.kill(pid, signal.SIGCONT)
        snap = (await store.snapshot({"a": ["e1"]}))["a"]
        assert (snap.state, snap.seen) == (b"s", frozenset({"e1"}))
    finally:
        await store.close()
