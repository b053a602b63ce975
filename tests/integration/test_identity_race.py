"""One merge per anonymous visitor, and identify bursts that do not stall a worker.

ARCHITECTURE.md, "Guarantees": an anonymous visitor's history lands in exactly
one lead. identify(Z -> L1) and identify(Z -> L2) are keyed by their leads, so
they usually reach different partitions, often different workers, at the same
moment; whichever wins, Z's events count once, in that lead, and so do the
events Z sends afterwards. `Settings.redis_max_connections` bounds the Redis
fan-out of one worker: a batch of 200 merges must go through a pool of 8.

What counts in `events_applied` (scoring/engine.py `_Work.apply`, state.py
`merge`): every applied event adds one to the state it is applied to, whatever
its type or whether a rule matched (identify events and marker page views
included); a merge adds the anonymous state's count to the lead's. So the sum
over all leads and anonymous states is the number of distinct events.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from leadpulse.streams.dev.devstack import DevStack, RedisServer
from leadpulse.streams.dev.workerproc import WorkerProcess
from tests.integration.harness import (
    owned_partitions,
    peer_settings,
    produce,
    start_worker,
    start_workers,
    stats_total,
    wait_for,
    wait_progressing,
    worker_settings,
)
from tests.reliability.campaign import partition_of, read_states

VISITORS = 200


class Clock:
    """Increasing event times in the past, one per call."""

    def __init__(self) -> None:
        self.at = datetime.now(UTC) - timedelta(hours=1)

    def __call__(self) -> str:
        self.at += timedelta(milliseconds=100)
        return self.at.isoformat()


def _event(
    at: Clock,
    kind: str,
    *,
    lead: str | None = None,
    anon: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": uuid.uuid4().hex, "type": kind, "occurred_at": at()}
    if lead is not None:
        body["lead_id"] = lead
    if anon is not None:
        body["anonymous_id"] = anon
    return {**body, **extra}


def _view(at: Clock, *, lead: str | None = None, anon: str | None = None, **extra: Any) -> Any:
    return _event(
        at, "page_view", lead=lead, anon=anon, properties={"url": "https://a.io/docs"}, **extra
    )


def _describe(workers: list[WorkerProcess]) -> str:
    return "\n---\n".join(f"{w.stats()}\n{w.log_tail(12)}" for w in workers)


@pytest.fixture
def two_workers(stack: DevStack, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    settings = worker_settings(stack, tmp_path, partitions=4)
    peer = peer_settings(settings, tmp_path, "b")
    workers = start_workers(
        [settings.replace(data_dir=tmp_path / "data-a"), peer],
        [tmp_path / "worker-a.log", tmp_path / "worker-b.log"],
    )
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.parametrize("visitors", [40, VISITORS], ids=["small-burst", "burst-of-200"])
def test_concurrent_identifies_of_one_visitor_merge_it_once(
    two_workers: list[WorkerProcess], visitors: int
) -> None:
    """Two identifies of each visitor, to leads on (usually) different workers, at once.

    40 visitors keep each worker's merge fan-out under any pool size, so that
    case checks the merge alone; 200 also checks the bounded fan-out.
    """
    workers = two_workers
    settings = workers[0].settings
    owner_of = {p: n for n, w in enumerate(workers) for p in owned_partitions(w)}
    tag = uuid.uuid4().hex[:6]
    at = Clock()
    zs = [f"z-{tag}-{i}" for i in range(visitors)]
    l1 = [f"l1-{tag}-{i}" for i in range(visitors)]
    l2 = [f"l2-{tag}-{i}" for i in range(visitors)]
    before = {z: 2 + i % 2 for i, z in enumerate(zs)}
    history = [_view(at, anon=z) for z in zs for _ in range(before[z])]
    produce(settings, history)
    wait_for(
        lambda: stats_total(workers, "scored") >= len(history),
        timeout=60,
        what="the anonymous histories scored",
    )

    # the race: both identifies of every visitor in one burst, keyed by their leads
    burst = [
        e
        for z, a, b in zip(zs, l1, l2, strict=True)
        for e in (
            _event(at, "identify", lead=a, anon=z, traits={"title": "a"}),
            _event(at, "identify", lead=b, anon=z, traits={"title": "b"}),
        )
    ]
    after = 2
    later = [_view(at, anon=z) for z in zs for _ in range(after)]
    later += [_view(at, anon=z, traits={"zmark": "end"}) for z in zs]  # credited to the owner
    markers = [_view(at, lead=lead, traits={"marker": "end"}) for lead in l1 + l2]
    crossing = sum(
        owner_of.get(partition_of(a, 4)) != owner_of.get(partition_of(b, 4))
        for a, b in zip(l1, l2, strict=True)
    )
    produce(settings, burst)
    produce(settings, later + markers)
    total = len(history) + len(burst) + len(later) + len(markers)

    def settled() -> bool:
        if stats_total(workers, "scored") < total:
            return False
        states = read_states(settings.redis_url, l1 + l2)
        return all(s is not None and s.traits.get("marker") == "end" for s in states.values())

    try:
        wait_progressing(
            settled,
            lambda: stats_total(workers, "scored"),
            timeout=120,
            stall=40,
            what=f"all {total} events scored, every marker applied",
        )
    except TimeoutError as error:
        raise AssertionError(
            f"{error}; scored {stats_total(workers, 'scored')}\n{_describe(workers)}"
        ) from None

    states = read_states(settings.redis_url, l1 + l2 + zs)
    both, neither, wrong_counts = [], [], []
    for i, z in enumerate(zs):
        a, b = states[l1[i]], states[l2[i]]
        assert a is not None, l1[i]
        assert b is not None, l2[i]
        owners = [s for s in (a, b) if z in s.merged_from]
        if len(owners) == 2:
            both.append(z)
        elif not owners:
            neither.append(z)
        else:
            owner, other = (a, b) if owners[0] is a else (b, a)
            want = before[z] + 1 + after + 1 + 1  # history, identify, later, zmark, marker
            if (
                owner.events_applied != want
                or other.events_applied != 2  # its identify and its marker only
                or owner.traits.get("zmark") != "end"
            ):
                wrong_counts.append(
                    f"{z}: owner {owner.lead_id} {owner.events_applied} (want {want}), "
                    f"other {other.lead_id} {other.events_applied} (want 2)"
                )
    applied = sum(s.events_applied for s in states.values() if s is not None)
    print(
        f"\nidentity race: {visitors} visitors ({crossing} with L1/L2 on different workers), "
        f"{total} events; merged into both leads: "
        f"{len(both)}, into none: {len(neither)}, wrong counts: {len(wrong_counts)}; "
        f"events_applied sum {applied}"
    )
    assert not both, f"{len(both)} visitors merged into both leads, e.g. {both[:3]}"
    assert not neither, f"{len(neither)} visitors merged into no lead, e.g. {neither[:3]}"
    assert not wrong_counts, f"{len(wrong_counts)} wrong counts:\n" + "\n".join(wrong_counts[:10])
    assert applied == total, f"events_applied sums to {applied}, {total} distinct events"


def _worker_connections(url: str) -> int:
    """Clients connected to a private redis-server, this probe's own one left out."""
    client = redis.Redis.from_url(url)
    try:
        return len(client.client_list()) - 1
    finally:
        client.close()


