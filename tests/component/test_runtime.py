"""The worker's loop without Faust: progress in the store, rollbacks, resume points, sweeps.

Regression tests for issue 8, defects 2 (sweeps past the watermark) and 7
(progress the store lost went unnoticed).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from leadpulse.scoring import ScoringModel
from leadpulse.streams.errors import FatalError
from leadpulse.streams.observability.health import Health
from leadpulse.streams.observability.stats import Totals
from leadpulse.streams.pipeline import runtime as runtime_module
from leadpulse.streams.pipeline.app import _owns
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.progress import RollbackError
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.pipeline.runtime import Runtime
from leadpulse.streams.store import MemoryLeadStore, Watermark
from leadpulse.streams.store.redis import keys
from tests.component.conftest import T0, TP, Clock, FakeConsumer, FakePublisher, event, page

TOPIC = "leadpulse.events"


def make(
    model: ScoringModel,
    highwater: dict[int, int],
    owned: set[int] | None = None,
    store: MemoryLeadStore | None = None,
) -> tuple[Runtime, MemoryLeadStore, list]:
    store = store or MemoryLeadStore(partitions=4)
    publisher = FakePublisher()
    clock = Clock(T0.timestamp() + 3600)
    health = Health(clock=clock)
    processor = Processor(store, publisher, model, topics=Topics(), clock=clock, health=health)
    fatal: list[FatalError] = []
    runtime = Runtime(
        processor,
        store,
        TOPIC,
        totals=Totals(),
        health=health,
        stopped=lambda: False,
        highwater=highwater.get,
        clock=clock,
        on_fatal=fatal.append,
        owns=None if owned is None else owned.__contains__,
    )
    return runtime, store, fatal


def records(partition: int, start: int, bodies: list[dict[str, Any]]) -> list[Record]:
    return [
        Record(b"k", json.dumps(b).encode(), TOPIC, partition, start + n)
        for n, b in enumerate(bodies)
    ]


async def test_each_batch_records_its_partitions_next_offsets(model: ScoringModel) -> None:
    runtime, store, _ = make(model, {})
    await runtime.score(records(2, 40, [page("https://x.io/", "lead-a"), page("https://x.io/")]))
    await runtime.score(records(3, 7, [page("https://x.io/", "lead-b")]))
    assert await store.progress(TOPIC) == {2: 42, 3: 8}


async def test_a_store_that_lost_progress_stops_the_batch_before_it_applies(
    model: ScoringModel,
) -> None:
    runtime, store, fatal = make(model, {})
    await runtime.score(records(1, 0, [page("https://x.io/", "lead-a")]))
    store.offsets[TOPIC][1] = 0  # Redis came back without its last second
    with pytest.raises(RollbackError) as caught:
        await runtime.score(records(1, 1, [event("demo_request", "lead-a", at=5)]))
    assert fatal == [caught.value]
    assert caught.value.lost == {1: (1, 0)}
    # the newer event was not applied on top of the older state
    snap = (await store.snapshot({"lead-a": ()}))["lead-a"]
    assert snap.version == 1


async def test_assigned_partitions_resume_where_the_store_recorded(model: ScoringModel) -> None:
    runtime, store, _ = make(model, {0: 20, 1: 0})
    await store.record_progress(TOPIC, {0: 9, 2: 4})
    tp0, tp1 = TP(TOPIC, 0), TP(TOPIC, 1)
    consumer = FakeConsumer({tp0: 5, tp1: None, TP("other", 0): 3})
    await runtime.after_seek(consumer)
    assert consumer.sought == {tp0: 9}
    assert runtime.watermarks.positions == {0: 9, 1: None}
    # Faust commits only offsets contiguous with what it thinks is committed
    assert consumer._committed_offset[tp0] == 9


async def test_the_sweep_waits_for_a_lagging_partition(model: ScoringModel) -> None:
    """A lead that decay takes below recycle is not swept while its partition lags."""
    runtime, _, _ = make(model, {0: 1000, 1: 0, 2: 0, 3: 0})
    clock = runtime.clock
    assert isinstance(clock, Clock)
    await runtime.after_seek(FakeConsumer({TP(TOPIC, p): 0 for p in range(4)}))
    lead = next(f"lead-{n}" for n in range(100) if keys.shard_of(f"lead-{n}", 4) == 0)
    hot = [
        event("identify", lead, traits={"company_size": 300}),
        page("https://x.io/pricing", lead, at=1),
        event("demo_request", lead, at=2),
    ]
    await runtime.score(records(0, 0, hot))  # 3 of 1000 records: lagging, at T0 + 2 s
    publisher = runtime.processor.publisher
    assert isinstance(publisher, FakePublisher)
    before = len(publisher.on(Topics().transitions))
    await runtime.sweep()
    assert runtime.sweep_bound == pytest.approx(T0.timestamp() + 2)
    assert len(publisher.on(Topics().transitions)) == before, "swept past the watermark"
    # caught up: the watermark is now, and the recycle decay caused is found
    await runtime.score(records(0, 999, [page("https://x.io/", "lead-z", at=3)]))
    await runtime.sweep()
    assert runtime.sweep_bound == clock.now
    moves = [json.loads(m.value)["to_stage"] for m in publisher.on(Topics().transitions)]
    assert moves[-1] == "nurture"


async def test_a_batch_that_outlived_a_rebalance_records_only_owned_partitions(
    model: ScoringModel,
) -> None:
    runtime, store, _ = make(model, {}, owned={1})
    batch = records(1, 10, [page("https://x.io/", "lead-a")]) + records(
        2, 50, [page("https://x.io/", "lead-b")]
    )
    await runtime.score(batch)
    assert await store.progress(TOPIC) == {1: 11}, "partition 2 belongs to another worker now"
    assert set(runtime.watermarks.positions) == {1}


async def test_an_idle_partition_whose_progress_the_store_lost_is_not_swept_on(
    model: ScoringModel,
) -> None:
    runtime, store, fatal = make(model, {0: 100})
    await runtime.after_seek(FakeConsumer({TP(TOPIC, 0): 0}))
    await runtime.score(records(0, 99, [page("https://x.io/", "lead-a")]))
    store.offsets[TOPIC][0] = 40  # Redis restarted without its last second
    with pytest.raises(RollbackError):
        await runtime.sweep()
    assert len(fatal) == 1


async def test_the_sweep_publishes_what_an_earlier_publish_left_in_the_outbox(
    model: ScoringModel,
) -> None:
    """A recycle whose publish failed once is sent with the lead's next sweep."""
    runtime, store, _ = make(model, dict.fromkeys(range(4), 0))
    await runtime.after_seek(FakeConsumer({TP(TOPIC, p): 0 for p in range(4)}))
    publisher = runtime.processor.publisher
    assert isinstance(publisher, FakePublisher)
    lead = "lead-left"
    hot = [
        event("identify", lead, traits={"company_size": 300}),
        page("https://x.io/pricing", lead, at=1),
        event("demo_request", lead, at=2),
    ]
    await runtime.score(records(0, 0, hot))
    left = publisher.on(Topics().transitions)[0].value
    store.outboxes.setdefault(lead, {})["t:0000000000"] = left
    sent_before = len(publisher.sent)
    await runtime.sweep()
    assert lead not in store.outboxes
    assert len(publisher.sent) > sent_before


