"""Pieces shared by the benchmarks: the stack, producing, worker processes, results."""

from __future__ import annotations

import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadpulse.streams.dev.devstack import DevStack, create_topics, free_port
from leadpulse.streams.dev.workerproc import WorkerProcess, stop_process, worker_command
from leadpulse.streams.http.auth import new_token
from leadpulse.streams.settings import Settings

RESULTS = Path(__file__).parent / "results"
POLL_SECONDS = 0.2
"""How often /stats is polled; each poll costs the polled worker about a millisecond."""
SESSION_TIMEOUT = 2.0
"""Tansu completes a group join after about session_timeout / 2 (1 s here)."""


def machine() -> dict[str, Any]:
    """What the numbers were measured on; load averages show how noisy it was."""
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        rev = ""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
        "git": rev,
        "argv": sys.argv,
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return path


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 1]) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 1))))
    return ordered[rank - 1]


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


@contextmanager
def stack(workdir: Path) -> Iterator[DevStack]:
    """The embedded stack (Tansu + redis-server on free 127.0.0.1 ports), always stopped."""
    dev = DevStack(workdir=workdir)
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()


def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]], *, timeout: float = 300
) -> float:
    """Send every record once (aiokafka, acks=1); returns seconds taken."""
    return asyncio.run(asyncio.wait_for(_produce(bootstrap, topic, records), timeout))


async def _produce(bootstrap: str, topic: str, records: Sequence[tuple[bytes, bytes]]) -> float:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        acks=1,
        linger_ms=5,
        max_batch_size=256 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value=value, key=key))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending = []
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


def worker_settings(
    dev: DevStack,
    workdir: Path,
    *,
    events_topic: str,
    partitions: int,
    app_id: str,
    **overrides: Any,
) -> Settings:
    """Settings of one worker run: its own group, output topics, web port and data dir."""
    suffix = app_id.rsplit("-", 1)[-1]
    settings = Settings(
        app_id=app_id,
        broker=f"kafka://{dev.bootstrap}",
        redis_url=dev.redis_url,
        events_topic=events_topic,
        handoffs_topic=f"bench.handoffs.{suffix}",
        transitions_topic=f"bench.transitions.{suffix}",
        dlq_topic=f"bench.dlq.{suffix}",
        partitions=partitions,
        web_port=free_port(),
        data_dir=workdir / app_id,
        session_timeout=SESSION_TIMEOUT,
        api_tokens=f"bench={new_token()}:admin",  # for the /stats polls
        **overrides,
    )
    create_topics(
        dev.bootstrap,
        [settings.handoffs_topic, settings.transitions_topic, settings.dlq_topic],
        partitions,
    )
    return settings


class Child(WorkerProcess):
    """A `leadpulse worker`, or any module run with the worker's LEADPULSE_* environment."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *,
        module: str | None = None,
        loglevel: str,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(settings, log_path, loglevel=loglevel)
        self.module = module
        self.env = env or {}

    def start(self) -> Child:
        if self.module is None:
            super().start()
            return self
        _, env = worker_command(self.settings)
        env["LEADPULSE_LOG_LEVEL"] = self.loglevel
        env.update(self.env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", self.module],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process (all its threads) so far; 0 if unknown."""
    if pid is None:
        return time.process_time()
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


class CpuMeter:
    """CPU seconds spent by some processes between `start()` and `stop()`.

    On a shared, noisy machine CPU time per event is steadier than events per
    wall-clock second: it does not count the time a process waited for a core.
    `None` stands for this process (the benchmark itself).
    """

    def __init__(self, processes: dict[str, int | None]) -> None:
        self.processes = processes
        self.began: dict[str, float] = {}
        self.spent: dict[str, float] = {}

    def start(self) -> None:
        self.began = {name: cpu_seconds(pid) for name, pid in self.processes.items()}

    def stop(self) -> dict[str, float]:
        self.spent = {
            name: cpu_seconds(pid) - self.began[name] for name, pid in self.processes.items()
        }
        return self.spent

    def per_event_us(self, events: int) -> dict[str, float]:
        return {name: 1e6 * spent / max(events, 1) for name, spent in self.spent.items()}


def counted(stats: dict[str, Any]) -> int:
    return int(stats.get("scored", 0) + stats.get("duplicates", 0) + stats.get("dead_lettered", 0))


def wait_consumed(
    children: Sequence[Child], expected: int, timeout: float, meter: CpuMeter | None = None
) -> tuple[list[dict[str, Any]], tuple[float, int]]:
    """Poll /stats until the children together counted `expected` events.

    Returns their last stats, and (wall-clock time, events counted) at the
    first poll where every child had counted something: from then on all of
    them were consuming (start-up and group joins are over). `meter` runs
    from that poll until all events were counted.
    """
    deadline = time.monotonic() + timeout
    last: list[dict[str, Any]] = [{} for _ in children]
    all_active: tuple[float, int] | None = None
    while time.monotonic() < deadline:
        for i, child in enumerate(children):
            if not child.alive():
                raise RuntimeError(f"{child.log_path} exited:\n{child.log_tail()}")
            stats = child.stats()
            if stats:
                last[i] = stats
        done = sum(counted(s) for s in last)
        if all_active is None and all(counted(s) > 0 for s in last):
            all_active = (time.time(), done)
            if meter is not None:
                meter.start()
        if done >= expected:
            if meter is not None:
                meter.stop()
            return last, all_active or (time.time(), done)
        time.sleep(POLL_SECONDS)
    done = sum(counted(s) for s in last)
    raise TimeoutError(f"only {done} of {expected} events counted in {timeout:.0f}s")


def stop_all(children: Sequence[Child]) -> None:
    for child in children:
        try:
            child.stop()
        except Exception as error:  # keep stopping the others
            print(f"  (stopping {child.log_path.name}: {error})", file=sys.stderr)
            if child.process is not None:
                stop_process(child.process, timeout=5)
