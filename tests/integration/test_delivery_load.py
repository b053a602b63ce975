"""Many attempts in flight and few Redis connections: every one finishes, none fails on the pool.

Regression: with redis-py's default pool a finished attempt's Redis call failed
with "Too many connections" once more attempts ended at once than the pool
had connections, and the job waited out its lease (timeout + 10 s).
"""

from __future__ import annotations

from pathlib import Path

from leadpulse.streams.dev.devstack import DevStack
from tests.integration.delivery_harness import (
    SECRET,
    deliver_settings,
    produce_handoffs,
    receiver,
    sample,
    sleeps,
    start_deliverer,
    wait_until,
    write_destinations,
)

HANDOFFS = 300


def test_more_attempts_in_flight_than_redis_connections(stack: DevStack, tmp_path: Path) -> None:
    settings = deliver_settings(stack, tmp_path, redis_max_connections=4)
    with receiver({"/hook": sleeps(0.02)}) as server:
        write_destinations(
            settings,
            [{"name": "crm", "url": server.url("/hook"), "secret": SECRET, "concurrency": 64}],
        )
        deliverer = start_deliverer(settings, tmp_path / "deliver.log")
        try:
            handoffs = [sample() for _ in range(HANDOFFS)]
            produce_handoffs(settings, handoffs)
            ids = {h.handoff_id for h in handoffs}
            wait_until(lambda: {r.webhook_id for r in server.at("/hook")} >= ids, 60, "all")
            received = server.at("/hook")
            assert len(received) == HANDOFFS  # each once: no attempt failed and came back
            assert all(r.verified for r in received)
        finally:
            deliverer.stop()
    log = (tmp_path / "deliver.log").read_text()
    assert "[WARNING]" not in log, log[-2000:]
