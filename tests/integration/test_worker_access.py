"""A real worker refuses every route but the probes without a token, on both of its ports.

The routes are the ones its aiohttp router lists: a worker built in this
process from the same settings (never started) lists them; the worker under
test, a `leadpulse worker` child on the embedded stack, answers for them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from scoring import parse_model
from streams.dev.devstack import DevStack, free_port
from streams.settings import Settings
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
