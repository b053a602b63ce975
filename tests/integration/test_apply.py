"""`leadpulse model apply` under live traffic on the embedded stack, with the worker SIGKILLed.

A worker (restarted by a supervisor whatever ends it, as systemd's
``Restart=always`` would) scores a known history under the current model
(tests.integration.test_whatif's: handoffs answered by sales, a recycle by
decay, a visitor merged across partitions) plus a few thousand page views,
so the replay takes a few seconds. While events keep arriving,
`leadpulse model apply NEW.yaml` rescores the history into a new namespace
and switches the worker; the worker is SIGKILLed once during the replay
and once during the switch. Then:

- the new namespace equals a fresh worker's run of NEW over all events
  (every subject's state, exactly);
- no handoff id is published twice, and a lead NEW hands off only after the
  switch gets a normal handoff;
- the leads whose stage NEW changes got one transition with ``rescore: true``;
- the old namespace is untouched after the switch, until `leadpulse model gc`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from leadpulse.scoring import LeadState, engagement, load_model
from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import Restarting, WorkerProcess
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import decode_state
from leadpulse.streams.store.redis.keys import Keys
from tests.integration.harness import (
    fresh_settings,
    produce,
    wait_for,
    worker_settings,
)
from tests.integration.test_whatif import (
    NEW_YAML,
    PARTITIONS,
    behaviour,
    environment,
    lead,
    messages,
    play_history,
)

FILLER_LEADS = 300
FILLER_EVENTS = 8000


def filler(now: datetime) -> list[dict[str, Any]]:
    """Page views of leads that never cross a threshold: work for the replay."""
    start = now - timedelta(days=2)
    return [
        {
            "event_id": uuid.uuid4().hex,
            "type": "page_view",
            "lead_id": lead(f"f{n % FILLER_LEADS}"),
            "occurred_at": (start + timedelta(seconds=n)).isoformat(),
            "properties": {"url": "https://x.io/blog"},
        }
        for n in range(FILLER_EVENTS)
    ]


def live_event(n: int) -> dict[str, Any]:
    """Traffic during the apply: leads of ten events, who say who they are, look at
    prices and ask for a demo (handed off under either model at the demo request)."""
    body: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "type": "page_view",
        "lead_id": lead(f"live{n // 10}"),
        "occurred_at": datetime.now(UTC).isoformat(),
        "properties": {"url": "https://x.io/pricing"},
    }
    if n % 10 == 0:
        body.update(type="identify", traits={"company_size": 400}, properties={})
    elif n % 10 == 9:
        body.update(type="demo_request", properties={})
    return body


class Traffic:
    """Produces `live_event`s at about `rate` per second until stopped."""

    def __init__(self, settings: Settings, rate: float = 40.0) -> None:
        self.settings = settings
        self.rate = rate
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0 / self.rate * 10):
            produce(self.settings, [live_event(self.sent + i) for i in range(10)])
            self.sent += 10

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def scored(settings: Settings, namespace: str) -> int:
    """Events the namespace's progress covers, over every partition."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        raw = client.hgetall(Keys(namespace).progress(settings.events_topic))
    finally:
        client.close()
    return sum(int(v) for v in raw.values())


def states(settings: Settings, namespace: str) -> dict[str, LeadState]:
    client = redis.Redis.from_url(settings.redis_url)
    keys = Keys(namespace)
    found = {}
    try:
        for raw in client.scan_iter(match=keys.state_pattern, count=1000):
            key = raw.decode()
            if "{dlv:" in key:
                continue
            blob = client.hget(raw, "s")
            if blob:
                found[keys.subject_of_state(key)] = decode_state(blob)
    finally:
        client.close()
    return found


