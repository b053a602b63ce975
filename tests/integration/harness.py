"""Drive a real worker on the embedded stack: produce, consume, read Redis."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer

from scoring import LeadState
from streams.dev.devstack import DevStack, free_port
from streams.dev.workerproc import WorkerProcess
from streams.kafka.topics import create_topics
from streams.settings import Settings
from streams.store import decode_state
from streams.store.redis import keys

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


def worker_settings(stack: DevStack, workdir: Path, *, partitions: int = 4) -> Settings:
    """Settings for a worker with topics and consumer group of its own."""
    suffix = uuid.uuid4().hex[:8]
    model_file = workdir / "model.yaml"
    model_file.write_text(MODEL_YAML)
    settings = Settings(
        app_id=f"lp-test-{suffix}",
        broker=f"kafka://{stack.bootstrap}",
        redis_url=stack.redis_url,
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


def start_worker(settings: Settings, log: Path) -> WorkerProcess:
    worker = WorkerProcess(settings, log).start()
    try:
        worker.wait_assigned(timeout=90)
    except BaseException:
        worker.stop()
        raise
    return worker


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
        version, blob = client.hmget(keys.state(lead), ["v", "s"])
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
