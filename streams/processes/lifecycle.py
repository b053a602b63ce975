"""How leadpulse processes start, stop and die: exit codes, deadlines, parent death.

Every process exits within `LEADPULSE_SHUTDOWN_TIMEOUT` of being told to stop,
whatever Kafka or Redis are doing: the graceful stop runs, and a deadline
armed when the stop began ends the process if it has not finished by then
(what was committed stays committed: Redis holds the progress, a re-delivered
event counts once). Children that `leadpulse dev` starts die with it, even
when it is SIGKILLed, through the kernel's parent-death signal.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Final

log = logging.getLogger("leadpulse")

EXIT_OK = 0
"""The process did what it was asked, or stopped when told to."""
EXIT_FAILED = 1
"""A one-shot job failed (e.g. `leadpulse deliver --test` got no 2xx)."""
EXIT_RESTART = 75
"""The worker must be started again (EX_TEMPFAIL): e.g. Redis lost processed progress.

A supervisor (compose `restart:`, Kubernetes, `leadpulse dev`) starts it again;
the fresh process resumes every partition from what the store recorded.
"""
EXIT_STOP_TIMED_OUT = 70
"""A graceful stop did not finish within the shutdown timeout (EX_SOFTWARE)."""

_PR_SET_PDEATHSIG = 1
_libc_prctl: Callable[..., int] | None = None
if sys.platform.startswith("linux"):
    try:  # resolved here, not in the child: the pre-exec hook must stay trivial
        _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - exotic libc
        _libc_prctl = None


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A pre-exec hook: the kernel sends the child `signum` when its parent goes away.

    SIGTERM for leadpulse's own processes (they stop gracefully, within their
    deadline), SIGKILL for servers that need no goodbye. The parent must start
    the child from its main thread: the signal follows the thread that forked.
    """

    def hook() -> None:
        if _libc_prctl is not None:
            _libc_prctl(_PR_SET_PDEATHSIG, signum)

    return hook


class ShutdownDeadline:
    """Ends the process if a graceful stop takes longer than `timeout` seconds."""

    def __init__(self, timeout: float, what: str) -> None:
        self.timeout = timeout
        self.what = what
        self.code = EXIT_STOP_TIMED_OUT
        self._timer: threading.Timer | None = None

    def arm(self, code: int | None = None) -> None:
        """The stop began: from now on the process has `timeout` seconds (first call counts).

        `code` is the status to exit with if the deadline passes (default
        `EXIT_STOP_TIMED_OUT`); a later call may only change that status.
        """
        if code is not None:
            self.code = code
        if self._timer is not None:
            return
        self._timer = threading.Timer(self.timeout, self._expired)
        self._timer.daemon = True
        self._timer.start()

    def _expired(self) -> None:
        message = (
            f"leadpulse {self.what}: stopping took longer than LEADPULSE_SHUTDOWN_TIMEOUT "
            f"({self.timeout:g} s); exiting now with status {self.code} (what was committed "
            "stays committed)\n"
        )
        # stderr's reader may be gone (it died with the parent, the usual reason to stop) or
        # may not read (a write to a full pipe blocks): the line may be lost, the exit not.
        # (Not O_NONBLOCK: that flag would stay on a terminal or pipe shared with others.)
        try:
            writer = threading.Thread(target=_write_stderr, args=(message.encode(),), daemon=True)
            writer.start()
            writer.join(_LAST_WORDS_WAIT)
        finally:
            os._exit(self.code)


_LAST_WORDS_WAIT: Final = 1.0
"""Seconds the deadline waits for its message to be written before it exits anyway."""


def _write_stderr(data: bytes) -> None:
    with contextlib.suppress(OSError):
        os.write(2, data)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop (a dependency), asyncio's where it cannot be imported."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def stop_on_signals(stop: Callable[[], None], deadline: ShutdownDeadline) -> None:
    """SIGINT/SIGTERM start a graceful stop, and the deadline with it (running loop)."""
    loop = asyncio.get_running_loop()

    def stopping() -> None:
        deadline.arm()
        stop()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping)


def interrupt_on_sigterm() -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does.

    For commands that start children (`dev`, `demo`): their cleanup runs on
    Ctrl-C, and so it runs for `kill PID` too instead of leaving orphans.
    """

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
