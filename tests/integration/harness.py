"""Drive a real worker on the embedded stack: produce, consume, read Redis."""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer

from leadpulse.scoring import LeadState
from leadpulse.streams.dev.devstack import DevStack, free_port
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.kafka.topics import create_topics
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import decode_state
from leadpulse.streams.store.redis import keys

MODEL_YAML = """
version: "integration-1"
engagement:
  rules:
    - {name: pricing-page, event: page_view, when: {url_contains: /pricing}, points: 20,
       half_life: 30d, cap: 40}
    - {name: page-view, event: page_view, points: 1, half_life: 30d, cap: 5}
    - {name: demo-request, event: demo_request, points: 60, half_life: 30d}
    - {name: form-submit, event: form_submit, points: 10, half_life: 30d}
    - {name: quick-look, event: quick_look, points: 60, half_life: 3s}
    - {name: unsubscribe, event: email_unsubscribe, points: -80, half_life: 30d}
fit:
  rules:
    - {name: mid-market, trait: company_size, between: [50, 5000], points: 40}
  grades: {A: 40, B: 20, C: 10}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
"""


ADMIN_TOKEN = "tk_test_admin_0123456789abcdef"
READ_TOKEN = "tk_test_read_0123456789abcdef"
API_TOKENS = f"tests={ADMIN_TOKEN}:admin,viewer={READ_TOKEN}:read"
"""The API tokens of every test worker: an admin one (the harness's own calls) and a read one."""

_DATABASES = itertools.cycle(range(1, 16))
"""Redis databases handed to test workers in turn (0 stays the stack's default)."""


def private_database(redis_url: str) -> str:
    """`redis_url` on the next Redis database of 1-15, emptied first.

    All workers on one Redis database share its key space (the due index, the
    pending outboxes, progress): one database per deployment, by design. So a
    test worker gets one of its own, and cannot sweep or replay what an
    earlier test's worker left behind. Tests run one at a time, and no module
    starts 15 workers, so a database is never emptied under a live worker.
    """
    url = f"{redis_url.rsplit('/', 1)[0]}/{next(_DATABASES)}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


def worker_settings(stack: DevStack, workdir: Path, *, partitions: int = 4) -> Settings:
    """Settings for a worker with topics, consumer group and Redis database of its own."""
    suffix = uuid.uuid4().hex[:8]
    model_file = workdir / "model.yaml"
    model_file.write_text(MODEL_YAML)
    settings = Settings(
        app_id=f"lp-test-{suffix}",
        broker=f"kafka://{stack.bootstrap}",
        redis_url=private_database(stack.redis_url),
        model_file=model_file,
        events_topic=f"events.{suffix}",
        handoffs_topic=f"handoffs.{suffix}",
        transitions_topic=f"transitions.{suffix}",
        dlq_topic=f"dlq.{suffix}",
        partitions=partitions,
        web_port=free_port(),
        data_dir=workdir / "data",
        sweep_interval=0.5,
        session_timeout=2.0,
        api_tokens=API_TOKENS,
    )
    create_topics(
        stack.bootstrap,
        [
            settings.events_topic,
            settings.handoffs_topic,
            settings.transitions_topic,
            settings.dlq_topic,
        ],
        partitions,
    )
    return settings


def fresh_settings(
    settings: Settings, stack: DevStack, workdir: Path, model_file: Path, name: str
) -> Settings:
    """A second deployment reading `settings`' events topic: its own group, Redis database
    and output topics, the model in `model_file` (a fresh run to compare with)."""
    fresh = settings.replace(
        app_id=f"{settings.app_id}-{name}",
        redis_url=private_database(stack.redis_url),
        model_file=model_file,
        handoffs_topic=f"{settings.handoffs_topic}-{name}",
        transitions_topic=f"{settings.transitions_topic}-{name}",
        dlq_topic=f"{settings.dlq_topic}-{name}",
        web_port=free_port(),
        data_dir=workdir / f"data-{name}",
    )
    create_topics(
        stack.bootstrap,
        [fresh.handoffs_topic, fresh.transitions_topic, fresh.dlq_topic],
        settings.partitions,
    )
    return fresh


def start_worker(settings: Settings, log: Path) -> WorkerProcess:
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_assigned(timeout=90)
    except BaseException:
        worker.stop()
        raise
    return worker


