"""Fault injection and read-back helpers for the hardening tests (Redis faults, poison, skew).

Kept apart from `harness.py` (shared with other test authors): a worker with extra
environment variables, `/health` with its status code, a redis-server frozen with
SIGSTOP, an AOF cut back to an earlier moment, and topic/state readers that do not
depend on how this release encodes a lead's state.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import redis
from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2

from leadpulse.scoring import LeadState
from leadpulse.streams.dev.devstack import RedisServer
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import decode_state
from leadpulse.streams.store.redis import keys
from tests.integration.harness import ADMIN_TOKEN


def health(
    settings: Settings, timeout: float = 3.0, *, detail: bool = False
) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body) of the worker's /health; (0, {}) while it does not answer.

    `detail`: /health/detail with the admin token (error texts, the last letter's origin).
    """
    path, headers = (
        ("/health/detail", {"Authorization": f"Bearer {ADMIN_TOKEN}"})
        if detail
        else ("/health", {})
    )
    request = urllib.request.Request(f"http://127.0.0.1:{settings.web_port}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.load(reply)
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read() or b"{}")
        except ValueError:
            body = {}
        return error.code, body
    except (OSError, ValueError):
        return 0, {}


def poll(
    condition: Callable[[], bool],
    *,
    timeout: float,
    interval: float = 0.1,
    check: Callable[[], None] | None = None,
) -> float | None:
    """Seconds until `condition` held, or None after `timeout` (never raises on timeout)."""
    started = time.monotonic()
    while True:
        if check is not None:
            check()
        if condition():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)


def alive_check(worker: WorkerProcess) -> Callable[[], None]:
    def check() -> None:
        if not worker.alive():
            raise AssertionError(f"worker died on its own:\n{worker.log_tail()}")

    return check


# -- redis-server faults -------------------------------------------------------------------


@contextlib.contextmanager
def frozen(server: RedisServer) -> Iterator[int]:
    """SIGSTOP the redis-server for the block; SIGCONT always, even on failure."""
    pid = server.pid
    assert pid is not None, "redis-server is not running"
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


@dataclass(frozen=True)
class AofMark:
    """How far the AOF reached at one moment: the incremental file and its size."""

    directory: Path
    manifest: str
    incr: Path
    size: int

    @classmethod
    def take(cls, server: RedisServer) -> AofMark:
        directory = server.workdir / "appendonlydir"
        manifest_path = next(directory.glob("*.manifest"))
        manifest = manifest_path.read_text()
        incr = [
            line.split()[1]
            for line in manifest.splitlines()
            if line.startswith("file ") and line.rstrip().endswith("type i")
        ]
        assert incr, f"no incremental AOF in {manifest!r}"
        path = directory / incr[-1]
        return cls(directory, manifest, path, path.stat().st_size)

    def cut_back(self) -> int:
        """Truncate the AOF to this mark (Redis must be dead); returns the bytes dropped.

        This is what a host crash can leave with ``appendfsync everysec``: the
        writes of the last second were in the page cache, not on disk. (A
        SIGKILL of redis-server alone loses nothing already written: the
        kernel still has it.) A command cut in half, or a MULTI without its
        EXEC, is dropped when Redis loads it (``aof-load-truncated yes``).
        """
        manifest_path = next(self.directory.glob("*.manifest"))
        assert manifest_path.read_text() == self.manifest, "the AOF was rewritten meanwhile"
        dropped = self.incr.stat().st_size - self.size
        os.truncate(self.incr, self.size)
        return dropped


def sigkill(server: RedisServer, timeout: float = 10.0) -> None:
    """SIGKILL redis-server (no shutdown, no final fsync) and wait until it is gone."""
    pid = server.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    if poll(lambda: not server.running, timeout=timeout, interval=0.02) is None:
        raise AssertionError("redis-server survived SIGKILL")


# -- reading results --------------------------------------------------------------------------


def state_of(redis_url: str, lead: str) -> LeadState | None:
    """A lead's state through this release's codec (not a fixed JSON layout)."""
    client = redis.Redis.from_url(redis_url)
    try:
        blob = client.hget(keys.DEFAULT.state(lead), "s")
    finally:
        client.close()
    assert blob is None or isinstance(blob, bytes)
    return decode_state(blob) if blob else None


class Topic:
    """All values of a topic from the beginning, JSON-decoded; `read` polls more."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=300,
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
        )
        self.values: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        for message in self.consumer:
            self.values.append(json.loads(message.value))
        return self.values

    def until(self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float) -> bool:
        """Poll until `condition(values)` holds; False after `timeout` (values kept)."""
        deadline = time.monotonic() + timeout
        while True:
            if condition(self.read()):
                return True
            if time.monotonic() > deadline:
                return False

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


Decision = tuple[str, str, str, str]
"""(lead, from stage, to stage, occurred_at) of a published transition."""


def reused_transition_ids(
    transitions: Iterable[Mapping[str, Any]],
) -> dict[str, set[Decision]]:
    """transition_id -> the different decisions published under it, where more than one."""
    decisions: dict[str, set[Decision]] = defaultdict(set)
    for t in transitions:
        decisions[t["transition_id"]].add(
            (t["lead_id"], t["from_stage"], t["to_stage"], t["occurred_at"])
        )
    return {tid: d for tid, d in decisions.items() if len(d) > 1}


# -- producing with record metadata ----------------------------------------------------------


@dataclass(frozen=True)
class Produced:
    body: dict[str, Any]
    partition: int
    offset: int
    timestamp: float
    """The Kafka record timestamp, epoch seconds."""


def produce_at(
    settings: Settings, bodies: Iterable[dict[str, Any]], *, timestamp: float | None = None
) -> list[Produced]:
    """Produce JSON events keyed by subject; the record timestamp is `timestamp` (else now)."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    try:
        pending = []
        for body in bodies:
            key = str(body.get("lead_id") or body.get("anonymous_id") or "").encode()
            at = time.time() if timestamp is None else timestamp
            future = producer.send(
                settings.events_topic,
                key=key,
                value=json.dumps(body).encode(),
                timestamp_ms=int(at * 1000),
            )
            pending.append((body, at, future))
        producer.flush(30)
        result = []
        for body, at, future in pending:
            meta = future.get(timeout=30)
            result.append(Produced(body, meta.partition, meta.offset, at))
    finally:
        producer.close(5)
    return result


def partition_of(key: str, partitions: int) -> int:
    """The partition kafka-python's default partitioner (and Faust's) sends `key` to."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def lead_on(prefix: str, partitions: int, *, on: int | None = None, off: int | None = None) -> str:
    """A fresh lead id whose partition is `on` (or anything but `off`)."""
    for _ in range(10_000):
        lead = f"{prefix}-{uuid.uuid4().hex[:8]}"
        p = partition_of(lead, partitions)
        if (on is None or p == on) and (off is None or p != off):
            return lead
    raise AssertionError("no lead id found for the wanted partition")
