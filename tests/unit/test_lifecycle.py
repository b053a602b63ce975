"""Processes stop, restart and die as an operator expects (issue 15, 1.6 and 1.11)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from leadpulse.streams.dev.workerproc import supervise
from leadpulse.streams.processes.lifecycle import EXIT_RESTART


def exits_with(tmp_path: Path, codes: list[int]) -> list[str]:
    """argv of a child that exits with the next of `codes` on each start."""
    counter = tmp_path / "starts"
    script = (
        "import pathlib, sys\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) if p.exists() else 0\n"
        "p.write_text(str(n + 1))\n"
        f"sys.exit({codes!r}[n])\n"
    )
    return [sys.executable, "-c", script]


def test_the_dev_supervisor_restarts_a_worker_that_asks_with_growing_delays(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    argv = exits_with(tmp_path, [EXIT_RESTART, EXIT_RESTART, EXIT_RESTART, 3])
    code = supervise(argv, dict(os.environ), say=said.append, backoff=(0.01, 0.025))
    assert code == 3  # any other status ends it and is dev's own
    assert said == [
        "leadpulse dev: the worker exited to be restarted (status 75); restart 1 in 0.01 s",
        "leadpulse dev: the worker exited to be restarted (status 75); restart 2 in 0.02 s",
        "leadpulse dev: the worker exited to be restarted (status 75); restart 3 in 0.025 s",
    ]
    assert (tmp_path / "starts").read_text() == "4"


def test_a_worker_that_ran_long_enough_restarts_after_the_first_delay_again(
    tmp_path: Path,
) -> None:
    said: list[str] = []
    argv = exits_with(tmp_path, [EXIT_RESTART, EXIT_RESTART, 0])
    code = supervise(argv, dict(os.environ), say=said.append, backoff=(0.01, 1), settled_after=0)
    assert code == 0
    assert said[-1].endswith("restart 2 in 0.01 s")


def test_a_failed_start_is_not_restarted(tmp_path: Path) -> None:
    said: list[str] = []
    assert supervise(exits_with(tmp_path, [1]), dict(os.environ), say=said.append) == 1
    assert said == []


def test_a_child_gets_sigterm_when_its_parent_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    # a parent that starts a child through start_child, then waits to be SIGKILLed
    parent_script = (
        "import os, sys, time\n"
        "from leadpulse.streams.dev.workerproc import start_child\n"
        "child = start_child([sys.executable, '-c', 'import time; time.sleep(60)'], "
        "dict(os.environ))\n"
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_script], cwd=Path.cwd())
    child_pid = 0
    try:
        for _ in range(200):
            if pid_file.exists() and pid_file.read_text():
                child_pid = int(pid_file.read_text())
                break
            time.sleep(0.05)
        assert child_pid, "the parent never started its child"
        parent.kill()
        parent.wait(10)
        assert gone_within(child_pid, 10), "the child outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)
        if child_pid and not gone_within(child_pid, 0):
            os.kill(child_pid, signal.SIGKILL)


def gone_within(pid: int, seconds: float) -> bool:
    """The process no longer runs (absent or a zombie) within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in {"Z", "X"}:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_a_stop_that_hangs_ends_at_the_deadline_with_a_clear_line() -> None:
    script = (
        "import time\n"
        "from leadpulse.streams.processes.lifecycle import ShutdownDeadline\n"
        "deadline = ShutdownDeadline(0.5, 'worker')\n"
        "deadline.arm()\n"
        "deadline.arm(75)  # a later arm changes only the status\n"
        "time.sleep(30)  # a graceful stop that never finishes\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert time.monotonic() - started < 10
    assert done.returncode == EXIT_RESTART
    assert done.stderr == (
        "leadpulse worker: stopping took longer than LEADPULSE_SHUTDOWN_TIMEOUT (0.5 s); "
        "exiting now with status 75 (what was committed stays committed)\n"
    )


def test_the_deadline_exits_even_when_stderr_has_no_reader_left() -> None:
    """Seen live: dev SIGKILLed, its reader gone, the worker's write raised and it hung on."""
    script = (
        "import time\n"
        "from leadpulse.streams.processes.lifecycle import ShutdownDeadline\n"
        "ShutdownDeadline(0.3, 'worker').arm()\n"
        "time.sleep(30)  # a graceful stop that never finishes\n"
    )
    read, write = os.pipe()
    os.close(read)  # nobody will ever read what the child writes to stderr
    started = time.monotonic()
    try:
        assert exit_status(script, stderr=write) == 70  # EXIT_STOP_TIMED_OUT
    finally:
        os.close(write)
    assert time.monotonic() - started < 15


def test_the_deadline_exits_even_when_nobody_reads_a_full_stderr() -> None:
    script = (
        "import os, time\n"
        "from leadpulse.streams.processes.lifecycle import ShutdownDeadline\n"
        "os.set_blocking(2, False)\n"
        "try:\n"
        "    while True:\n"
        "        os.write(2, b'x' * 4096)  # fill the pipe: a blocking write would now wait\n"
        "except BlockingIOError:\n"
        "    pass\n"
        "os.set_blocking(2, True)\n"
        "ShutdownDeadline(0.3, 'worker').arm()\n"
        "time.sleep(30)\n"
    )
    read, write = os.pipe()  # kept open and never read
    try:
        assert exit_status(script, stderr=write) == 70  # EXIT_STOP_TIMED_OUT
    finally:
        os.close(read)
        os.close(write)


def exit_status(script: str, *, stderr: int) -> int | None:
    """Run `script` in a child writing its stderr to `stderr`; its status within 20 s."""
    child = subprocess.Popen([sys.executable, "-c", script], stderr=stderr)
    try:
        return child.wait(timeout=20)
    except subprocess.TimeoutExpired:
        return None
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
