"""The collector's /metrics and /ready over HTTP, over a `MemorySink`."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from leadpulse.streams.collector.sink import MemorySink
from tests.component.test_collector_http import (
    WEB,
    collector_of,
    post,
    serving,
    settings,
    track,
)


async def scrape(
    client: TestClient[Any, Any],
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with client.get("/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    samples = {}
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("leadpulse_collector_"), family.name
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return samples


async def test_requests_events_rejects_and_latency_are_counted() -> None:
    sink = MemorySink()
    collector = collector_of(settings(), sink)
    async with serving(collector) as client, serving(collector, ops=True) as ops:
        batch = {"batch": [{**track(1), "userId": "lead-1"}, {**track(2), "userId": "lead-2"}]}
        assert (await post(client, "/v1/batch", batch, headers=WEB))[0] == 200
        assert (await post(client, "/v1/track", {**track(3)}, headers=WEB))[0] == 400
        assert (await post(client, "/v1/track", {**track(4), "userId": "u"}, headers=WEB))[0] == 200
        assert (await post(client, "/v1/nothing", {}, headers=WEB))[0] == 404
        sink.unavailable = True
        assert (await post(client, "/v1/track", {**track(5), "userId": "u"}, headers=WEB))[0] == 503
        samples = await scrape(ops)

    def requests(endpoint: str, status: str) -> float:
        key = ("leadpulse_collector_requests_total", (("endpoint", endpoint), ("status", status)))
        return samples.get(key, 0.0)

    assert requests("batch", "200") == 1
    assert requests("call", "200") == 1
    assert requests("call", "400") == 1
    assert requests("call", "503") == 1
    assert requests("other", "404") == 1
    assert samples["leadpulse_collector_events_accepted_total", ()] == 3
    assert samples["leadpulse_collector_messages_rejected_total", ()] == 1
    count = samples["leadpulse_collector_request_seconds_count", (("endpoint", "call"),)]
    assert count == 3
    bucket = ("leadpulse_collector_request_seconds_bucket", (("endpoint", "batch"), ("le", "+Inf")))
    assert samples[bucket] == 1


async def test_ready_follows_the_broker_connection_and_health_stays_200() -> None:
    sink = MemorySink()
    async with serving(collector_of(settings(), sink)) as client:
        async with client.get("/ready") as response:
            assert response.status == 200
        sink.unavailable = True
        async with client.get("/ready") as response:
            assert response.status == 503
            body = await response.json()
            assert body["code"] == "unavailable"
        async with client.get("/health") as response:
            assert response.status == 200
