"""SIGKILL the worker in the middle of its work; the result equals an uninterrupted run."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadpulse.scoring import engagement, parse_model
from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record
from leadpulse.streams.store import MemoryLeadStore, decode_state
from tests.component.conftest import FakePublisher
from tests.integration.harness import (
    MODEL_YAML,
    TopicReader,
    produce,
    read_state,
    start_worker,
    wait_for,
    worker_settings,
)

MODEL = parse_model(MODEL_YAML, "integration")
LEADS = 300
EVENTS = 6000


def traffic(seed: int) -> list[dict[str, Any]]:
    """Realistic-enough mix over LEADS leads; many of them cross MQL and handoff."""
    rng = random.Random(seed)
    start = datetime.now(UTC) - timedelta(hours=1)
    tag = uuid.uuid4().hex[:6]
    bodies: list[dict[str, Any]] = []
    for i in range(EVENTS):
        lead = f"crash-{tag}-{rng.randrange(LEADS)}"
        kind = rng.choices(
            ["page_view", "form_submit", "demo_request", "email_unsubscribe", "identify"],
            [60, 25, 8, 2, 5],
        )[0]
        body: dict[str, Any] = {
            "event_id": f"{tag}-{i}",
            "type": kind,
            "lead_id": lead,
            "occurred_at": (start + timedelta(seconds=i * 0.5)).isoformat(),
        }
        if kind == "page_view":
            body["properties"] = {"url": rng.choice(["https://x.io/pricing", "https://x.io/blog"])}
        if kind == "identify":
            body["traits"] = {"company_size": rng.choice([5, 200, 2000])}
        bodies.append(body)
    return bodies


async def clean_run(bodies: list[dict[str, Any]]) -> tuple[MemoryLeadStore, FakePublisher]:
    """The same events through the same Processor, in memory, never interrupted."""

    store, publisher = MemoryLeadStore(), FakePublisher()
    processor = Processor(store, publisher, MODEL, clock=time.time)
    by_partition: dict[str, list[Record]] = defaultdict(list)
    for offset, body in enumerate(bodies):
        by_partition[body["lead_id"]].append(
            Record(None, json.dumps(body).encode(), "events", 0, offset)
        )
    for records in by_partition.values():
        await processor.process(records)
    return store, publisher


async def test_sigkill_mid_batch_then_restart_equals_clean_run(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = worker_settings(stack, tmp_path, partitions=4)
    settings = settings.replace(batch_size=200)
    bodies = traffic(seed=11)
    produce(settings, bodies)
    worker = start_worker(settings, tmp_path / "worker.log")
    kills = 0
    try:
        for threshold in (1500, 3500):
            wait_for(lambda w=worker, t=threshold: w.stats().get("scored", 0) >= t, timeout=120)
            worker.kill()
            kills += 1
            worker = start_worker(settings, tmp_path / "worker.log")
        leads = {b["lead_id"] for b in bodies}
        per_lead: dict[str, int] = defaultdict(int)
        for b in bodies:
            per_lead[b["lead_id"]] += 1

        def all_applied() -> bool:
            return all(
                (state := read_state(settings, lead)[1]) is not None
                and state.events_applied == per_lead[lead]
                for lead in leads
            )

        wait_for(all_applied, timeout=180, what="every event applied")
    finally:
        worker.stop()
    assert kills == 2

    store, publisher = await clean_run(bodies)
    for lead in leads:
        state = read_state(settings, lead)[1]
        assert state is not None
        expected = decode_state(store.states[lead][1])
        assert state.events_applied == expected.events_applied  # nothing counted twice
        assert state.stage == expected.stage
        assert state.transition_seq == expected.transition_seq
        at = expected.clock
        assert engagement(state, at, MODEL) == pytest.approx(
            engagement(expected, at, MODEL), rel=1e-9, abs=1e-12
        )

    clean = {}
    for message in publisher.on("leadpulse.transitions"):
        t = json.loads(message.value)
        clean[t["transition_id"]] = t
    assert clean, "the traffic must cause transitions"
    reader = TopicReader(settings, settings.transitions_topic)
    try:
        seen = reader.until(lambda vs: clean.keys() <= {v["transition_id"] for v in vs}, timeout=60)
    finally:
        reader.close()
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in seen:
        by_id[v["transition_id"]].append(v)
    for transition_id, expected_t in clean.items():
        published = by_id[transition_id]
        assert published, transition_id
        # a duplicate is the same decision: same id, same content
        assert all(p == published[0] for p in published)
        assert (published[0]["from_stage"], published[0]["to_stage"]) == (
            expected_t["from_stage"],
            expected_t["to_stage"],
        )
