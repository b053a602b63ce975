"""What starts, stops: restarts through the supervisor, stop deadlines, no orphans.

Issue 15, items 1.6 (no hidden restarts) and 1.11 (stopping always stops).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis

from leadpulse.streams.dev.devstack import DevStack, RedisServer, free_port
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.processes.lifecycle import EXIT_RESTART
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis import keys
from tests.integration.faults import sigkill
from tests.integration.harness import port_open, produce, read_state, wait_for, worker_settings

ROOT = Path(__file__).resolve().parents[2]


def body(lead: str, n: int) -> dict[str, Any]:
    return {
        "event_id": f"{lead}-{n}",
        "type": "page_view",
        "lead_id": lead,
        "properties": {"url": f"https://example.com/{n}"},
        "occurred_at": datetime.now(UTC).isoformat(),
    }


def applied(settings: Settings, lead: str) -> int:
    _, state = read_state(settings, lead)
    return 0 if state is None else state.events_applied


def test_a_worker_whose_store_lost_progress_exits_for_its_supervisor_and_loses_nothing(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = worker_settings(stack, tmp_path).replace(shutdown_timeout=5.0)
    log = tmp_path / "worker.log"
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_assigned(timeout=90)
        produce(settings, [body("lead-a", n) for n in range(3)])
        wait_for(lambda: applied(settings, "lead-a") == 3, what="3 events applied")
        client = redis.Redis.from_url(settings.redis_url)
        try:
            progress = {
                int(p): int(o)
                for p, o in client.hgetall(keys.DEFAULT.progress(settings.events_topic)).items()
            }
            (partition,) = [p for p, offset in progress.items() if offset == 3]
            # Redis came back without its last second: the record is behind what the worker wrote
            client.hset(keys.DEFAULT.progress(settings.events_topic), str(partition), "0")
        finally:
            client.close()
        produce(settings, [body("lead-a", 3)])
        assert worker.process is not None
        assert worker.process.wait(60) == EXIT_RESTART
        text = log.read_text()
        assert "stopping with status 75 for the supervisor to start the worker again" in text
        assert f"partition {partition}: recorded 3, store has 0" in text
    finally:
        worker.stop()
    # the supervisor starts it again: it reads the events after the store's record again
    with WorkerProcess(settings, tmp_path / "worker2.log") as again:
        again.wait_assigned(timeout=90)
        wait_for(lambda: applied(settings, "lead-a") == 4, what="all 4 events applied once")
        time.sleep(1)
        assert applied(settings, "lead-a") == 4
        assert again.alive()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), appendonly=True, workdir=tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_worker_told_to_stop_while_redis_is_away_exits_within_the_shutdown_timeout(
    stack: DevStack, tmp_path: Path, own_redis: RedisServer
) -> None:
    settings = worker_settings(stack, tmp_path).replace(
        redis_url=own_redis.url, shutdown_timeout=5.0
    )
    worker = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        worker.wait_assigned(timeout=90)
        produce(settings, [body("lead-b", n) for n in range(5)])
        wait_for(lambda: applied(settings, "lead-b") == 5, what="5 events applied")
        sigkill(own_redis)  # a SIGKILL of redis-server alone loses nothing written
        produce(settings, [body("lead-b", n) for n in range(5, 10)])
        time.sleep(3)  # the batch and the sweeper are retrying against a Redis that is gone
        assert worker.process is not None
        asked = time.monotonic()
        worker.process.send_signal(signal.SIGTERM)
        worker.process.wait(30)
        took = time.monotonic() - asked
        assert took <= settings.shutdown_timeout + 1.5, f"stopped after {took:.1f}s"
    finally:
        worker.stop()
    own_redis.restart()
    # Redis is back: a restart scores what the stopped worker could not, once
    with WorkerProcess(settings, tmp_path / "worker2.log") as again:
        again.wait_assigned(timeout=90)
        wait_for(lambda: applied(settings, "lead-b") == 10, what="all 10 events applied once")
        time.sleep(1)
        assert applied(settings, "lead-b") == 10


# -- leadpulse dev, as a user starts and kills it ------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every process below `pid` now (children, their children, ...)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found.add(child)
                todo.append(child)
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}


class Dev:
    """`leadpulse dev` as typed, default web and collector ports, started from `workdir`."""

    def __init__(self, workdir: Path, kafka_port: int, redis_port: int) -> None:
        self.workdir = workdir
        argv = [sys.executable, "-m", "leadpulse.streams.cli", "dev"]
        argv += ["--kafka-port", str(kafka_port), "--redis-port", str(redis_port)]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.output = ""

    def wait_assigned(self) -> None:
        data = self.workdir / ".leadpulse" / "dev"
        wait_for((data / "api_token").exists, timeout=60, what="dev's API token file")
        token = (data / "api_token").read_text().strip()
        probe = WorkerProcess(
            Settings(web_port=6066, api_tokens=f"dev={token}:admin"), self.workdir / "unused.log"
        )
        probe.wait_assigned(timeout=90)

    @property
    def write_key(self) -> str:
        return (self.workdir / ".leadpulse" / "dev" / "write_key").read_text().strip()

    def finish(self, timeout: float) -> int:
        self.output, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode

    def kill_all(self) -> None:
        for pid in {self.process.pid, *descendants(self.process.pid)}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.communicate(timeout=10)


def traffic(url: str, write_key: str, stop: threading.Event) -> None:
    """Segment track calls to the collector until `stop` (errors expected once it dies)."""
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    for n in range(100_000):
        if stop.is_set():
            return
        payload = {"type": "track", "event": "Page Viewed", "userId": f"u{n % 50}"}
        payload["messageId"] = uuid.uuid4().hex
        request = urllib.request.Request(
            f"{url}/v1/track",
            data=json.dumps(payload).encode(),
            headers={"Authorization": f"Basic {auth}", "Content-Type": "application/json"},
        )
        with contextlib.suppress(OSError):
            urllib.request.urlopen(request, timeout=2).close()
        time.sleep(0.01)


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_killing_dev_with_traffic_in_flight_leaves_nothing_running(
    tmp_path: Path, how: signal.Signals
) -> None:
    kafka_port, redis_port = free_port(), free_port()
    dev = Dev(tmp_path, kafka_port, redis_port)
    stop = threading.Event()
    sender: threading.Thread | None = None
    try:
        dev.wait_assigned()
        sender = threading.Thread(
            target=traffic, args=("http://127.0.0.1:8088", dev.write_key, stop), daemon=True
        )
        sender.start()
        time.sleep(1)
        started = descendants(dev.process.pid)
        assert len(started) >= 4, started  # Tansu, redis-server, collector, worker
        dev.process.send_signal(how)
        dev.finish(timeout=60)
        # every child stops within the shutdown timeout (10 s by default), a margin for Tansu
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(running(p) for p in started):
            time.sleep(0.1)
        left = sorted(p for p in started if running(p))
        assert left == [], f"still running after {how.name} of dev: {left}\n{dev.output}"
        for port in (6066, 8088, 9108, kafka_port, redis_port):
            assert not port_open(port), f"port {port} still open"
    finally:
        stop.set()
        if sender is not None:
            sender.join(10)
        dev.kill_all()
    # and the next dev starts on the same ports
    again = Dev(tmp_path, kafka_port, redis_port)
    try:
        again.wait_assigned()
        again.process.send_signal(signal.SIGINT)
        assert again.finish(timeout=60) == 0, again.output
    finally:
        again.kill_all()
