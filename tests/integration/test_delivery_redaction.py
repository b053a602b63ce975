"""A destination's URL path and query and its secret never reach a log line or a DLQ reason.

The deliverer runs in this process (caplog sees every log record) against a
real job store on the session's redis-server and a real receiver on 127.0.0.1:
a success, an HTTP failure, a dead letter, a refused address (a name that
resolves, by a table, to a public and a private address) and a failed
connection, each to a URL whose path or query is the secret.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from leadpulse.schemas.delivery import DeliveryFailure
from leadpulse.streams.delivery.config import parse_destinations
from leadpulse.streams.delivery.deliverer import Deliverer
from leadpulse.streams.delivery.jobs import JobStore
from leadpulse.streams.delivery.outbound import new_session
from leadpulse.streams.dev.devstack import free_port
from leadpulse.streams.kafka.publisher import Outgoing
from leadpulse.streams.observability.metrics import DeliveryMetrics
from leadpulse.streams.store.redis import keys
from tests.dns_table import DnsTable
from tests.integration.delivery_harness import SECRET, always, ok, receiver, sample, wait_until

SLACK_PATH = "/services/T000/B000/XXXXSECRET"
SECRETS = ("XXXXSECRET", "/services/", "token=abc", SECRET, SECRET.removeprefix("whsec_"))


async def test_no_log_line_or_dead_letter_shows_a_path_query_or_secret(
    redis_client: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    run = uuid.uuid4().hex[:8]
    closed = free_port()
    with receiver({SLACK_PATH: ok, "/fail": always(500)}) as server:
        text = f"""
allow_hosts: [127.0.0.1, crm.example.com]
destinations:
  - {{name: slack-{run}, url: '{server.url(SLACK_PATH)}', format: slack}}
  - {{name: failing-{run}, url: '{server.url("/fail?token=abc")}', secret: {SECRET},
      retry_schedule: [0s, 1h]}}
  - {{name: dead-{run}, url: '{server.url("/fail?token=abc")}', secret: {SECRET},
      retry_schedule: [0s]}}
  - {{name: refused-{run}, url: 'https://crm.example.com{SLACK_PATH}?token=abc',
      secret: {SECRET}, retry_schedule: [0s, 1s, 1s, 1s]}}
  - {{name: closed-{run}, url: 'http://127.0.0.1:{closed}{SLACK_PATH}?token=abc',
      secret: {SECRET}, retry_schedule: [0s, 1h]}}
"""
        destinations = parse_destinations(text, "dest.yaml")
        shown = [(repr(d), str(d)) for d in destinations.destinations]
        assert shown[0] == (
            f"Destination(name='slack-{run}', origin='http://127.0.0.1:{server.port}', "
            "format='slack')",
            f"slack-{run} (http://127.0.0.1:{server.port})",
        )
        dead_letters: list[DeliveryFailure] = []

        async def publish(messages: Sequence[Outgoing]) -> None:
            dead_letters.extend(DeliveryFailure.model_validate_json(m.value) for m in messages)

        store = JobStore(redis_client, 60.0)
        dns = DnsTable({"crm.example.com": ["8.8.8.8", "10.0.0.5"]})
        session = new_session(destinations.allow_hosts, 8, dns)
        deliverer = Deliverer(
            destinations,
            store,
            publish,
            "deliveries-dlq",
            DeliveryMetrics(CollectorRegistry()),
            session=session,
        )
        handoff = sample()
        caplog.set_level(logging.DEBUG)
        stop = asyncio.Event()
        running = asyncio.create_task(deliverer.run(stop))
        try:
            assert await deliverer.accept([("handoffs", handoff, time.time())]) == 5

            def done() -> bool:
                return (
                    len(dead_letters) == 2
                    and server.count(SLACK_PATH, handoff.handoff_id) == 1
                    and server.count("/fail", handoff.handoff_id) == 2
                    and f"destination closed-{run}, message" in caplog.text
                )

            await asyncio.to_thread(wait_until, done, 20, "an attempt to every destination")
        finally:
            stop.set()
            await running
            await session.close()
            for d in destinations.destinations:  # the 1 h retries left behind
                await redis_client.delete(
                    keys.DEFAULT.delivery_due(d.name), keys.DEFAULT.delivery_jobs(d.name)
                )

    by_destination = {f.destination: f for f in dead_letters}
    assert sorted(by_destination) == [f"dead-{run}", f"refused-{run}"]
    refused = by_destination[f"refused-{run}"]
    assert len(refused.attempts) == 1  # permanent: not retried on its 4-attempt schedule
    assert refused.reason.startswith(
        "refused: host 'crm.example.com' resolves to 10.0.0.5 (private, not globally routable)"
    )
    assert by_destination[f"dead-{run}"].reason == "1 attempts failed"
    assert f"destination failing-{run}, message {handoff.handoff_id}: attempt 1 failed" in (
        caplog.text
    )
    assert f"destination refused-{run}, message {handoff.handoff_id}: dead-lettered" in (
        caplog.text
    )
    assert f"Cannot connect to host 127.0.0.1:{closed}" in caplog.text
    texts = [caplog.text, *(f.model_dump_json() for f in dead_letters), *(a + b for a, b in shown)]
    for secret in SECRETS:
        assert not [t for t in texts if secret in t], secret
