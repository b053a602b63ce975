"""`leadpulse dlq list` / `replay` against a running worker (issue 15, 1.3)."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import WorkerProcess, worker_command
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis import keys
from tests.integration.harness import produce, read_state, wait_for, worker_settings


def leadpulse(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    argv, env = worker_command(settings, *args, command="dlq")
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)


def letters(settings: Settings) -> list[dict[str, Any]]:
    done = leadpulse(settings, "list", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def event(lead: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"{lead}-{n}",
        "type": "page_view",
        "lead_id": lead,
        "properties": {"url": f"https://x.io/{n}"},
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def applied(settings: Settings, lead: str) -> int:
    _, state = read_state(settings, lead)
    return 0 if state is None else state.events_applied


def test_dead_letters_are_listed_replayed_once_and_never_in_a_loop(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = worker_settings(stack, tmp_path)
    client = redis.Redis.from_url(settings.redis_url)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_assigned(timeout=90)
        # a stored state this release cannot read: the lead's events are dead-lettered
        client.hset(keys.DEFAULT.state("lead-x"), mapping={"v": 1, "s": b"\x00not a state"})
        produce(settings, [event("lead-x", 0), event("lead-y", 0), event("lead-x", 1)])
        wait_for(lambda: len(letters(settings)) == 2, what="2 letters")
        assert applied(settings, "lead-y") == 1  # the valid event around them is scored
        first = letters(settings)
        assert {d["kind"] for d in first} == {"corrupt_state"}
        assert {d["lead_id"] for d in first} == {"lead-x"}
        assert all(d["replay_of"] is None for d in first)
        originals = sorted(d["id"] for d in first)

        listed = leadpulse(settings, "list", "--reason", "corrupt_state")
        assert listed.returncode == 0
        assert len(listed.stdout.splitlines()) == 2
        assert "lead lead-x" in listed.stdout
        assert leadpulse(settings, "list", "--reason", "decode").stdout == ""

        # replayed before the fix: both fail again, as letters that name their origin
        replayed = leadpulse(settings, "replay")
        assert "replayed 2 letter(s)" in replayed.stdout, replayed.stdout + replayed.stderr
        wait_for(lambda: len(letters(settings)) == 4, what="2 more letters")
        again = [d for d in letters(settings) if d["replay_of"] is not None]
        assert sorted(d["replay_of"] for d in again) == originals
        # a second replay without ids leaves them all alone: no loop
        idle = leadpulse(settings, "replay")
        assert "replayed 0 letter(s)" in idle.stdout, idle.stdout
        assert idle.stdout.count("skipped") == 4

        # the fix: the unreadable state goes; the originals are replayed by id
        client.delete(keys.DEFAULT.state("lead-x"))
        ids = [arg for lid in originals for arg in ("--id", lid)]
        fixed = leadpulse(settings, "replay", *ids)
        assert "replayed 2 letter(s)" in fixed.stdout, fixed.stdout + fixed.stderr
        wait_for(lambda: applied(settings, "lead-x") == 2, what="lead-x scored")
        # replayed twice: scored once (event ids)
        twice = leadpulse(settings, "replay", *ids)
        assert "replayed 2 letter(s)" in twice.stdout
        wait_for(lambda: worker.stats().get("duplicates", 0) >= 2, what="duplicates skipped")
        assert applied(settings, "lead-x") == 2
        assert len(letters(settings)) == 4
        unknown = leadpulse(settings, "replay", "--id", "99:99")
        assert unknown.returncode == 2
        assert "no such letter" in unknown.stderr
    client.close()
