"""A `leadpulse worker` in a child process: for `dev`, the demo, tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

from pydantic import SecretStr

from leadpulse.streams.processes.lifecycle import EXIT_RESTART, die_with_parent
from leadpulse.streams.settings import Settings


def worker_command(
    settings: Settings, *extra: str, command: str = "worker"
) -> tuple[list[str], dict[str, str]]:
    """argv and environment that start `leadpulse worker` (or `command`) with these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is not None:
            env[f"LEADPULSE_{name.upper()}"] = str(value)
        elif Settings.model_fields[name].default is not None:
            env[f"LEADPULSE_{name.upper()}"] = "never"  # switched off (a TTL), not defaulted
    for name in Settings.model_fields:
        secret = getattr(settings, name)
        if isinstance(secret, SecretStr):  # dumped as "**********"; the child needs the value
            env[f"LEADPULSE_{name.upper()}"] = secret.get_secret_value()
    return [sys.executable, "-m", "leadpulse.streams.cli", command, *extra], env


def get_json(url: str, token: str | None = None) -> dict[str, Any]:
    """A local JSON endpoint's answer, or {} if it does not answer (yet).

    `token` is sent as ``Authorization: Bearer`` (the worker's API needs one).
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        request = urllib.request.Request(url, headers=headers)  # noqa: S310 -- local http only
        with urllib.request.urlopen(request, timeout=2) as reply:  # noqa: S310 -- local http only
            result: dict[str, Any] = json.load(reply)
            return result
    except (OSError, ValueError):
        return {}


def stop_process(process: subprocess.Popen[Any], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def start_child(argv: list[str], env: dict[str, str], **options: Any) -> subprocess.Popen[bytes]:
    """A leadpulse child in a session of its own that gets SIGTERM when this process dies.

    Even a SIGKILL of the parent (no cleanup code runs) then stops the child,
    gracefully and within its shutdown timeout. The parent-death signal
    follows the forking thread, so it is asked for from the main thread only.
    """
    in_main = threading.current_thread() is threading.main_thread()
    return subprocess.Popen(
        argv,
        env=env,
        start_new_session=True,
        preexec_fn=die_with_parent() if in_main else None,  # noqa: PLW1509 -- a prctl only
        **options,
    )


def supervise(
    argv: list[str],
    env: dict[str, str],
    *,
    say: Callable[[str], None],
    backoff: tuple[float, float] = (1.0, 30.0),
    settled_after: float = 60.0,
) -> int:
    """Run `leadpulse worker` in the foreground; start it again when it asks to be restarted.

    A worker exits with `EXIT_RESTART` when it must read events again (the
    store lost progress). Each restart is printed with its count; the delay
    doubles from `backoff[0]` up to `backoff[1]` seconds, and starts over once
    a worker ran for `settled_after` seconds, so a cause that persists never
    makes a tight loop. Any other exit status ends the supervision and is
    returned. KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one) stops
    the worker and propagates.
    """
    restarts = 0
    delay = backoff[0]
    while True:
        started = time.monotonic()
        worker = start_child(argv, env)
        try:
            code = worker.wait()
        finally:
            stop_process(worker)
        if code != EXIT_RESTART:
            return code
        if time.monotonic() - started >= settled_after:
            delay = backoff[0]
        restarts += 1
        say(
            f"leadpulse dev: the worker exited to be restarted (status {code}); "
            f"restart {restarts} in {delay:g} s"
        )
        time.sleep(delay)
        delay = min(backoff[1], delay * 2)


class ChildProcess:
    """One `leadpulse` command in a child process of its own session, output to a log file."""

    command = "worker"
    extra: tuple[str, ...] = ()

    def __init__(self, settings: Settings, log_path: Path, *, loglevel: str = "info") -> None:
        self.settings = settings
        self.log_path = log_path
        self.loglevel = loglevel
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> Self:
        argv, env = worker_command(
            self.settings, "--loglevel", self.loglevel, *self.extra, command=self.command
        )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = start_child(argv, env, stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def exited(self) -> str | None:
        """What to say if the process has exited (its status and log tail), else None."""
        if self.process is None or self.process.poll() is None:
            return None
        return f"leadpulse {self.command} exited with {self.process.returncode}:\n{self.log_tail()}"

    def wait_for(
        self, condition: Callable[[], bool], timeout: float, interval: float, what: str
    ) -> None:
        """Poll `condition` until it holds; RuntimeError if the process exits first,
        TimeoutError (``<what> in <timeout>s`` and the log tail) if it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (exited := self.exited()) is not None:
                raise RuntimeError(exited)
            if condition():
                return
            time.sleep(interval)
        raise TimeoutError(f"{what} in {timeout:.0f}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no cleanup, no offset commit, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self._close_log()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class WorkerProcess(ChildProcess):
    """Start, watch, kill and restart one worker."""

    @property
    def stats_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.web_port}/stats"

    def stats(self) -> dict[str, Any]:
        """The worker's /stats, or {} while it is not serving (or refuses the token)."""
        return get_json(self.stats_url, self.settings.local_api_token())

    def health(self) -> dict[str, Any]:
        """The worker's /health (open: no token needed), or {} while it is not serving."""
        return get_json(f"http://127.0.0.1:{self.settings.web_port}/health")

    def wait_assigned(self, timeout: float = 120.0) -> None:
        """Block until the worker's consumer owns partitions (the group join is done).

        Reads /health, not /stats: it needs no API token, so a worker started
        without LEADPULSE_API_TOKENS is waited for too.
        """
        self.wait_for(
            lambda: self.health().get("assigned_partitions", 0) > 0,
            timeout,
            0.25,
            "worker got no partitions",
        )


