"""A webhook receiver (aiohttp on 127.0.0.1, in a thread) and helpers for the deliverer tests.

Every request the receiver gets is verified with the `standardwebhooks`
package (a verifier no one here wrote) and kept with its arrival time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from kafka import KafkaProducer
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from leadpulse.schemas.codec import encode
from leadpulse.schemas.messages import Handoff, RuleContribution, Stage, StageTransition
from leadpulse.streams.dev.devstack import DevStack, free_port
from leadpulse.streams.dev.workerproc import DeliverProcess
from leadpulse.streams.kafka.topics import create_topics
from leadpulse.streams.settings import Settings
from tests.integration.harness import worker_settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

Behaviour = Callable[["Receiver", web.Request, "Received"], Awaitable[web.StreamResponse]]


@dataclass
class Received:
    path: str
    webhook_id: str
    timestamp: str
    body: bytes
    at: float
    verified: bool
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An aiohttp server on its own event loop thread; `behaviours` maps a path to a handler."""

    def __init__(self, behaviours: dict[str, Behaviour], secret: str = SECRET) -> None:
        self.behaviours = behaviours
        self.verifier = Webhook(secret)
        self.port = free_port()
        self.received: list[Received] = []
        self.counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        self._thread.start()
        if not self._started.wait(10):
            raise TimeoutError("receiver did not start")
        return self

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()
        self._started.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        headers = dict(request.headers)
        try:
            self.verifier.verify(body, headers)
            verified = True
        except WebhookVerificationError:
            verified = False
        item = Received(
            request.path,
            headers.get("webhook-id", ""),
            headers.get("webhook-timestamp", ""),
            body,
            time.time(),
            verified,
            headers,
        )
        with self._lock:
            self.received.append(item)
            key = (request.path, item.webhook_id)
            self.counts[key] = self.counts.get(key, 0) + 1
        behaviour = self.behaviours.get(request.path)
        if behaviour is None:
            return web.Response(status=404)
        return await behaviour(self, request, item)

    def count(self, path: str, webhook_id: str) -> int:
        with self._lock:
            return self.counts.get((path, webhook_id), 0)

    def at(self, path: str, webhook_id: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self.received
                if r.path == path and (webhook_id is None or r.webhook_id == webhook_id)
            ]


@contextlib.contextmanager
def receiver(behaviours: dict[str, Behaviour]) -> Iterator[Receiver]:
    server = Receiver(behaviours).start()
    try:
        yield server
    finally:
        server.stop()


async def ok(receiver: Receiver, request: web.Request, item: Received) -> web.StreamResponse:
    return web.json_response({"accepted": item.webhook_id})


def fails_first(times: int, status: int = 500, headers: dict[str, str] | None = None) -> Behaviour:
    async def behaviour(
        receiver: Receiver, request: web.Request, item: Received
    ) -> web.StreamResponse:
        if receiver.count(item.path, item.webhook_id) <= times:
            return web.Response(status=status, headers=headers or {})
        return web.json_response({"accepted": item.webhook_id})

    return behaviour


def always(status: int) -> Behaviour:
    async def behaviour(
        receiver: Receiver, request: web.Request, item: Received
    ) -> web.StreamResponse:
        return web.Response(status=status)

    return behaviour


def sleeps(seconds: float) -> Behaviour:
    async def behaviour(
        receiver: Receiver, request: web.Request, item: Received
    ) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.json_response({"accepted": item.webhook_id})

    return behaviour


def deliver_settings(stack: DevStack, workdir: Path, **overrides: Any) -> Settings:
    """A test worker's settings (`worker_settings`: topics, group and Redis database of
    its own) with the deliverer's: its DLQ topic, web port and destinations file.
    The shipped default model unless `model_file` is given."""
    base = worker_settings(stack, workdir, partitions=2)
    suffix = base.app_id.rsplit("-", 1)[-1]
    settings = base.replace(
        **{
            "model_file": None,
            "deliveries_dlq_topic": f"deliveries-dlq.{suffix}",
            "deliver_web_port": free_port(),
            "destinations_file": workdir / "destinations.yaml",
            **overrides,
        }
    )
    create_topics(stack.bootstrap, [settings.deliveries_dlq_topic], settings.partitions)
    return settings


def write_destinations(settings: Settings, destinations: list[dict[str, Any]]) -> None:
    assert settings.destinations_file is not None
    text = json.dumps({"allow_hosts": ["127.0.0.1"], "destinations": destinations}, indent=2)
    settings.destinations_file.write_text(text)  # JSON is YAML


def start_deliverer(settings: Settings, log: Path) -> DeliverProcess:
    process = DeliverProcess(settings, log).start()
    try:
        process.wait_ready(60)
    except BaseException:
        process.stop()
        raise
    return process


def sample(grade: str = "A", lead: str | None = None) -> Handoff:
    lead = lead or f"lead-{uuid.uuid4().hex[:10]}"
    return Handoff(
        handoff_id=f"h-{uuid.uuid4().hex}",
        lead_id=lead,
        engagement=80.0,
        fit=45.0,
        grade=grade,
        occurred_at=datetime.now(UTC),
        model_version="test",
        reasons=[RuleContribution(rule="demo-request", points=60.0)],
        profile={"name": "Test Lead", "company": "Example", "title": "CTO"},
    )


def transition() -> StageTransition:
    return StageTransition(
        transition_id=f"t-{uuid.uuid4().hex}",
        lead_id=f"lead-{uuid.uuid4().hex[:10]}",
        from_stage=Stage.IQL,
        to_stage=Stage.MQL,
        engagement=55.0,
        fit=45.0,
        grade="A",
        occurred_at=datetime.now(UTC),
        model_version="test",
        reason="engagement reached 50",
    )


def produce_handoffs(settings: Settings, handoffs: list[Handoff]) -> None:
    _produce(settings.handoffs_topic, settings, [(h.lead_id, encode(h)) for h in handoffs])


def produce_transitions(settings: Settings, transitions: list[StageTransition]) -> None:
    _produce(settings.transitions_topic, settings, [(t.lead_id, encode(t)) for t in transitions])


def _produce(topic: str, settings: Settings, records: list[tuple[str, bytes]]) -> None:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    try:
        for key, value in records:
            producer.send(topic, key=key.encode(), value=value)
        producer.flush(30)
    finally:
        producer.close(5)


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not reached in {timeout:.0f}s")
