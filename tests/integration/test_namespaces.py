"""Two deployments on one Redis, told apart by LEADPULSE_REDIS_PREFIX (issue 15, 1.10)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import WorkerProcess
from tests.integration.harness import poll_topic, produce, read_state, wait_for, worker_settings


def event(kind: str, lead: str, n: int, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": f"{kind}-{lead}-{n}",
        "type": kind,
        "lead_id": lead,
        "occurred_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat(),
        **extra,
    }


def moves(values: list[bytes]) -> list[tuple[str, str, str]]:
    return [(m["lead_id"], m["from_stage"], m["to_stage"]) for m in (json.loads(v) for v in values)]


def test_two_deployments_on_one_redis_touch_only_their_own_keys(
    stack: DevStack, tmp_path: Path
) -> None:
    (tmp_path / "blue").mkdir()
    (tmp_path / "green").mkdir()
    blue = worker_settings(stack, tmp_path / "blue").replace(redis_prefix="blue")
    # the same Redis database, a prefix of its own, the same lead ids
    green = worker_settings(stack, tmp_path / "green").replace(
        redis_prefix="green", redis_url=blue.redis_url
    )
    with (
        WorkerProcess(blue, tmp_path / "blue.log") as blue_worker,
        WorkerProcess(green, tmp_path / "green.log") as green_worker,
    ):
        blue_worker.wait_assigned(timeout=90)
        green_worker.wait_assigned(timeout=90)
        # blue: lead-1 becomes an MQL on a 3-second half-life, then decays back (a sweep)
        produce(blue, [event("quick_look", "lead-1", 0)])
        # green: the same lead id only looks around
        produce(green, [event("page_view", "lead-1", n) for n in range(3)])
        wait_for(lambda: read_state(green, "lead-1")[1] is not None, what="green's lead-1")
        blue_moves = moves(
            poll_topic(
                blue,
                blue.transitions_topic,
                done=lambda vs: ("lead-1", "mql", "nurture") in moves(vs),
                timeout=60,
            )
        )
        assert ("lead-1", "iql", "mql") in blue_moves
        assert ("lead-1", "mql", "nurture") in blue_moves  # blue's sweeper recycled it
        time.sleep(2)  # green's sweeper ran meanwhile, several times
        green_moves = moves(
            poll_topic(green, green.transitions_topic, done=lambda vs: False, timeout=2)
        )
        assert green_moves == []
        _, blue_state = read_state(blue, "lead-1")
        _, green_state = read_state(green, "lead-1")
        assert blue_state is not None
        assert green_state is not None
        assert (blue_state.events_applied, green_state.events_applied) == (1, 3)
        client = redis.Redis.from_url(blue.redis_url)
        try:
            names = [k.decode() for k in client.keys("*")]
        finally:
            client.close()
        assert names, "nothing written"
        assert all(n.startswith(("blue:", "green:")) for n in names), sorted(names)
        assert any(n.startswith("green:") for n in names)
        assert "blue:{lead-1}:state" in names
        assert "green:{lead-1}:state" in names