def port_open(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:`port`."""
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


@contextlib.contextmanager
def running_worker(settings: Settings, log: Path) -> Iterator[Settings]:
    """A worker on `settings` while the block runs (started, assigned; stopped after)."""
    worker = start_worker(settings, log)
    try:
        yield settings
    finally:
        worker.stop()


def subject(body: dict[str, Any]) -> str:
    return str(body.get("lead_id") or body.get("anonymous_id") or "")


def produce(settings: Settings, bodies: Iterable[dict[str, Any] | bytes]) -> int:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    count = 0
    try:
        for body in bodies:
            if isinstance(body, bytes):
                producer.send(settings.events_topic, key=b"bad", value=body)
            else:
                value = json.dumps(body).encode()
                producer.send(settings.events_topic, key=subject(body).encode(), value=value)
            count += 1
        producer.flush(30)
    finally:
        producer.close(5)
    return count


@dataclass
class TopicReader:
    """Reads a topic from the beginning; `until` polls until a condition holds."""

    settings: Settings
    topic: str

    def __post_init__(self) -> None:
        self.consumer = KafkaConsumer(
            self.topic,
            bootstrap_servers=self.settings.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=200,
        )
        self.values: list[dict[str, Any]] = []

    def poll(self) -> list[dict[str, Any]]:
        for message in self.consumer:
            self.values.append(json.loads(message.value))
        return self.values

    def until(
        self, condition: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self.poll()):
                return self.values
        raise TimeoutError(f"condition not met on {self.topic}; have {len(self.values)} messages")

    def close(self) -> None:
        self.consumer.close()


def read_state(settings: Settings, lead: str) -> tuple[int, LeadState | None]:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        version, blob = client.hmget(keys.Keys(settings.redis_prefix).state(lead), ["v", "s"])
    finally:
        client.close()
    state = decode_state(blob) if blob else None
    return int(version or 0), state


def wait_for(condition: Callable[[], bool], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s")


# -- helpers of the hardening tests (lag, identity race, outbox replay, dev defaults) ----


def poll_topic(
    settings: Settings,
    topic: str,
    *,
    done: Callable[[list[bytes]], bool],
    timeout: float,
) -> list[bytes]:
    """Raw values of `topic` from the beginning, until `done` holds or `timeout` passed.

    Unlike `TopicReader.until` it does not raise at the deadline: it returns what
    it read, so a test can show what was published instead of just timing out.
    """
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=300,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
    )
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            values.extend(message.value for message in consumer)
            if done(values) or time.monotonic() > deadline:
                return values
    finally:
        consumer.close()


def peer_settings(settings: Settings, workdir: Path, name: str) -> Settings:
    """Settings of one more worker of the same app: same group and topics, own port and dir."""
    return settings.replace(web_port=free_port(), data_dir=workdir / f"data-{name}")


def start_workers(
    settings: Iterable[Settings], logs: Iterable[Path], *, timeout: float = 120.0
) -> list[WorkerProcess]:
    """Start workers of one group together; return once they share all partitions.

    Every worker owns at least one partition and together they own
    `partitions` (a joining worker triggers a rebalance; this waits it out).
    Stops them all if that does not happen in `timeout` seconds.
    """
    workers = [WorkerProcess(s, log) for s, log in zip(settings, logs, strict=True)]
    try:
        for worker in workers:
            worker.start()
        wanted = workers[0].settings.partitions
        deadline = time.monotonic() + timeout
        while True:
            for worker in workers:
                if not worker.alive():
                    raise RuntimeError(f"a worker exited:\n{worker.log_tail()}")
            owned = [w.stats().get("assigned_partitions", 0) for w in workers]
            if all(owned) and sum(owned) == wanted:
                return workers
            if time.monotonic() > deadline:
                tails = "\n---\n".join(w.log_tail(15) for w in workers)
                raise TimeoutError(f"partitions not shared ({owned} of {wanted}):\n{tails}")
            time.sleep(0.25)
    except BaseException:
        for worker in workers:
            worker.stop()
        raise


def stats_total(workers: Iterable[WorkerProcess], name: str) -> int:
    """A /stats counter summed over workers (a worker not serving counts 0)."""
    return sum(int(w.stats().get(name, 0)) for w in workers)


def wait_progressing(
    condition: Callable[[], bool],
    progress: Callable[[], object],
    *,
    timeout: float,
    stall: float,
    what: str,
) -> None:
    """`wait_for`, failing early once `progress()` stayed the same for `stall` seconds.

    For waits on a worker that may be stuck in its retry loop: a stall shows up
    after `stall` seconds instead of at the end of a long `timeout`.
    """
    deadline = time.monotonic() + timeout
    last, since = progress(), time.monotonic()
    while not condition():
        now = time.monotonic()
        if now > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:.0f}s (progress {last!r})")
        current = progress()
        if current != last:
            last, since = current, now
        elif now - since > stall:
            raise TimeoutError(f"{what}: no progress for {stall:.0f}s (stuck at {last!r})")
        time.sleep(0.2)


def owned_partitions(worker: WorkerProcess) -> set[int]:
    """The events-topic partitions the group assigned to `worker`, from its /stats.

    (Faust's own /router/topics is switched off: the worker serves only its own routes.)
    """
    url = f"http://127.0.0.1:{worker.settings.web_port}/stats"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=3) as reply:
        stats: dict[str, Any] = json.load(reply)
    return set(stats["owned_partitions"])
