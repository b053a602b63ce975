"""`leadpulse dev` with no flags at all, from an empty directory: the defaults are the product.

It picks free broker and redis ports itself, serves the worker on the default
web port 6066, creates its data dir `.leadpulse/dev` under the working
directory, and Ctrl-C stops everything it started with exit status 0.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import port_open

DEFAULT_WEB_PORT = 6066
DEFAULT_COLLECTOR_PORT = 8088
DEFAULT_COLLECTOR_METRICS_PORT = 9108
START_TIMEOUT = 120.0


def leadpulse_command() -> list[str]:
    """The installed console script next to this interpreter, else `python -m streams.cli`."""
    script = Path(sys.executable).with_name("leadpulse")
    return [str(script)] if script.exists() else [sys.executable, "-m", "leadpulse.streams.cli"]


def clean_environment() -> dict[str, str]:
    """This environment without LEADPULSE_* settings (PYTHONPATH kept: the code under test)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}


# -- processes, from /proc: which ones `dev` started, and whether they are gone ----------


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    started: int
    """Start time in clock ticks since boot: with the pid, identifies one process."""


def _stat(pid: int) -> Proc | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return Proc(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]))


def _all() -> list[Proc]:
    stats = (_stat(int(e.name)) for e in Path("/proc").iterdir() if e.name.isdigit())
    return [proc for proc in stats if proc is not None]


def descendants(root: int) -> list[Proc]:
    """Every live process below `root` (children in their own sessions included)."""
    procs = _all()
    below: list[Proc] = []
    frontier = {root}
    while frontier:
        children = [p for p in procs if p.ppid in frontier]
        below += children
        frontier = {p.pid for p in children}
    return below


def alive(proc: Proc) -> bool:
    now = _stat(proc.pid)
    return now is not None and now.started == proc.started and now.state != "Z"


def in_group(pgid: int) -> list[Proc]:
    return [p for p in _all() if p.pgid == pgid and p.state != "Z"]


@dataclass
class Dev:
    process: subprocess.Popen[bytes]
    output: Path
    cwd: Path
    started: list[Proc]

    def text(self) -> str:
        return self.output.read_text(errors="replace")


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    """`leadpulse dev` started bare in an empty directory; always stopped, with its children."""
    for port in (DEFAULT_WEB_PORT, DEFAULT_COLLECTOR_PORT, DEFAULT_COLLECTOR_METRICS_PORT):
        if port_open(port):
            pytest.skip(f"port {port} is taken on this machine; the default needs it")
    cwd = tmp_path / "fresh"
    cwd.mkdir()
    output = tmp_path / "dev.out"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [*leadpulse_command(), "dev"],
            cwd=cwd,
            env=clean_environment(),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    handle = Dev(process, output, cwd, [])
    try:
        yield handle
    finally:
        if process.poll() is None:
            handle.started += descendants(process.pid)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
        for proc in handle.started:  # the servers run in sessions of their own
            if alive(proc):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)


