"""Drive `leadpulse collect` with the real tracker SDKs: what they sent, what landed.

The SDKs are used as shipped. To see what they put on the wire, a response
hook is added to the `requests` session each SDK module posts with
(`recording`): it only observes, the requests and the retries are the SDK's own.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import gzip
import json
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from leadpulse.schemas import BehaviorEvent, StageTransition
from leadpulse.scoring import LeadState, ScoringModel, apply, engagement, new_lead, parse_model
from leadpulse.streams.dev.devstack import DevStack, free_port
from leadpulse.streams.dev.workerproc import CollectorProcess, WorkerProcess
from leadpulse.streams.settings import Settings
from tests.integration.harness import MODEL_YAML, poll_topic, start_worker, worker_settings

SDK_EVENTS = {"Webinar Signed Up": "form_submit"}
"""The model's ``events:`` table: one track name mapped, the others normalised."""
SDK_MODEL_YAML = (
    MODEL_YAML + "events:\n" + "".join(f'  "{k}": {v}\n' for k, v in SDK_EVENTS.items())
)
SDK_MODEL = parse_model(SDK_MODEL_YAML, "collector-sdks")


def new_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


@dataclass
class Rig:
    """A worker and a collector on the same settings; `keys` maps source -> write key."""

    settings: Settings
    worker: WorkerProcess
    collector: CollectorProcess
    keys: dict[str, str]

    @property
    def url(self) -> str:
        return self.collector.url


def collector_settings(
    stack: DevStack, workdir: Path, keys: dict[str, str], model_yaml: str = SDK_MODEL_YAML
) -> Settings:
    """`worker_settings` (own topics, group, Redis DB) plus a collector port, keys, a model."""
    settings = worker_settings(stack, workdir)
    model_file = workdir / "collector-model.yaml"
    model_file.write_text(model_yaml)
    return settings.replace(
        model_file=model_file,
        collector_port=free_port(),
        collector_metrics_port=free_port(),
        write_keys=",".join(f"{source}={key}" for source, key in keys.items()),
        sales_sources="crm",
    )


@contextlib.contextmanager
def running_rig(stack: DevStack, workdir: Path, model_yaml: str = SDK_MODEL_YAML) -> Iterator[Rig]:
    """A worker and a collector (keys: website, crm = the sales source) on `model_yaml`."""
    keys = {"website": new_key(), "crm": new_key()}
    settings = collector_settings(stack, workdir, keys, model_yaml)
    worker = start_worker(settings, workdir / "worker.log")
    try:
        with CollectorProcess(settings, workdir / "collector.log") as collector:
            yield Rig(settings, worker, collector, keys)
    finally:
        worker.stop()


# -- what the SDKs sent ----------------------------------------------------------------


@dataclass(frozen=True)
class Exchange:
    """One HTTP request an SDK made and the status it got."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    status: int
    answer: Any
    at: float
    """`time.monotonic()` when the answer came."""

    @property
    def basic_user(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        return base64.b64decode(header[6:]).decode().partition(":")[0]


@dataclass
class Recorder:
    exchanges: list[Exchange] = field(default_factory=list)

    def hook(self, response: requests.Response, *args: object, **kwargs: object) -> None:
        request = response.request
        raw = request.body or b""
        if isinstance(raw, str):
            raw = raw.encode()
        if request.headers.get("Content-Encoding") == "gzip":
            raw = gzip.decompress(raw)
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        try:
            answer = response.json()
        except ValueError:
            answer = response.text
        self.exchanges.append(
            Exchange(
                method=str(request.method),
                path=requests.utils.urlparse(request.url).path,
                headers=dict(request.headers),
                body=body,
                status=response.status_code,
                answer=answer,
                at=time.monotonic(),
            )
        )

    @property
    def statuses(self) -> list[int]:
        return [e.status for e in self.exchanges]


@contextlib.contextmanager
def recording(session: requests.Session) -> Iterator[Recorder]:
    """Record every response `session` gets (an SDK module's ``_session``) for the block."""
    recorder = Recorder()
    session.hooks["response"].append(recorder.hook)
    try:
        yield recorder
    finally:
        session.hooks["response"].remove(recorder.hook)


def drain(client: Any, timeout: float) -> None:
    """`client.flush()` with a deadline: wait until the SDK's queue is done (then `stop`)."""
    deadline = time.monotonic() + timeout
    try:
        while client.queue.unfinished_tasks:
            if time.monotonic() > deadline:
                raise TimeoutError(f"SDK queue not drained in {timeout:.0f}s")
            time.sleep(0.05)
    finally:
        stop(client)


def stop(client: Any, timeout: float = 10.0) -> None:
    """End an SDK client's consumer threads without waiting out its retries.

    `join` (also registered with atexit) waits for the thread, which may be
    sleeping in a backoff for minutes: pause, join with a timeout, and take the
    atexit hook back. The threads are daemons; one still sleeping dies with pytest.
    """
    for consumer in client.consumers or ():
        consumer.pause()
    for consumer in client.consumers or ():
        consumer.join(timeout)
    atexit.unregister(client.join)


# -- plain HTTP, as a tracker without an SDK --------------------------------------------


def basic(key: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}


def post_body(
    url: str,
    body: bytes,
    *,
    key: str | None = None,
    gzipped: bool = False,
    path: str = "/v1/batch",
    timeout: float = 30.0,
) -> requests.Response:
    headers = {"Content-Type": "application/json", **(basic(key) if key else {})}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    return requests.post(url + path, data=body, headers=headers, timeout=timeout)


# -- what landed -----------------------------------------------------------------------


def topic_json(
    settings: Settings,
    topic: str,
    done: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    """JSON values of `topic` until `done` holds (or `timeout`: the caller asserts)."""
    return [
        json.loads(v)
        for v in poll_topic(
            settings,
            topic,
            done=lambda vs: done([json.loads(v) for v in vs]),
            timeout=timeout,
        )
    ]


def events_with_ids(
    settings: Settings, ids: Iterable[str], *, copies: int = 1, timeout: float = 60.0
) -> list[dict[str, Any]]:
    """Events-topic values whose event_id is one of `ids`, in topic order.

    Read until every id arrived and there are `copies` records per id (a
    retried batch is on the topic twice); after `timeout`, whatever was there.
    """
    wanted = set(ids)

    def mine(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [v for v in values if v.get("event_id") in wanted]

    def done(values: list[dict[str, Any]]) -> bool:
        found = mine(values)
        return {v["event_id"] for v in found} >= wanted and len(found) >= copies * len(wanted)

    return mine(topic_json(settings, settings.events_topic, done, timeout))


def scored(
    bodies: Iterable[dict[str, Any]], lead: str, model: ScoringModel = SDK_MODEL
) -> tuple[LeadState, list[StageTransition]]:
    """The lead and its moves as the scoring engine makes them (events de-duplicated by id)."""
    state = new_lead(lead)
    moves: list[StageTransition] = []
    seen: set[str] = set()
    for body in bodies:
        if body["event_id"] in seen:
            continue
        seen.add(body["event_id"])
        state, made = apply(state, BehaviorEvent.model_validate(body), model)
        moves.extend(made)
    return state, moves


def engagement_at(state: LeadState, at: float, model: ScoringModel = SDK_MODEL) -> float:
    return engagement(state, at, model)