class Restarting:
    """Starts a child again when it exits to be restarted (`EXIT_RESTART`), from a thread.

    What `supervise` does for `leadpulse dev`'s foreground worker, for a child
    that runs beside something else (`leadpulse demo --keep`, tests): a worker
    switched to another namespace by `leadpulse model apply` exits with
    `EXIT_RESTART` and comes back in it. With `always`, any exit is restarted
    (as systemd's ``Restart=always``: tests SIGKILL the child). Stopping it
    stops the child.
    """

    def __init__(
        self,
        child: ChildProcess,
        *,
        say: Callable[[str], None] = lambda line: None,
        always: bool = False,
        interval: float = 0.2,
        delay: float = 1.0,
    ) -> None:
        self.child = child
        self.say = say
        self.always = always
        self.interval = interval
        self.delay = delay
        self.restarts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="restarting", daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval):
            process = self.child.process
            if process is None or process.poll() is None:
                continue
            code = process.returncode
            if code != EXIT_RESTART and not self.always:
                return
            self.restarts += 1
            self.say(f"the {self.child.command} exited (status {code}); restart {self.restarts}")
            if self._stop.wait(self.delay):
                return
            self.child.stop()
            self.child.start()

    def start(self) -> Self:
        """Watch the (started) child from now on."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, then stop the child."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self.child.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class CollectorProcess(ChildProcess):
    """`leadpulse collect` in a child process; `start` returns once /health answers."""

    command = "collect"
    extra = ("--no-create-topics",)

    @property
    def url(self) -> str:
        return f"http://{self.settings.collector_host}:{self.settings.collector_port}"

    @property
    def metrics_url(self) -> str | None:
        """Where /metrics and /stats are (not on the ingest port), None if switched off."""
        address = self.settings.collector_metrics_address
        return None if address is None else "http://{}:{}".format(*address)

    def start(self, timeout: float = 30.0) -> Self:
        super().start()
        try:
            self._wait_serving(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def health(self) -> dict[str, Any]:
        """The collector's /health, or {} while it is not serving."""
        return get_json(f"{self.url}/health")

    def stats(self) -> dict[str, Any]:
        """Requests by status, messages accepted and rejected (GET /stats of the metrics
        port), or {} while it is not serving or has no metrics port."""
        return {} if self.metrics_url is None else get_json(f"{self.metrics_url}/stats")

    def _wait_serving(self, timeout: float) -> None:
        self.wait_for(lambda: bool(self.health()), timeout, 0.1, "collector not serving")


class DeliverProcess(ChildProcess):
    """`leadpulse deliver` in a child process; `wait_ready` returns once it owns partitions."""

    command = "deliver"
    extra = ("--no-create-topics",)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.deliver_web_port}"

    def ready(self) -> dict[str, Any]:
        """The deliverer's /ready (its body also when it answers 503), or {}."""
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=2) as reply:  # noqa: S310
                result: dict[str, Any] = json.load(reply)
                return result
        except urllib.error.HTTPError as error:
            body: dict[str, Any] = json.load(error)
            return body
        except (OSError, ValueError):
            return {}

    def wait_ready(self, timeout: float = 60.0) -> None:
        self.wait_for(lambda: bool(self.ready().get("ready")), timeout, 0.2, "deliverer not ready")