def _wait(condition: Callable[[], bool], dev: Dev, what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if dev.process.poll() is not None:
            pytest.fail(
                f"leadpulse dev exited with {dev.process.returncode}:\n{dev.text()[-3000:]}"
            )
        if condition():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached in {timeout:.0f}s; output:\n{dev.text()[-3000:]}")
        time.sleep(0.25)


def _assigned() -> int:
    url = f"http://127.0.0.1:{DEFAULT_WEB_PORT}/health"  # open: /stats needs the API token
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return int(json.load(reply).get("assigned_partitions", 0))
    except (OSError, ValueError):
        return 0


def test_dev_with_no_flags_serves_a_worker_and_stops_cleanly(dev: Dev) -> None:
    began = time.monotonic()
    stats_url = f"http://127.0.0.1:{DEFAULT_WEB_PORT}/stats"
    _wait(lambda: stats_url in dev.text(), dev, "the printed addresses", 60)
    _wait(lambda: _assigned() > 0, dev, f"{stats_url} with assigned_partitions > 0", START_TIMEOUT)
    ready = time.monotonic() - began
    text = dev.text()
    kafka = re.search(r"kafka\s+127\.0\.0\.1:(\d+)", text)
    redis = re.search(r"redis\s+redis://127\.0\.0\.1:(\d+)", text)
    assert kafka, text
    assert redis, text
    ports = [
        int(kafka.group(1)),
        int(redis.group(1)),
        DEFAULT_WEB_PORT,
        DEFAULT_COLLECTOR_PORT,
        DEFAULT_COLLECTOR_METRICS_PORT,
    ]
    collector_url = f"http://127.0.0.1:{DEFAULT_COLLECTOR_PORT}"
    assert collector_url in text, text
    collector_stats = f"http://127.0.0.1:{DEFAULT_COLLECTOR_METRICS_PORT}/stats"
    assert collector_stats in text, text
    key = re.search(r"write key\s+(wk_\S+)\s+\(source website\)", text)
    assert key, text
    assert (dev.cwd / ".leadpulse" / "dev" / "write_key").read_text().strip() == key.group(1)
    _post_with_the_printed_key(collector_url, collector_stats, key.group(1))
    crm = re.search(r"write key\s+(wk_\S+)\s+\(source crm, trusted for sales feedback\)", text)
    assert crm, text
    assert (dev.cwd / ".leadpulse" / "dev" / "crm_write_key").read_text().strip() == crm.group(1)
    _post_feedback_as_the_readme_shows(collector_url, website=key.group(1), crm=crm.group(1))
    dev.started += descendants(dev.process.pid)
    assert dev.started, "dev started no child processes?"

    os.killpg(dev.process.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
    try:
        code = dev.process.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"leadpulse dev did not exit within 60 s of Ctrl-C:\n{dev.text()[-3000:]}")
    print(
        f"\nleadpulse dev: worker assigned after {ready:.1f}s, exit {code}, "
        f"{len(dev.started)} child processes, ports {ports}"
    )
    assert code == 0, dev.text()[-3000:]
    left = [p for p in dev.started if alive(p)] + in_group(dev.process.pid)
    assert not left, f"processes left behind: {left}"
    assert not [p for p in ports if port_open(p)], f"ports still open: {ports}"
    assert (dev.cwd / ".leadpulse" / "dev").is_dir(), "data dir not created under the cwd"


def _post_with_the_printed_key(url: str, stats_url: str, key: str) -> None:
    """What the banner tells a newcomer to do: a Segment SDK with host= the collector."""
    from segment.analytics.client import Client

    errors: list[str] = []
    client = Client(key, host=url, sync_mode=True, on_error=lambda e, _: errors.append(str(e)))
    client.track("dev-check-lead", "Demo Requested", {"plan": "pro"})
    client.flush()
    assert not errors, errors
    with urllib.request.urlopen(stats_url, timeout=2) as reply:
        assert json.load(reply).get("accepted") == 1
    with pytest.raises(urllib.error.HTTPError) as refused:  # not on the public ingest port
        urllib.request.urlopen(f"{url}/stats", timeout=2)
    assert refused.value.code == 405  # a GET of what could only be a POST endpoint


def _post_feedback_as_the_readme_shows(url: str, *, website: str, crm: str) -> None:
    """The README's curl: a sales_accepted through /v1/track, refused from the website's key."""
    body = json.dumps(
        {
            "userId": "dev-check-lead",
            "event": "sales_accepted",
            "messageId": "dev-check-feedback",
            "properties": {"handoff_id": "0b7e5d1c-0000-4000-8000-000000000000"},
        }
    ).encode()

    def post(key: str) -> tuple[int, dict[str, Any]]:
        auth = base64.b64encode(f"{key}:".encode()).decode()
        request = urllib.request.Request(
            f"{url}/v1/track",
            data=body,
            headers={"Content-Type": "application/json", "Authorization": f"Basic {auth}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=5) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as error:
            return error.code, json.load(error)

    status, answer = post(website)
    assert status >= 400, answer
    assert "sales" in json.dumps(answer), answer
    assert post(crm) == (200, {"success": True, "accepted": 1})


def test_demo_with_no_flags_scores_hands_off_and_leaves_nothing_running(tmp_path: Path) -> None:
    """`leadpulse demo`, the README's first command, from an empty directory."""
    with (tmp_path / "demo.log").open("w+b") as sink:
        process = subprocess.Popen(
            [*leadpulse_command(), "demo"],
            cwd=tmp_path,
            env=clean_environment(),
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started: dict[tuple[int, int], Proc] = {}
        deadline = time.monotonic() + 300
        try:
            while process.poll() is None and time.monotonic() < deadline:
                # the broker and redis-server run in sessions of their own: watch for them
                started.update({(p.pid, p.started): p for p in descendants(process.pid)})
                time.sleep(0.5)
            code = process.wait(1)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
            for proc in started.values():
                if alive(proc):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(proc.pid, signal.SIGKILL)
        sink.seek(0)
        text = sink.read().decode(errors="replace")
    assert code == 0, text[-3000:]
    assert re.search(r"page\s+http://127\.0\.0\.1:\d+/ui\?token=tk_\S+", text), text[:2000]
    accepted = re.search(r"collector accepted\s+(\d+), rejected (\d+)", text)
    scored = re.search(r"events scored\s+(\d+)", text)
    handed = re.search(r"handed off \(SAL\)\s+(\d+)", text)
    assert accepted, text[-3000:]
    assert scored, text[-3000:]
    assert handed, text[-3000:]
    assert int(accepted.group(1)) > 1000
    assert int(scored.group(1)) == int(accepted.group(1))  # every accepted event was scored
    assert int(accepted.group(2)) > 0  # the demo sends some bad calls on purpose
    assert int(handed.group(1)) > 0
    assert text.count("  HANDOFF  ") == int(handed.group(1))
    assert len(started) >= 3, started  # the broker, redis-server and the worker at least
    left = [proc for proc in started.values() if alive(proc)] + in_group(process.pid)
    assert not left, f"the demo left processes behind: {left}"