async def test_a_batch_recorded_while_a_sweep_reads_progress_is_no_rollback(
    model: ScoringModel,
) -> None:
    """The sweep's check and the agent's record interleave; only a real loss is a rollback."""
    import asyncio

    runtime, store, fatal = make(model, {0: 1000})
    await runtime.after_seek(FakeConsumer({TP(TOPIC, 0): 0}))
    await runtime.score(records(0, 0, [page("https://x.io/", "lead-a")]))
    reading = asyncio.Event()
    original = store.progress

    async def slow_progress(topic: str) -> dict[int, int]:
        got = await original(topic)
        reading.set()
        await asyncio.sleep(0.05)  # the read is in flight while the batch records
        return got

    store.progress = slow_progress  # type: ignore[method-assign]
    check = asyncio.ensure_future(runtime.progress.check({0}))
    await reading.wait()
    await runtime.progress.record({0: 50})
    await check  # raised RollbackError before: the stale read looked like a loss
    assert fatal == []


async def test_a_batch_that_outlived_a_rebalance_never_moves_progress_back(
    model: ScoringModel,
) -> None:
    # the former owner still believes it owns partition 0 when its late batch ends
    late, store, late_fatal = make(model, {0: 100})
    new_owner, _, fatal = make(model, {0: 100}, store=store)
    await new_owner.score(records(0, 10, [page("https://x.io/", "lead-a")] * 10))
    assert await store.progress(TOPIC) == {0: 20}
    await late.score(records(0, 0, [page("https://x.io/", "lead-b")] * 10))
    assert await store.progress(TOPIC) == {0: 20}
    # so the new owner sees no rollback and goes on
    await new_owner.score(records(0, 20, [page("https://x.io/", "lead-a")]))
    assert await store.progress(TOPIC) == {0: 21}
    assert fatal == late_fatal == []


