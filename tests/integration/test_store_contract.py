"""One contract, two stores: the in-memory fake must behave like Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from streams import keys
from streams.devstack import RedisServer
from streams.store import Commit, LeadStore, MemoryLeadStore
from streams.store_redis import RedisLeadStore

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def contract_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(params=["memory", "redis"])
async def store(
    request: pytest.FixtureRequest, contract_redis: RedisServer
) -> AsyncIterator[LeadStore]:
    if request.param == "memory":
        yield MemoryLeadStore(due_shards=4)
        return
    client = aioredis.Redis.from_url(contract_redis.url)
    await client.flushall()
    redis_store = RedisLeadStore(client, due_shards=4)
    try:
        yield redis_store
    finally:
        await redis_store.close()


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
    ids = [f"e{i}" for i in range(2500)]
    assert await store.commit([Commit("lead-1", 0, b"s", ids)]) == set()
    snap = (await store.snapshot({"lead-1": [*ids, "other"]}))["lead-1"]
    assert snap.seen == frozenset(ids)


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
    await store.commit([Commit("a", 1, b"s2", [], due_at=None)])
    assert sorted(await store.due(1000.0, limit=10)) == ["b", "ünïcode lead"]


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
    assert await store.due(100.0, limit=10) == []
    assert await store.commit([Commit("anon-1", 0, b"late", ["a2"])]) == {"anon-1"}
    await store.forget_detached("anon-1")
    assert await store.detach("anon-1", "lead-1") is None


async def test_detach_of_unknown_anonymous_id_still_links(store: LeadStore) -> None:
    assert await store.detach("anon-9", "lead-9") is None
    snap = (await store.snapshot({"anon-9": []}))["anon-9"]
    assert snap.alias == "lead-9"
    assert await store.commit([Commit("anon-9", 0, b"x", ["z"])]) == {"anon-9"}
