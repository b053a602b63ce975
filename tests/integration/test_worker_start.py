"""What a worker checks before it starts scoring: partitions (issue 15, 1.7), its model (16.1)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from leadpulse.scoring import load_model
from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import WorkerProcess, worker_command
from leadpulse.streams.kafka.topics import ensure_topics, partition_count
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.models import FIRST_START, FORWARD_ONLY, ModelRecord
from leadpulse.streams.store.redis import RedisLeadStore
from tests.integration.harness import (
    MODEL_YAML,
    peer_settings,
    produce,
    read_state,
    running_worker,
    start_workers,
    wait_for,
    worker_settings,
)


def test_a_worker_refuses_to_start_when_the_partitions_setting_differs_from_kafka(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = worker_settings(stack, tmp_path, partitions=4)  # the topics have 4
    argv, env = worker_command(settings.replace(partitions=12))
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert done.returncode != 0
    assert (
        f"the events topic {settings.events_topic} has 4 partitions but LEADPULSE_PARTITIONS "
        "is 12: set LEADPULSE_PARTITIONS=4"
    ) in done.stderr
    assert "Traceback" not in done.stderr


# -- the namespace's model (issue 16, item 1) ---------------------------------------------


class ForwardOnlyWorker(WorkerProcess):
    """`leadpulse worker --forward-only`, the flag itself (not the setting)."""

    extra = ("--forward-only",)


def _event(kind: str, lead: str) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "lead_id": lead,
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def _recorded(settings: Settings) -> ModelRecord | None:
    async def read() -> ModelRecord | None:
        store = RedisLeadStore.from_settings(settings)
        try:
            return await store.recorded_model()
        finally:
            await store.close()

    return asyncio.run(read())


def _built_with(settings: Settings, lead: str, version: str) -> Callable[[], bool]:
    def check() -> bool:
        state = read_state(settings, lead)[1]
        return state is not None and state.model_version == version

    return check


def test_a_changed_model_is_refused_then_switched_forward_only(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = worker_settings(stack, tmp_path)  # MODEL_YAML: a page view is worth 1 point
    old = load_model(settings.model_file or "")
    with running_worker(settings, tmp_path / "old.log"):
        produce(settings, [_event("page_view", "lead-a"), _event("page_view", "lead-b")])
        wait_for(_built_with(settings, "lead-a", old.model_version), what="lead-a under old")
        wait_for(_built_with(settings, "lead-b", old.model_version), what="lead-b under old")
    first = _recorded(settings)
    assert first is not None
    assert (first.version, first.origin) == (old.model_version, str(settings.model_file))
    assert [change.mode for change in first.history] == [FIRST_START]

    new_file = tmp_path / "new.yaml"
    new_file.write_text(
        MODEL_YAML.replace("points: 1, half_life: 30d", "points: 2, half_life: 30d")
    )
    new = load_model(new_file)
    assert new.model_version != old.model_version
    changed = settings.replace(model_file=new_file)
    argv, env = worker_command(changed)
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=90, check=False, cwd=tmp_path
    )
    assert done.returncode == 1, done.stderr  # the status of the worker's other refusals
    assert "Traceback" not in done.stderr
    assert (
        f"leadpulse worker: the model from {new_file} is version {new.model_version}, but the "
        f"states of namespace 'lp' were built with version {old.model_version} (from "
        f"{settings.model_file}, recorded "
    ) in done.stderr
    assert "start the worker with --forward-only (`leadpulse worker --forward-only`" in done.stderr
    assert _recorded(settings) == first  # a refusal records nothing

    worker = ForwardOnlyWorker(changed, tmp_path / "new.log").start()
    try:
        worker.wait_assigned(timeout=90)
        produce(changed, [_event("page_view", "lead-a"), _event("page_view", "lead-c")])
        wait_for(_built_with(changed, "lead-a", new.model_version), what="lead-a under new")
        wait_for(_built_with(changed, "lead-c", new.model_version), what="lead-c under new")
        # new events score under the new model: 1 point (old, seconds ago) + 2 (new)
        a = read_state(changed, "lead-a")[1]
        c = read_state(changed, "lead-c")[1]
        assert a is not None
        assert c is not None
        assert a.rules["page-view"].value == pytest.approx(3.0, abs=1e-3)
        assert c.rules["page-view"].value == 2.0
        # lead-b got no event since: still built with the old model
        b = read_state(changed, "lead-b")[1]
        assert b is not None
        assert b.model_version == old.model_version

        shown = subprocess.run(
            worker_command(changed, "lead-b", "--json", command="lead")[0],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert shown.returncode == 0, shown.stderr
        view = json.loads(shown.stdout)
        assert view["model_version"] == view["namespace_model_version"] == new.model_version
        assert view["state_model_version"] == view["state_model"] == old.model_version
        assert view["model_warning"] == (
            f"this state was built with model {old.model_version}, but the namespace's model "
            f"is now {new.model_version} (a forward-only switch): the events before it were "
            f"scored under {old.model_version} and are not rescored, later ones score under "
            f"{new.model_version}"
        )
        text = subprocess.run(
            worker_command(changed, "lead-a", command="lead")[0],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        assert f"built by    {new.model_version}\n" in text
        assert "warning" not in text
    finally:
        worker.stop()
    log = (tmp_path / "new.log").read_text()
    assert (
        f"forward-only: namespace 'lp' switches from model {old.model_version} (from "
        f"{settings.model_file}) to {new.model_version} (from {new_file})"
    ) in log
    assert "WARNING" in next(line for line in log.splitlines() if "forward-only:" in line)
    switched = _recorded(changed)
    assert switched is not None
    assert (switched.version, switched.origin, switched.source) == (
        new.model_version,
        str(new_file),
        new_file.read_text(),
    )
    assert [(c.from_version, c.to_version, c.mode) for c in switched.history] == [
        (None, old.model_version, FIRST_START),
        (old.model_version, new.model_version, FORWARD_ONLY),
    ]


def test_two_workers_switching_forward_only_together_both_start(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = worker_settings(stack, tmp_path, partitions=2)
    old = load_model(settings.model_file or "")
    earlier = ModelRecord.first(old.model_version, MODEL_YAML, "/old/model.yaml", time.time())

    async def record() -> None:
        store = RedisLeadStore.from_settings(settings)
        try:
            assert await store.record_model(earlier, replacing=None) == earlier
        finally:
            await store.close()

    asyncio.run(record())
    new_file = tmp_path / "new.yaml"
    new_file.write_text(
        MODEL_YAML.replace("points: 60, half_life: 30d", "points: 65, half_life: 30d")
    )
    new = load_model(new_file)
    # LEADPULSE_FORWARD_ONLY=True in their environment: the setting, not the flag
    changed = settings.replace(model_file=new_file, forward_only=True)
    peers = [peer_settings(changed, tmp_path, name) for name in ("one", "two")]
    workers = start_workers(peers, [tmp_path / "one.log", tmp_path / "two.log"])
    try:
        assert all(worker.alive() for worker in workers)
    finally:
        for worker in workers:
            worker.stop()
    recorded = _recorded(settings)
    assert recorded is not None
    assert recorded.version == new.model_version
    assert [(c.from_version, c.to_version, c.mode) for c in recorded.history] == [
        (None, old.model_version, FIRST_START),
        (old.model_version, new.model_version, FORWARD_ONLY),
    ]


def test_tansu_creates_the_events_topic_with_its_retention(stack: DevStack) -> None:
    """Tansu takes CreateTopics with retention.ms (-1, unlimited; and a duration).

    It answers DescribeConfigs with nothing, so the configs sent are checked in
    tests/unit/test_topic_retention.py; here, that creation works with them.
    """
    for retention in ("unlimited", "400d"):
        suffix = uuid.uuid4().hex[:8]
        settings = Settings(
            broker=f"kafka://{stack.bootstrap}",
            partitions=3,
            events_retention=retention,
            events_topic=f"events.{suffix}",
            handoffs_topic=f"handoffs.{suffix}",
            transitions_topic=f"transitions.{suffix}",
            dlq_topic=f"dlq.{suffix}",
            deliveries_dlq_topic=f"deliveries-dlq.{suffix}",
        )
        created = ensure_topics(settings)
        assert settings.events_topic in created, retention
        assert partition_count(stack.bootstrap, settings.events_topic) == 3
        assert ensure_topics(settings) == []  # existing topics are left as they are