def test_identify_burst_through_a_small_pool_does_not_stall(
    stack: DevStack, tmp_path: Path
) -> None:
    """200 merges in one batch with redis_max_connections=8: all merged, the worker goes on.

    After the burst every lead gets one more event; a lead's event can only be
    applied once its identify was (later round of the same batch, or a later
    batch), so all of them scored means no batch of the burst is stuck. A
    private redis-server, so every connection but the probe's is the worker's.
    """
    with RedisServer() as server:
        settings = worker_settings(stack, tmp_path, partitions=1).replace(
            redis_url=server.url, redis_max_connections=8
        )
        worker = start_worker(settings, tmp_path / "worker.log")
        try:
            tag = uuid.uuid4().hex[:6]
            at = Clock()
            zs = [f"z-{tag}-{i}" for i in range(VISITORS)]
            leads = [f"l-{tag}-{i}" for i in range(VISITORS)]
            history = [_view(at, anon=z) for z in zs]
            produce(settings, history)
            wait_for(lambda: worker.stats().get("scored", 0) >= len(history), timeout=60)
            burst = [
                _event(at, "identify", lead=lead, anon=z) for z, lead in zip(zs, leads, strict=True)
            ]
            produce(settings, burst)  # one request, so usually one batch (batch_size 500)
            markers = [_view(at, lead=lead, traits={"marker": "end"}) for lead in leads]
            produced = time.monotonic()
            produce(settings, markers)

            def marked() -> bool:
                states = read_states(settings.redis_url, leads).values()
                return all(s is not None and s.traits.get("marker") == "end" for s in states)

            try:
                wait_progressing(
                    marked,
                    lambda: worker.stats().get("scored", 0),
                    timeout=60,
                    stall=25,
                    what="every lead's event after the burst scored",
                )
            except TimeoutError as error:
                raise AssertionError(
                    f"{error}: the worker stalled\n{_describe([worker])}"
                ) from None
            latency = time.monotonic() - produced
            connections = _worker_connections(server.url)
            states = read_states(settings.redis_url, leads)
        finally:
            worker.stop()
    wrong = [
        lead
        for lead, z in zip(leads, zs, strict=True)
        if (s := states[lead]) is None or s.merged_from != (z,) or s.events_applied != 3
    ]
    print(
        f"\nidentify burst: {VISITORS} merges in one batch, pool of 8: every next event "
        f"scored {latency:.1f}s after it was produced, worker held {connections} Redis "
        f"connections, {len(wrong)} leads wrong"
    )
    # history view + identify + marker, Z's history merged into its lead
    assert not wrong, f"{len(wrong)} leads not merged with 3 events applied: {wrong[:5]}"
    assert connections <= settings.redis_max_connections, (
        f"the worker opened {connections} Redis connections, "
        f"redis_max_connections is {settings.redis_max_connections}"
    )