def test_ownership_fails_closed_when_the_consumer_cannot_say() -> None:
    class Consumerless:
        @property
        def consumer(self) -> Any:
            raise RuntimeError("no consumer yet")

    assert _owns(Consumerless(), TOPIC, 0) is False  # type: ignore[arg-type]


async def test_a_stalled_or_ownerless_partition_stops_holding_every_sweep_back(
    model: ScoringModel,
) -> None:
    runtime, store, _ = make(model, {0: 0})
    clock = runtime.clock
    assert isinstance(clock, Clock)
    await runtime.after_seek(FakeConsumer({TP(TOPIC, 0): 0}))
    # partition 3's owner published a lagging watermark, then died
    stuck = clock.now - 3600
    await store.publish_watermarks(TOPIC, {3: Watermark(stuck, clock.now)})
    await runtime.sweep()
    assert runtime.sweep_bound == stuck
    assert runtime.health.as_dict()["stale_watermarks"] == []
    clock.now += 300  # exactly LEADPULSE_WATERMARK_STALE_AFTER (default): still held
    await runtime.sweep()
    assert runtime.sweep_bound == stuck
    clock.now += 0.5
    await runtime.sweep()
    assert runtime.sweep_bound == clock.now
    assert runtime.health.as_dict()["stale_watermarks"] == [3]
    # its new owner publishes it live again: it holds sweeps back again
    await store.publish_watermarks(TOPIC, {3: Watermark(stuck + 60, clock.now)})
    await runtime.sweep()
    assert runtime.sweep_bound == stuck + 60
    assert runtime.health.as_dict()["stale_watermarks"] == []


def _replays(runtime: Runtime) -> list[asyncio.Task[Any]]:
    """The outbox replays of `runtime` still running (other tests' may share the loop)."""
    found = []
    for task in asyncio.all_tasks():
        coro: Any = task.get_coro()
        if task.done() or getattr(coro, "__qualname__", "") != "Runtime._replay":
            continue
        if coro.cr_frame is not None and coro.cr_frame.f_locals.get("self") is runtime:
            found.append(task)
    return found


async def test_outbox_replays_do_not_pile_up_while_redis_is_away_and_stop_on_revoke(
    model: ScoringModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime, _, _ = make(model, {0: 0, 1: 0})
    calls: list[object] = []

    async def away(shards: object) -> object:
        calls.append(shards)
        raise ConnectionError("Redis is away")

    monkeypatch.setattr(runtime.processor, "replay_outboxes", away)
    monkeypatch.setattr(runtime_module, "REPLAY_EVERY", 1)
    await runtime.after_seek(FakeConsumer({TP(TOPIC, 0): 0, TP(TOPIC, 1): 0}))
    for _ in range(5):  # five ticks, each would start one
        await runtime.sweep()
        await asyncio.sleep(0)
    assert len(_replays(runtime)) == 1
    assert calls, "the replay never ran"
    # partition 1 goes to another worker: the replay covering it stops, 0 is replayed again
    await runtime.after_seek(FakeConsumer({TP(TOPIC, 0): 0}))
    await asyncio.sleep(0)
    running = _replays(runtime)
    assert len(running) == 1
    await asyncio.sleep(0.05)
    assert calls[-1] == {0}
    for task in running:
        task.cancel()
