"""A real worker refuses every route but the probes without a token, on both of its ports,
and its open /health names what failed without the letters' lead ids, offsets or texts.

The routes are the ones its aiohttp router lists: a worker built in this
process from the same settings (never started) lists them; the worker under
test, a `leadpulse worker` child on the embedded stack, answers for them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import redis

from leadpulse.scoring import parse_model
from leadpulse.streams.dev.devstack import DevStack, free_port
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis import keys
from tests.integration.faults import health, poll, produce_at
from tests.integration.harness import (
    ADMIN_TOKEN,
    MODEL_YAML,
    READ_TOKEN,
    port_open,
    start_worker,
    worker_settings,
)
from tests.worker_routes import reachable, worker_routes

pytestmark = pytest.mark.integration

OPEN = {"/health", "/ready", "/metrics"}
CHALLENGE = 'Bearer realm="leadpulse"'


def call(
    url: str, method: str = "GET", token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return int(reply.status), dict(reply.headers), reply.read()
    except urllib.error.HTTPError as error:
        return int(error.code), dict(error.headers), error.read()


@pytest.fixture(scope="module")
def worker(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    workdir = tmp_path_factory.mktemp("access")
    settings = worker_settings(stack, workdir, partitions=1).replace(metrics_port=free_port())
    process = start_worker(settings, workdir / "worker.log")
    try:
        assert settings.metrics_port is not None
        deadline = time.monotonic() + 30  # the probe server is an app task: it may lag a bit
        while not port_open(settings.metrics_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        yield settings
    finally:
        process.stop()


def test_every_route_but_the_probes_answers_401_without_a_token(worker: Settings) -> None:
    routes = worker_routes(worker, parse_model(MODEL_YAML, "model.yaml"))
    assert {pattern for _, pattern in routes} >= OPEN | {"/", "/stats", "/ui", "/leads/{lead_id}"}
    web = f"http://127.0.0.1:{worker.web_port}"
    for method, pattern in routes:
        path = reachable(pattern)
        status, headers, body = call(web + path, method)
        if pattern in OPEN:
            assert status in (200, 503), (method, path, body)
            continue
        assert status == 401, (method, path, status)
        assert headers.get("WWW-Authenticate") == CHALLENGE, (method, path)
        if method == "GET" and pattern.startswith("/ui"):  # a page: the sign-in form
            assert headers["Content-Type"].startswith("text/html"), path
            assert b'name="token"' in body
        elif method == "GET":
            assert json.loads(body)["code"] == "unauthorized", path
    for path in ("/router/", "/table/", "/graph/", "/stats/", "/performance/"):
        assert call(web + path)[0] == 401, path  # Faust's own: switched off
        assert call(web + path, token=ADMIN_TOKEN)[0] == 404, path


def test_the_metrics_port_serves_the_probes_only(worker: Settings) -> None:
    routes = worker_routes(worker, parse_model(MODEL_YAML, "model.yaml"))
    probes = f"http://127.0.0.1:{worker.metrics_port}"
    for method, pattern in routes:
        status, _, body = call(probes + reachable(pattern), method, READ_TOKEN)
        if pattern in OPEN:
            assert status in (200, 503), (method, pattern, body)
        else:
            assert status == 404, (method, pattern, status)


SECRET_FIELD = "sk_live_51HxQ7Jc2eZvKYlo2C8PQ"


def letters_seen(settings: Settings, count: int) -> dict[str, object]:
    """/health/detail once the worker has dead-lettered `count` records in all."""
    seen: dict[str, object] = {}

    def reached() -> bool:
        seen.update(health(settings, detail=True)[1])
        return int(str(seen.get("dead_lettered", 0))) >= count

    assert poll(reached, timeout=30) is not None, seen
    return seen


def test_open_health_shows_no_lead_id_offset_or_letter_text(worker: Settings) -> None:
    suffix = uuid.uuid4().hex[:8]
    leaky = {
        "event_id": uuid.uuid4().hex,
        "type": "page_view",
        "lead_id": f"lead-leaky-{suffix}",
        "occurred_at": datetime.now(UTC).isoformat(),
        SECRET_FIELD: "x",  # a field the schema refuses: the letter's reason names it
    }
    produce_at(worker, [leaky])
    detail = letters_seen(worker, 1)
    assert SECRET_FIELD in json.dumps(detail["last_dead_letter"])
    status, _, body = call(f"http://127.0.0.1:{worker.web_port}/health")
    assert status == 200
    assert json.loads(body)["last_dead_letter"]["kind"] == "decode"
    assert SECRET_FIELD.encode() not in body

    rotten = f"lead-rotten-{suffix}"
    client = redis.Redis.from_url(worker.redis_url)
    try:
        client.hset(keys.DEFAULT.state(rotten), mapping={"v": 7, "s": b"\x00not a lead state{"})
    finally:
        client.close()
    clean = {k: v for k, v in leaky.items() if k != SECRET_FIELD}
    (sent,) = produce_at(worker, [{**clean, "event_id": uuid.uuid4().hex, "lead_id": rotten}])
    detail = letters_seen(worker, 2)
    letter = detail["last_dead_letter"]
    assert isinstance(letter, dict)
    assert (letter["lead_id"], letter["offset"]) == (rotten, sent.offset)
    for port in (worker.web_port, worker.metrics_port):
        status, _, body = call(f"http://127.0.0.1:{port}/health")
        assert status == 200
        assert json.loads(body)["last_dead_letter"]["kind"] == "corrupt_state"
        assert rotten.encode() not in body
        assert b'"offset"' not in body
        assert b'"reason"' not in body
        assert b'"error"' not in body
