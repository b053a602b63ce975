"""`leadpulse deliver`: handoffs to webhooks, Slack and CRMs, in a process of its own."""

from __future__ import annotations

import argparse
import asyncio
import logging

from leadpulse.streams.cli.common import EXIT_FAILED, EXIT_OK, load_settings
from leadpulse.streams.delivery.config import Destinations, DestinationsError, load_destinations
from leadpulse.streams.processes.lifecycle import ShutdownDeadline, stop_on_signals
from leadpulse.streams.settings import Settings

log = logging.getLogger("leadpulse.deliver")

NO_FILE = (
    "leadpulse deliver: no destinations file. Pass --destinations FILE or set "
    "LEADPULSE_DESTINATIONS_FILE (see README, 'Delivering handoffs')."
)


def load(settings: Settings) -> Destinations:
    if settings.destinations_file is None:
        raise SystemExit(NO_FILE)
    try:
        return load_destinations(settings.destinations_file)
    except DestinationsError as error:
        raise SystemExit(
            "leadpulse deliver: destinations file rejected:\n" + "\n".join(error.issues)
        ) from None


def cmd_deliver(args: argparse.Namespace) -> int:
    settings = load_settings(destinations_file=args.destinations, deliver_web_port=args.web_port)
    destinations = load(settings)
    logging.basicConfig(
        level=args.loglevel.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    from leadpulse.streams.processes.lifecycle import new_event_loop

    loop = new_event_loop()
    try:
        if args.test:
            return loop.run_until_complete(_test(destinations, args.test))
        if args.enable:
            return loop.run_until_complete(_enable(settings, destinations, args.enable))
        if args.create_topics:
            from leadpulse.streams.cli.collect import create_topics_if_reachable

            create_topics_if_reachable(settings)
        loop.run_until_complete(_serve(settings, destinations))
    finally:
        loop.close()
    return EXIT_OK


async def _test(destinations: Destinations, name: str) -> int:
    from leadpulse.streams.delivery.service import describe_answer, send_test

    try:
        destinations.named(name)
    except KeyError as error:
        raise SystemExit(f"leadpulse deliver: {error.args[0]}") from None
    answer, sample = await send_test(destinations, name)
    print(f"sent sample handoff {sample.handoff_id} to {name}: {describe_answer(answer)}")
    return EXIT_OK if answer.ok else EXIT_FAILED


async def _enable(settings: Settings, destinations: Destinations, name: str) -> int:
    from leadpulse.streams.delivery.jobs import JobStore
    from leadpulse.streams.store.redis.keys import Keys
    from leadpulse.streams.store.redis.store import connect

    try:
        destinations.named(name)
    except KeyError as error:
        raise SystemExit(f"leadpulse deliver: {error.args[0]}") from None
    client = connect(settings)
    try:
        jobs = JobStore(client, settings.deliver_dedupe_retention, Keys(settings.redis_prefix))
        was = await jobs.enable(name)
    finally:
        await client.aclose()
    print(f"destination {name}: " + ("enabled again" if was else "was not disabled"))
    return EXIT_OK


async def _serve(settings: Settings, destinations: Destinations) -> None:
    from leadpulse.streams.delivery.service import DeliverService

    stop = asyncio.Event()
    stop_on_signals(stop.set, ShutdownDeadline(settings.shutdown_timeout, "deliverer"))
    service = DeliverService(settings, destinations, settings.deliver_web_port)
    try:
        await service.run(stop)
    except OSError as error:
        raise SystemExit(f"leadpulse deliver: {error}") from None
    except Exception as error:
        if type(error).__module__.startswith("aiokafka"):
            raise SystemExit(
                f"leadpulse deliver: cannot reach Kafka at {settings.broker}: {error}"
            ) from None
        raise
    log.info("deliverer stopped")
