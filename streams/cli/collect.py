"""`leadpulse collect`: the Segment-compatible HTTP collector, in its own process."""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import secrets

from streams.cli.common import EXIT_OK, load_scoring_model, load_settings
from streams.processes.lifecycle import ShutdownDeadline, stop_on_signals
from streams.settings import Settings

log = logging.getLogger("leadpulse.collector")

NO_KEYS = (
    "leadpulse collect: no write keys configured. Set LEADPULSE_WRITE_KEYS to SOURCE=KEY "
    "pairs, e.g.\n  export LEADPULSE_WRITE_KEYS=website={key}\n"
    "(a fresh key: `leadpulse collect --new-key`)"
)


def new_write_key() -> str:
    return "wk_" + secrets.token_urlsafe(24)


def cmd_collect(args: argparse.Namespace) -> int:
    if args.new_key:
        print(new_write_key())
        return EXIT_OK
    settings = load_settings(
        collector_host=args.host,
        collector_port=args.port,
        collector_metrics_port=args.metrics_port,
        model_file=args.model,
    )
    if not settings.write_key_sources:
        raise SystemExit(NO_KEYS.format(key=new_write_key()))
    logging.basicConfig(
        level=args.loglevel.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    if args.create_topics:
        create_topics_if_reachable(settings)
    from streams.processes.lifecycle import new_event_loop

    loop = new_event_loop()
    try:
        loop.run_until_complete(run_collector(settings))
    finally:
        loop.close()
    return EXIT_OK


def create_topics_if_reachable(settings: Settings) -> None:
    """Create missing topics; a broker that is down now is not a reason to stay down."""
    from streams.kafka.topics import ensure_topics

    # kafka-python logs every failed connection attempt at ERROR: one warning says it here
    kafka_log = logging.getLogger("kafka")
    level = kafka_log.level
    kafka_log.setLevel(logging.CRITICAL)
    # kafka-python's admin client sets an event loop on its thread: keep it off this one
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(ensure_topics, settings).result()
        except Exception as error:  # noqa: BLE001 -- requests answer 503 until Kafka is back
            log.warning("could not check the topics (%s); starting anyway", error)
        finally:
            kafka_log.setLevel(level)


async def run_collector(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM, then answer the requests in flight and flush."""
    from streams.collector.app import Collector, CollectorConfig, serve
    from streams.collector.auth import WriteKeys
    from streams.collector.sink import KafkaSink

    model = load_scoring_model(settings)
    keys = WriteKeys(settings.write_key_sources, settings.sales_source_names)
    sink = KafkaSink(settings)
    collector = Collector(
        CollectorConfig.from_settings(settings, model.event_names),
        keys,
        sink,
        connected=lambda: sink.connected,
    )
    stop = asyncio.Event()
    stop_on_signals(stop.set, ShutdownDeadline(settings.shutdown_timeout, "collector"))
    await sink.start()
    url = f"http://{settings.collector_host}:{settings.collector_port}"
    metrics = settings.collector_metrics_address
    metrics_url = "off" if metrics is None else "http://{}:{}".format(*metrics)
    sources = ", ".join(f"{s.name} (sales)" if s.sales else s.name for s in keys.sources)

    def started() -> None:
        broker = "connected" if sink.connected else "unreachable for now (answering 503)"
        log.info(
            "collector on %s -> %s (Kafka %s); sources: %s; /metrics and /stats on %s",
            url,
            settings.events_topic,
            broker,
            sources,
            metrics_url,
        )

    try:
        await serve(
            collector,
            settings.collector_host,
            settings.collector_port,
            stop,
            started,
            metrics=metrics,
        )
    except OSError as error:
        where = f"{url} or {metrics_url}" if metrics is not None else url
        raise SystemExit(f"leadpulse collect: cannot listen on {where}: {error}") from None
    finally:
        await sink.close()
        log.info("collector stopped")
