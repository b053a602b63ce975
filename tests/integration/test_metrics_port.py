"""`LEADPULSE_METRICS_PORT`: /health, /ready and /metrics on a port of their own."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from leadpulse.streams.dev.devstack import DevStack, free_port
from leadpulse.streams.settings import Settings
from tests.integration.harness import READ_TOKEN, port_open, start_worker, worker_settings

pytestmark = pytest.mark.integration


def get(url: str, token: str | None = None) -> tuple[int, str, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status), r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.headers.get("Content-Type", ""), error.read()


def test_the_probes_are_served_on_the_metrics_port_too(stack: DevStack, tmp_path: Path) -> None:
    settings = worker_settings(stack, tmp_path, partitions=1)
    settings = settings.replace(metrics_port=free_port())
    worker = start_worker(settings, tmp_path / "worker.log")
    try:
        probes = f"http://127.0.0.1:{settings.metrics_port}"
        # the probe server is an app task: it may open its port a moment after the
        # consumer got its partitions (which start_worker waited for)
        deadline = time.monotonic() + 30
        while not port_open(settings.metrics_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        status, kind, body = get(f"{probes}/health")
        assert (status, kind.split(";")[0]) == (200, "application/json"), body
        status, kind, body = get(f"{probes}/metrics")
        assert status == 200
        assert kind.startswith("text/plain; version=")
        names = {family.name for family in text_string_to_metric_families(body.decode())}
        assert "leadpulse_events_consumed" in names  # counters are listed without _total
        assert get(f"{probes}/ready")[0] in (200, 503)
        # only the probes: the API and the pages are not on this port, token or not
        for path in ("/stats", "/ui", "/leads/x", "/hot"):
            assert get(probes + path, READ_TOKEN)[0] == 404, path
        # and the web port still serves the probes, openly
        assert get(f"http://127.0.0.1:{settings.web_port}/metrics")[0] == 200
    finally:
        worker.stop()
    assert worker.process is not None
    assert worker.process.returncode == 0, worker.log_tail()
    with pytest.raises(urllib.error.URLError):  # the probe server stopped with the worker
        urllib.request.urlopen(f"http://127.0.0.1:{settings.metrics_port}/health", timeout=2)


def test_the_metrics_port_must_differ_from_the_web_port() -> None:
    with pytest.raises(ValueError, match="must differ from LEADPULSE_WEB_PORT"):
        Settings(web_port=7000, metrics_port=7000)
