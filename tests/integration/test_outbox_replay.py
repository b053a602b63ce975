"""Outbox replay is per partition, on assignment: a worker taking over partitions publishes
what their previous owner decided but never confirmed as sent.

ARCHITECTURE.md, "Guarantees": a decided transition is published even across
a crash between the Redis write and the Kafka send. The entries here are put in
the outboxes directly through the real store (as a worker that died after its
commit would have left them), then two workers of one group must publish each
of them, each entry by a worker that owns the lead's partition.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from leadpulse.schemas import StageTransition, encode
from leadpulse.schemas.messages import Stage
from leadpulse.scoring import LeadState
from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import Commit, encode_state
from leadpulse.streams.store.redis import RedisLeadStore, connect
from tests.integration.harness import (
    owned_partitions,
    peer_settings,
    poll_topic,
    start_workers,
    wait_for,
    worker_settings,
)
from tests.reliability.campaign import partition_of

PARTITIONS = 4
PER_PARTITION = 10


def leads_on(partitions: set[int], tag: str, per_partition: int = PER_PARTITION) -> list[str]:
    """Lead ids, `per_partition` of them on each of `partitions` (default partitioner)."""
    found: dict[int, list[str]] = {p: [] for p in partitions}
    for n in itertools.count():
        lead = f"ob-{tag}-{n}"
        bucket = found.get(partition_of(lead, PARTITIONS))
        if bucket is not None and len(bucket) < per_partition:
            bucket.append(lead)
        if all(len(b) == per_partition for b in found.values()):
            return [lead for bucket in found.values() for lead in bucket]
    raise AssertionError("unreachable")


def _transition(lead: str) -> StageTransition:
    return StageTransition(
        transition_id=str(uuid.uuid4()),
        lead_id=lead,
        from_stage=Stage.IQL,
        to_stage=Stage.MQL,
        engagement=55.0,
        fit=40.0,
        grade="A",
        occurred_at=datetime.now(UTC) - timedelta(minutes=5),
        model_version="integration-1",
        reason="engagement 55 >= mql 50",
    )


async def seed_outboxes(settings: Settings, leads: list[str]) -> dict[str, str]:
    """Commit each lead (new) with one pending transition in its outbox; id -> lead."""
    store = RedisLeadStore(connect(settings), partitions=PARTITIONS)
    made = {lead: _transition(lead) for lead in leads}
    try:
        state = LeadState(lead_id="x", stage=Stage.MQL, transition_seq=1, events_applied=1)
        lost = await store.commit(
            [
                Commit(
                    subject=lead,
                    expected_version=0,
                    state=encode_state(state.model_copy(update={"lead_id": lead})),
                    event_ids=[],
                    outbox={"t:0000000001": encode(t)},
                    due_at=None,
                )
                for lead, t in made.items()
            ]
        )
    finally:
        await store.close()
    assert not lost, f"seeding lost races on {sorted(lost)}"
    return {t.transition_id: lead for lead, t in made.items()}


async def pending(settings: Settings, leads: list[str]) -> list[str]:
    """Leads whose outbox still holds messages."""
    store = RedisLeadStore(connect(settings), partitions=PARTITIONS)
    try:
        snaps = await store.snapshot(dict.fromkeys(leads, ()))
    finally:
        await store.close()
    return sorted(lead for lead, snap in snaps.items() if snap.outbox)


async def still_pending(settings: Settings, leads: list[str], rounds: int = 100) -> list[str]:
    """`pending`, asked up to `rounds` times 0.1 s apart until empty (clearing follows the ack)."""
    left = await pending(settings, leads)
    for _ in range(rounds):
        if not left:
            break
        await asyncio.sleep(0.1)
        left = await pending(settings, leads)
    return left


def published_ids(settings: Settings, wanted: set[str], timeout: float) -> Counter[str]:
    """How often each transition id is on the transitions topic, once all of `wanted` are."""

    def done(values: list[bytes]) -> bool:
        return wanted <= {json.loads(v)["transition_id"] for v in values}

    values = poll_topic(settings, settings.transitions_topic, done=done, timeout=timeout)
    return Counter(json.loads(v)["transition_id"] for v in values)


@pytest.fixture
def group(stack: DevStack, tmp_path: Path) -> Iterator[tuple[Settings, list[WorkerProcess]]]:
    """Settings of a two-worker group whose workers the test starts (and this stops)."""
    settings = worker_settings(stack, tmp_path, partitions=PARTITIONS)
    workers: list[WorkerProcess] = []
    try:
        yield settings, workers
    finally:
        for worker in workers:
            worker.stop()


async def test_two_workers_replay_pending_outboxes_of_their_partitions(
    group: tuple[Settings, list[WorkerProcess]], tmp_path: Path
) -> None:
    settings, workers = group
    tag = uuid.uuid4().hex[:6]

    # 1. entries left before any worker runs: published once the two workers share the topic
    first = await seed_outboxes(settings, leads_on(set(range(PARTITIONS)), f"{tag}a"))
    workers += start_workers(
        [settings.replace(data_dir=tmp_path / "data-a"), peer_settings(settings, tmp_path, "b")],
        [tmp_path / "worker-a.log", tmp_path / "worker-b.log"],
    )
    a, b = workers
    counts = published_ids(settings, set(first), timeout=45)
    missing = sorted(set(first) - set(counts))
    assert not missing, f"{len(missing)} of {len(first)} pending entries never published"
    assert max(counts[i] for i in first) <= 2, f"published more than twice: {counts}"
    left = await still_pending(settings, list(first.values()))
    assert not left, f"outboxes not cleared after publishing: {left[:5]}"
    by_worker = [w.stats().get("published", 0) for w in workers]

    # 2. entries a worker left in its partitions when it went away: stopping B hands its
    #    partitions to A, and A must publish them on that assignment
    b_partitions = owned_partitions(b)
    assert b_partitions, "worker B owns no partition"
    assert owned_partitions(a) == set(range(PARTITIONS)) - b_partitions
    second = await seed_outboxes(settings, leads_on(b_partitions, f"{tag}b"))
    a_published = a.stats().get("published", 0)
    b.stop()
    wait_for(
        lambda: a.stats().get("assigned_partitions", 0) == PARTITIONS,
        timeout=60,
        what="worker A owns every partition after B stopped",
    )
    counts = published_ids(settings, set(first) | set(second), timeout=30)
    missing = sorted(set(second) - set(counts))
    print(
        f"\noutbox replay: {len(first)} entries before start, published {by_worker} "
        f"by A/B; {len(second)} in B's partitions {sorted(b_partitions)} after B stopped: "
        f"{len(second) - len(missing)} published, "
        f"A published {a.stats().get('published', 0) - a_published}"
    )
    assert not missing, (
        f"{len(missing)} of {len(second)} entries in the partitions A took over never published"
    )
    assert max(counts[i] for i in second) <= 2, f"published more than twice: {counts}"
    assert a.stats().get("published", 0) - a_published >= len(second), "A did not publish them"
    left = await still_pending(settings, list(second.values()))
    assert not left, f"outboxes not cleared after publishing: {left[:5]}"
