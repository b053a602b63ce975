"""The collector process: its parts built from the settings, served until told to stop.

The public port serves the Segment API with /health and /ready; /metrics and
/stats are on the metrics port (`LEADPULSE_COLLECTOR_METRICS_PORT`), so what
a site's visitors can reach tells nothing about the traffic.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

from aiohttp import web

from leadpulse.scoring import ScoringModel
from leadpulse.streams.collector.app import RUNNER_OPTIONS, Collector, CollectorConfig
from leadpulse.streams.collector.auth import WriteKeys, new_write_key
from leadpulse.streams.collector.sink import KafkaSink
from leadpulse.streams.http.probes import add_probes, probe_application, start_site
from leadpulse.streams.processes.lifecycle import ShutdownDeadline, new_event_loop, stop_on_signals
from leadpulse.streams.processes.topics import create_topics_if_reachable
from leadpulse.streams.settings import Settings

log = logging.getLogger("leadpulse.collector")

NO_KEYS = (
    "leadpulse collect: no write keys configured. Set LEADPULSE_WRITE_KEYS to SOURCE=KEY "
    "pairs, e.g.\n  export LEADPULSE_WRITE_KEYS=website={key}\n"
    "(a fresh key: `leadpulse collect --new-key`)"
)


def run_collector(
    settings: Settings, model: ScoringModel, *, create_topics: bool = False, loglevel: str = "info"
) -> int:
    """Serve until SIGINT/SIGTERM, then answer the requests in flight and flush; exit status."""
    if not settings.write_key_sources:
        raise SystemExit(NO_KEYS.format(key=new_write_key()))
    logging.basicConfig(
        level=loglevel.upper(),
        format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
    )
    if create_topics:
        create_topics_if_reachable(settings)
    loop = new_event_loop()
    try:
        loop.run_until_complete(serve_collector(settings, model))
    finally:
        loop.close()
    return 0


def build_collector(settings: Settings, model: ScoringModel) -> tuple[Collector, KafkaSink]:
    """The request handlers over a Kafka sink (not connected yet)."""
    sink = KafkaSink(settings)
    collector = Collector(
        CollectorConfig.from_settings(settings, model.event_names),
        WriteKeys(settings.write_key_sources, settings.sales_source_names),
        sink,
        connected=lambda: sink.connected,
    )
    return collector, sink


def public_application(collector: Collector) -> web.Application:
    """The ingest port: the Segment API, /health and /ready, nothing else."""
    return add_probes(collector.application(), health=collector.health, ready=collector.ready)


def ops_application(collector: Collector) -> web.Application:
    """The metrics port: /health, /ready, /metrics and /stats."""
    return probe_application(
        health=collector.health,
        ready=collector.ready,
        scrape=collector.scrape,
        extra={"/stats": collector.counts},
    )


async def serve_collector(settings: Settings, model: ScoringModel) -> None:
    """Build, connect (or not: 503 until Kafka answers), serve until a signal, close."""
    collector, sink = build_collector(settings, model)
    stop = asyncio.Event()
    stop_on_signals(stop.set, ShutdownDeadline(settings.shutdown_timeout, "collector"))
    await sink.start()
    url = f"http://{settings.collector_host}:{settings.collector_port}"
    metrics = settings.collector_metrics_address
    metrics_url = "off" if metrics is None else "http://{}:{}".format(*metrics)
    sources = ", ".join(f"{s.name} (sales)" if s.sales else s.name for s in collector.keys.sources)

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
        where = url if metrics is None else f"{url} or {metrics_url}"
        raise SystemExit(f"leadpulse collect: cannot listen on {where}: {error}") from None
    finally:
        await sink.close()
        log.info("collector stopped")


async def serve(
    collector: Collector,
    host: str,
    port: int,
    stop: asyncio.Event,
    started: Callable[[], None] | None = None,
    *,
    metrics: tuple[str, int] | None = None,
) -> None:
    """Serve until `stop` is set; then finish the requests in flight (`RUNNER_OPTIONS`).

    `metrics` (host, port) also serves `ops_application` there. Once
    listening, the start-up heap is frozen out of the garbage collector (as
    the worker's `freeze_heap`): every request's objects that outlive a few
    young collections while Kafka acknowledges push a full collection about
    once a second, and each walked the whole heap (aiohttp, aiokafka,
    pydantic, the model): 17-34 ms stalls at 5,000 events/s.
    """
    app = public_application(collector)
    runner = web.AppRunner(app, shutdown_timeout=10.0, **RUNNER_OPTIONS)
    await runner.setup()
    ops: web.AppRunner | None = None
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        if metrics is not None:
            ops = await start_site(ops_application(collector), *metrics)
        gc.collect()
        gc.freeze()
        if started is not None:
            started()
        await stop.wait()
    finally:
        await runner.cleanup()
        if ops is not None:
            await ops.cleanup()