def dump(settings: Settings, namespace: str) -> dict[bytes, bytes | None]:
    """Every key of the namespace's states with its serialised value (DUMP)."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return {
            key: client.dump(key)
            for pattern in Keys(namespace).namespace_patterns()
            for key in client.scan_iter(match=pattern, count=1000)
            if b"{dlv:" not in key
        }
    finally:
        client.close()


def status(settings: Settings) -> dict[str, Any]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        blob = client.get(Keys(settings.redis_prefix).apply)
    finally:
        client.close()
    return {} if blob is None else dict(json.loads(blob))


def cli(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadpulse.streams.cli", "model", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_apply_under_live_traffic_with_the_worker_killed(stack: DevStack, tmp_path: Path) -> None:
    settings = worker_settings(stack, tmp_path, partitions=PARTITIONS)
    new_file = tmp_path / "new.yaml"
    new_file.write_text(NEW_YAML)
    new_version = load_model(new_file).model_version
    env = environment(settings)
    now = datetime.now(UTC)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    restarts: list[str] = []
    with Restarting(worker.start(), always=True, say=restarts.append):
        worker.wait_assigned(timeout=90)
        total = play_history(settings, behaviour(now) + filler(now), now)
        wait_for(
            lambda: scored(settings, settings.redis_prefix) >= total,
            timeout=120,
            what="the live worker scoring the history",
        )

        with Traffic(settings) as traffic:
            applying = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "leadpulse.streams.cli",
                    "model",
                    "apply",
                    str(new_file),
                    "--json",
                    "--drain-grace",
                    "10",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            try:
                phases = []
                killed = set()
                deadline = time.monotonic() + 240
                while applying.poll() is None and time.monotonic() < deadline:
                    phase = status(settings).get("phase")
                    if phase and (not phases or phases[-1] != phase):
                        phases.append(phase)
                    if phase in ("replaying", "draining") and phase not in killed:
                        worker.kill()  # SIGKILL; the supervisor starts it again
                        killed.add(phase)
                    time.sleep(0.05)
                out, err = applying.communicate(timeout=60)
            finally:
                if applying.poll() is None:
                    applying.kill()
                    applying.wait(10)
            assert applying.returncode == 0, err
            applied = json.loads(out)
            time.sleep(2.0)  # more traffic under NEW, after the switch
        sent = traffic.sent
        assert sent > 0
        assert "replaying" in killed, phases  # the worker died during the replay
        assert applied["to_version"] == new_version
        namespace = applied["namespace"]
        assert namespace == f"{settings.redis_prefix}.m{new_version.rpartition('+')[2]}"
        old_after_switch = dump(settings, settings.redis_prefix)
        wait_for(
            lambda: scored(settings, namespace) >= total + sent,
            timeout=120,
            what="the worker scoring in the new namespace",
        )
        time.sleep(3.0)  # a few sweeps in the new namespace
        assert dump(settings, settings.redis_prefix) == old_after_switch  # untouched
    assert restarts, "the worker never restarted"

    # a fresh worker under NEW over the same events: the same states
    fresh = fresh_settings(settings, stack, tmp_path, new_file, "fresh")
    with WorkerProcess(fresh, tmp_path / "fresh.log") as other:
        other.wait_assigned(timeout=90)
        wait_for(
            lambda: scored(fresh, fresh.redis_prefix) >= total + sent,
            timeout=120,
            what="the fresh worker under NEW",
        )
        time.sleep(3.0)
    rescored = states(settings, namespace)
    expected = states(fresh, fresh.redis_prefix)
    assert set(rescored) == set(expected)
    # merged_from alone depends on the partitions' interleaving (issue 16 item 8): a
    # visitor whose events come after its link reaches the lead by its alias and is
    # not named there; every score, stage and id is the same either way
    differing = {
        subject: {
            name: (value, getattr(expected[subject], name))
            for name, value in rescored[subject]
            if name not in ("merged_from", "rules") and value != getattr(expected[subject], name)
        }
        for subject in expected
    }
    differing = {subject: fields for subject, fields in differing.items() if fields}
    # a decayed sum is kept as a (value, reference time) pair: a merge in another order
    # can pick another reference for the same score; the scores must agree
    new_model = load_model(new_file)
    at = time.time()
    for subject, state in expected.items():
        mine = engagement(rescored[subject], at, new_model)
        assert mine == pytest.approx(engagement(state, at, new_model), rel=1e-9, abs=1e-9)
    assert not differing, differing  # subject -> field -> (rescored, fresh run)

    # handoffs: never the same id twice; rescore transitions for the leads NEW moves
    handoffs = [m["handoff_id"] for m in messages(settings, settings.handoffs_topic)]
    assert [h for h, n in Counter(handoffs).items() if n > 1] == []
    moves = [t for t in messages(settings, settings.transitions_topic) if t.get("rescore")]
    moved = {t["lead_id"]: (t["from_stage"], t["to_stage"]) for t in moves}
    assert len(moved) == len(moves) == applied["rescored"]
    assert moved[lead("merged")] == ("mql", "sal")  # gained by NEW's form points
    assert moved[lead("accepted")] == ("sql", "mql")  # NEW never handed it off
    assert not any(lead("live") in t for t in moved)  # live leads: handed off by both
    # the live leads handed off after the switch got normal handoffs under NEW
    after = {
        m["lead_id"]
        for m in messages(settings, settings.handoffs_topic)
        if m["model_version"] == new_version
    }
    assert after, "no handoff under NEW after the switch"
    assert all(lead("live") in h for h in after)

    # status, then gc: the old namespace goes, the new one stays
    shown = cli(env, "status")
    assert shown.returncode == 0, shown.stderr
    assert f"namespace      {namespace}" in shown.stdout
    assert f"kept           {settings.redis_prefix} (" in shown.stdout
    assert "retired" in shown.stdout
    collected = cli(env, "gc")
    assert collected.returncode == 0, collected.stderr
    assert f"deleted namespace {settings.redis_prefix}" in collected.stdout
    assert dump(settings, settings.redis_prefix) == {}
    assert states(settings, namespace) == rescored
