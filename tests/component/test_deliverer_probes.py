"""The deliverer's /health, /ready and /metrics come from the one probes factory.

Its open /ready names a failed dependency by kind, never by the error's text
(which can carry a host, a port or a password in a URL).
"""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from leadpulse.streams.delivery.config import parse_destinations
from leadpulse.streams.delivery.service import DeliverService
from leadpulse.streams.http.probes import probe_application
from leadpulse.streams.settings import Settings

DESTINATIONS = """
allow_hosts: [crm.example.com]
destinations:
  - name: crm
    url: https://crm.example.com/hook
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
"""


class RefusingRedis:
    async def ping(self) -> bool:
        raise ConnectionError("Error connecting to redis://:s3cret@10.0.0.7:6379. Refused.")


async def test_the_probes_of_a_deliverer_whose_redis_refuses() -> None:
    service = DeliverService(Settings(), parse_destinations(DESTINATIONS, "d.yaml"), 0)
    service.redis = RefusingRedis()
    app = probe_application(
        health=service.health_report, ready=service.readiness_report, scrape=service.scrape
    )
    async with TestClient(TestServer(app)) as client:
        ready = await client.get("/ready")
        assert ready.status == 503
        assert await ready.json() == {
            "ready": False,
            "reasons": ["no partitions assigned", "redis: ConnectionError"],
            "assigned_partitions": 0,
        }
        health = await client.get("/health")
        assert health.status == 200
        assert (await health.json())["healthy"] is True
        metrics = await client.get("/metrics")
        assert metrics.status == 200
        assert "leadpulse_deliveries_total" in await metrics.text()
