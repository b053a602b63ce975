"""`leadpulse dev` as a user runs it, in a subprocess on free ports, stopped by Ctrl-C.

One place for the tests that start the whole dev stack: the command line, its
own process group (so a failing test can kill everything it started) and the
stop a user does (SIGINT, then the output it printed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from leadpulse.streams.dev.devstack import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DevRun:
    """A running `leadpulse dev` and the ports it was given."""

    data_dir: Path
    kafka_port: int = field(default_factory=free_port)
    redis_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    collector_port: int = field(default_factory=free_port)
    collector_metrics_port: int = field(default_factory=free_port)
    deliver_port: int = field(default_factory=free_port)
    every_port: bool = True
    """False: only the broker's, Redis' and the worker's ports are given, the rest default."""
    process: subprocess.Popen[str] | None = None

    def argv(self, *extra: str) -> list[str]:
        ports = [
            *("--kafka-port", str(self.kafka_port), "--redis-port", str(self.redis_port)),
            *("--web-port", str(self.web_port)),
        ]
        if self.every_port:
            ports += [
                *("--collector-port", str(self.collector_port)),
                *("--collector-metrics-port", str(self.collector_metrics_port)),
                *("--deliver-port", str(self.deliver_port)),
            ]
        return [
            *(sys.executable, "-m", "leadpulse.streams.cli", "dev"),
            *ports,
            *("--data-dir", str(self.data_dir)),
            *extra,
        ]

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a user stops it: (exit status, everything it printed)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        output, _ = self.process.communicate(timeout=60)
        return self.process.returncode, output


@contextlib.contextmanager
def dev_run(
    data_dir: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    every_port: bool = True,
) -> Iterator[DevRun]:
    """Start `leadpulse dev` with no LEADPULSE_* of the test run's environment but `env`."""
    run = DevRun(data_dir, every_port=every_port)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
    run.process = subprocess.Popen(
        run.argv(*extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env=environ | dict(env or {}),
        start_new_session=True,
    )
    try:
        yield run
    finally:
        if run.process.poll() is None:
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait(10)
        _reap(data_dir)


def _reap(data_dir: Path, timeout: float = 20.0) -> None:
    """Wait for dev's children (which die with it), then kill any that did not.

    The worker runs in a process group of its own, so killing dev's group does
    not reach it: it gets SIGTERM when dev dies and must exit within its
    shutdown timeout. Its command line names the data directory.
    """
    deadline = time.monotonic() + timeout
    while left := _running_with(str(data_dir)):
        if time.monotonic() >= deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise AssertionError(f"dev's children outlived it by {timeout:g} s: {left}")
        time.sleep(0.1)


def _running_with(text: str) -> list[int]:
    found = subprocess.run(
        ["pgrep", "-f", text], capture_output=True, text=True, check=False, timeout=10
    )
    return [int(pid) for pid in found.stdout.split() if int(pid) != os.getpid()]
