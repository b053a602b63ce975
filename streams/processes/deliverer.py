"""The deliverer process: destinations loaded, then served, tested or re-enabled.

Everything `leadpulse deliver` does past parsing its flags: the destinations
file checked before anything starts, the Redis job store for `--enable`, the
service and its run loop until SIGINT/SIGTERM (within the shutdown deadline),
and the exit status of each.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from leadpulse.streams.delivery.config import Destinations, DestinationsError, load_destinations
from leadpulse.streams.processes.lifecycle import (
    EXIT_FAILED,
    EXIT_OK,
    ShutdownDeadline,
    new_event_loop,
    stop_on_signals,
)
from leadpulse.streams.processes.topics import create_topics_if_reachable
from leadpulse.streams.settings import Settings

if TYPE_CHECKING:
    from leadpulse.streams.delivery.service import DeliverClients

log = logging.getLogger("leadpulse.deliver")

NO_FILE = (
    "leadpulse deliver: no destinations file. Pass --destinations FILE or set "
    "LEADPULSE_DESTINATIONS_FILE (see README, 'Delivering handoffs')."
)


def load_checked_destinations(settings: Settings) -> Destinations:
    """The destinations file, or exit naming every problem (`dev` checks it this way too)."""
    if settings.destinations_file is None:
        raise SystemExit(NO_FILE)
    try:
        return load_destinations(settings.destinations_file)
    except DestinationsError as error:
        raise SystemExit(
            "leadpulse deliver: destinations file rejected:\n" + "\n".join(error.issues)
        ) from None


def run_deliverer(
    settings: Settings,
    *,
    test: str | None = None,
    enable: str | None = None,
    create_topics: bool = False,
    loglevel: str = "info",
) -> int:
    """Send one sample to `test`, re-enable `enable`, or else serve until a signal; status."""
    destinations = load_checked_destinations(settings)
    logging.basicConfig(
        level=loglevel.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    loop = new_event_loop()
    try:
        if test:
            return loop.run_until_complete(send_sample(destinations, test))
        if enable:
            return loop.run_until_complete(enable_destination(settings, destinations, enable))
        if create_topics:
            create_topics_if_reachable(settings)
        loop.run_until_complete(serve_deliverer(settings, destinations))
    finally:
        loop.close()
    return EXIT_OK


def _known(destinations: Destinations, name: str) -> None:
    try:
        destinations.named(name)
    except KeyError as error:
        raise SystemExit(f"leadpulse deliver: {error.args[0]}") from None


async def send_sample(destinations: Destinations, name: str) -> int:
    """One signed sample handoff to `name`; `EXIT_OK` only on a 2xx."""
    from leadpulse.streams.delivery.service import describe_answer, send_test

    _known(destinations, name)
    answer, sample = await send_test(destinations, name)
    print(f"sent sample handoff {sample.handoff_id} to {name}: {describe_answer(answer)}")
    return EXIT_OK if answer.ok else EXIT_FAILED


async def enable_destination(settings: Settings, destinations: Destinations, name: str) -> int:
    """Clear the flag a 410 set in Redis: `name`'s parked messages go out again."""
    from leadpulse.streams.delivery.jobs import JobStore
    from leadpulse.streams.store.redis.keys import Keys
    from leadpulse.streams.store.redis.store import connect

    _known(destinations, name)
    client = connect(settings)
    try:
        jobs = JobStore(client, settings.deliver_dedupe_retention, Keys(settings.redis_prefix))
        was = await jobs.enable(name)
    finally:
        await client.aclose()
    print(f"destination {name}: " + ("enabled again" if was else "was not disabled"))
    return EXIT_OK


async def serve_deliverer(settings: Settings, destinations: Destinations) -> None:
    """Run the service until SIGINT/SIGTERM; an unreachable port or Kafka exits naming it."""
    from leadpulse.streams.delivery.service import DeliverService
    from leadpulse.streams.http.probes import probe_application

    stop = asyncio.Event()
    stop_on_signals(stop.set, ShutdownDeadline(settings.shutdown_timeout, "deliverer"))
    service = DeliverService(settings, destinations, settings.deliver_web_port)
    probes = probe_application(
        health=service.health_report, ready=service.readiness_report, scrape=service.scrape
    )
    try:
        await service.run(stop, probes, deliverer_clients(settings, service.topics()))
    except OSError as error:
        raise SystemExit(f"leadpulse deliver: {error}") from None
    except Exception as error:
        if type(error).__module__.startswith("aiokafka"):
            raise SystemExit(
                f"leadpulse deliver: cannot reach Kafka at {settings.broker}: {error}"
            ) from None
        raise
    log.info("deliverer stopped")


def deliverer_clients(settings: Settings, topics: Iterable[str]) -> DeliverClients:
    """The deliverer's connections: a Redis client that waits for a free connection, an
    `acks=all` producer (for the deliveries DLQ), and a consumer of its own group that
    commits by hand after a batch's jobs are in Redis."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    from leadpulse.streams.delivery.service import DeliverClients, blocking_client
    from leadpulse.streams.kafka.security import aiokafka_options
    from leadpulse.streams.kafka.transport import fetch_max_wait_ms

    session_ms = int(settings.session_timeout * 1000)
    return DeliverClients(
        redis=blocking_client(settings),
        producer=AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers,
            client_id="leadpulse-deliver",
            acks="all",
            enable_idempotence=False,  # Tansu refuses InitProducerId
            **aiokafka_options(settings),
        ),
        consumer=AIOKafkaConsumer(
            *topics,
            bootstrap_servers=settings.bootstrap_servers,
            group_id=settings.deliver_group_id,
            client_id="leadpulse-deliver",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            session_timeout_ms=session_ms,
            fetch_max_wait_ms=fetch_max_wait_ms(settings),  # Tansu answers an empty fetch only then
            heartbeat_interval_ms=max(100, session_ms // 3),
            rebalance_timeout_ms=max(session_ms, 10_000),
            **aiokafka_options(settings),
        ),
    )
