"""The Faust app: the scoring agent, the decay sweeper, outbox replay, HTTP pages.

Agents stay thin: they turn Kafka records into `Record`s and hand batches to
the `Processor`, which owns decode -> apply -> persist -> publish. Transient
failures of Redis or Kafka pause the agent and retry the same batch
(idempotent), so offsets are committed only after a batch was fully
persisted and published; permanent ones are dead-lettered and the agent
goes on.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Final

import faust
from faust.types import TP
from prometheus_client import CollectorRegistry

from schemas import REPLAY_HEADER
from scoring import ScoringModel
from streams.errors import FatalError
from streams.http import auth
from streams.http.auth import ApiTokens
from streams.http.handoffs import HandoffFeed
from streams.kafka.publisher import FaustPublisher, Publisher
from streams.kafka.security import faust_credentials
from streams.kafka.transport import (
    aiokafka_producer,
    consumer_transport,
    fetch_max_wait_ms,
    raw_topic,
)
from streams.observability.health import Health, readiness
from streams.observability.metrics import (
    CONTENT_TYPE_LATEST,
    MeasuredStore,
    WorkerMetrics,
    exposition,
)
from streams.observability.stats import Totals
from streams.pipeline.processor import Processor
from streams.pipeline.records import Record, Topics
from streams.pipeline.retry import RetryPolicy
from streams.pipeline.runtime import Runtime
from streams.settings import Settings
from streams.store import LeadStore

log = logging.getLogger("leadpulse")

READY_TIMEOUT = 2.0
"""Seconds /ready waits for Redis' PING and the broker's metadata answer."""


def freeze_heap() -> None:
    """Leave the start-up heap (Faust, aiokafka, pydantic, the model) out of GC scans.

    Scoring allocates many short-lived objects, and every full collection
    walked the whole heap: in a sweep profile those collections showed as
    30-ms stalls inside unrelated calls. Called once the worker is built.
    """
    gc.collect()
    gc.freeze()


def faust_settings(settings: Settings) -> dict[str, Any]:
    """The `faust.App` keyword arguments of a worker (the benchmarks reuse them)."""
    return {
        "broker": settings.broker,
        "broker_credentials": faust_credentials(settings),
        "store": "memory://",
        "datadir": str(settings.data_dir),
        "web_enabled": True,
        "web_host": settings.web_host,
        "web_port": settings.web_port,
        "topic_partitions": settings.partitions,
        "topic_replication_factor": settings.replication_factor,
        "topic_disable_leader": True,
        "broker_session_timeout": settings.session_timeout,
        "broker_heartbeat_interval": min(settings.session_timeout / 4, 3.0),
        "broker_rebalance_timeout": max(settings.session_timeout * 2, 10.0),
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        "producer_max_request_size": settings.producer_max_request_size,
        "stream_wait_empty": False,
    }


@dataclass
class Pipeline:
    """The Faust app and the parts its agents use, built from frozen settings."""

    app: faust.App
    processor: Processor
    store: LeadStore
    totals: Totals
    health: Health
    runtime: Runtime
    metrics: WorkerMetrics
    agent: Any = field(default=None)
    """The scoring agent, for `agent.test_context()` in component tests."""


def build(
    settings: Settings,
    model: ScoringModel,
    *,
    store: LeadStore,
    publisher: Publisher | None = None,
    totals: Totals | None = None,
    health: Health | None = None,
    clock: Callable[[], float] = time.time,
    on_fatal: Callable[[FatalError], None] | None = None,
    registry: CollectorRegistry | None = None,
) -> Pipeline:
    """Wire one worker: the scoring agent, the sweeper timer, outbox replay, pages.

    The store, the publisher (default: the app's own Kafka producer) and the
    counters are passed in, so tests hand over fakes instead of patching.
    `on_fatal` is called when the process cannot go on (default: logged; the
    worker process passes one that stops it for its supervisor to restart).
    The metrics go to `registry` (default: a registry of this pipeline's own,
    never the process-wide default one).
    """
    app = faust.App(settings.app_id, **faust_settings(settings))
    topic = settings.events_topic
    events = raw_topic(app, topic, settings.partitions)
    health = health or Health(unhealthy_after=settings.unhealthy_after, clock=clock)
    metrics = WorkerMetrics(registry if registry is not None else CollectorRegistry())
    measured = MeasuredStore(store, metrics)
    processor = Processor(
        measured,
        publisher if publisher is not None else FaustPublisher(app),
        model,
        topics=Topics(
            handoffs=settings.handoffs_topic,
            transitions=settings.transitions_topic,
            dlq=settings.dlq_topic,
        ),
        clock=clock,
        sweep_limit=settings.sweep_limit,
        health=health,
        max_message=settings.producer_max_request_size,
        max_future_skew=settings.max_future_skew,
        dead_lettered=metrics.dead_lettered,
    )
    totals = totals or Totals()
    runtime = Runtime(
        processor,
        measured,
        topic,
        totals=totals,
        health=health,
        stopped=lambda: bool(app.should_stop),
        highwater=functools.partial(_highwater, app, topic),
        clock=clock,
        on_fatal=on_fatal or _logged,
        owns=functools.partial(_owns, app, topic),
        metrics=metrics,
        policy=RetryPolicy(max_unknown_retries=settings.max_unknown_retries),
        watermark_stale_after=settings.watermark_stale_after,
    )
    pipeline = Pipeline(
        app=app,
        processor=processor,
        store=store,
        totals=totals,
        health=health,
        runtime=runtime,
        metrics=metrics,
    )
    app.transport = consumer_transport(app, fetch_max_wait_ms(settings), runtime.after_seek)

    @app.agent(events, concurrency=1, name="leadpulse.score")
    async def score(stream: Any) -> None:
        async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
            await runtime.score(
                [
                    Record(
                        key=e.message.key,
                        value=e.message.value,
                        topic=e.message.topic,
                        partition=e.message.partition,
                        offset=e.message.offset,
                        timestamp=e.message.timestamp,
                        replay_of=_replay_of(e.message.headers),
                    )
                    for e in batch
                ]
            )

    @app.timer(interval=settings.sweep_interval, name="leadpulse.sweep")
    async def sweep() -> None:
        await runtime.sweep()

    tokens = read_routes(app, settings, model, store, clock)
    api = functools.partial(guard_api, tokens)

    @app.page("/stats")
    @api()
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json(
            {
                **pipeline.totals.as_dict(),
                "assigned_partitions": _assigned(app),
                "sweep_bound": runtime.sweep_bound,
            }
        )

    probe_routes(app, pipeline, settings)
    pipeline.agent = score
    return pipeline


def probe_routes(app: faust.App, pipeline: Pipeline, settings: Settings) -> None:
    """/health, /ready and /metrics: open, on the web port and on `metrics_port` if set.

    A separate port lets a scraper or an orchestrator's probes reach them on
    another interface (`metrics_host`) while the API and the pages stay where
    they are.
    """
    store, runtime = pipeline.store, pipeline.runtime

    async def health() -> tuple[int, dict[str, Any]]:
        body = {**pipeline.health.as_dict(), "assigned_partitions": _assigned(app)}
        return (200 if body["healthy"] else 503), body

    async def ready() -> tuple[int, dict[str, Any]]:
        redis_error, broker_error = await asyncio.gather(
            _failure(store.ping()), _failure(_broker_metadata(app))
        )
        body = readiness(
            assigned=_assigned(app),
            redis_error=redis_error,
            broker_error=broker_error,
            health=pipeline.health,
            lagging=runtime.lagging(),
            last_progress=pipeline.totals.last_batch_at or runtime.assigned_at,
            now=time.time(),
        )
        return (200 if body["ready"] else 503), body

    async def scrape() -> bytes:
        await runtime.observe()
        return exposition(pipeline.metrics.registry)

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        status, body = await health()
        return web.json(body, status=status)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        status, body = await ready()
        return web.json(body, status=status)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a content_type with parameters: set the header itself
        return web.bytes(await scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    if settings.metrics_port is None:
        return
    host = settings.metrics_host or settings.web_host
    port = settings.metrics_port
    runners: list[Any] = []

    async def stop_probes() -> None:
        while runners:
            await runners.pop().cleanup()

    _on_web_shutdown(app, stop_probes)  # now: the signal list is frozen once serving

    @app.task
    async def serve_probes() -> None:
        from streams.http.probes import start_probe_server

        runners.append(
            await start_probe_server(host, port, health=health, ready=ready, scrape=scrape)
        )
        log.info("serving /health, /ready and /metrics on http://%s:%d", host, port)


PageFun = Callable[..., Coroutine[Any, Any, Any]]
"""A Faust page handler: (view, request, **route match) -> response."""

DENIED_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def _challenge(denied: auth.Denied) -> dict[str, str]:
    return dict(auth.UNAUTHORIZED_HEADERS) if denied.status == 401 else {}


def _api_denied(web: Any, denied: auth.Denied) -> Any:
    return web.json(denied.body(), status=denied.status, headers=_challenge(denied))


def _limit(request: Any) -> int:
    """``?limit=`` of the hot-leads routes, bounded; the default when absent or bad."""
    from streams.http.hotpage import MAX_SHOWN, SHOWN

    try:
        wanted = int(request.query.get("limit", SHOWN))
    except ValueError:
        return SHOWN
    return min(max(wanted, 1), MAX_SHOWN)


def _on_web_shutdown(app: faust.App, stop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `stop` when the web server shuts down, before it waits for open requests.

    Open event streams would hold the server's shutdown for its handler timeout.
    """
    web_app = getattr(app.web, "web_app", None)
    if web_app is not None:

        async def on_shutdown(_: object) -> None:
            await stop()

        web_app.on_shutdown.append(on_shutdown)


def read_routes(
    app: faust.App,
    settings: Settings,
    model: ScoringModel,
    store: LeadStore,
    clock: Callable[[], float],
) -> ApiTokens:
    """The read API and the live page: /leads, /hot, /handoffs/recent, /ui...; the tokens.

    Every one of them needs an API token (`streams.http.auth`); the worker
    warns at start when none is configured.
    """
    tokens = ApiTokens(settings.api_token_roles)
    if not len(tokens):
        log.warning(
            "no API tokens: set %s (NAME=TOKEN:ROLE,...); until then /leads, /hot, /stats and "
            "/ui answer 401 (/health, /ready and /metrics stay open)",
            auth.ENV,
        )
    feed = HandoffFeed(settings)
    _on_web_shutdown(app, feed.stop)

    api = functools.partial(guard_api, tokens)
    page = functools.partial(guard_page, tokens)

    @app.page("/leads/{lead_id}")
    @api()
    async def lead_page(web: Any, request: Any, lead_id: str) -> Any:
        from streams.http.views import explain_lead

        everything = request.query.get("traits") == "all"
        if everything:  # every trait, not only those the model shows: admins only
            checked = tokens.check(request.headers, need=auth.Role.ADMIN)
            if isinstance(checked, auth.Denied):
                return _api_denied(web, checked)
        view = await explain_lead(store, model, lead_id, clock(), all_traits=everything)
        return web.json(view)

    @app.page("/ui/leads/{lead_id}")
    @page
    async def lead_ui_page(web: Any, request: Any, lead_id: str) -> Any:
        from streams.http.leadpage import HEADERS, lead_page

        status, body = await lead_page(store, model, lead_id, clock())
        return web.html(body, status=status, headers=dict(HEADERS))

    @app.page("/ui")
    @page
    async def hot_ui_page(web: Any, request: Any) -> Any:
        from streams.http.hotpage import HEADERS, hot_leads, render_hot

        now = clock()
        rows = await hot_leads(store, model, now, _limit(request))
        return web.html(render_hot(rows, now, model), headers=dict(HEADERS))

    @app.page("/ui/hot.js")
    @page
    async def hot_script(web: Any, request: Any) -> Any:
        from streams.http.hotpage import SCRIPT

        return web.bytes(
            SCRIPT.encode(),
            headers={
                "Content-Type": "text/javascript; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.page("/ui/handoffs/stream")
    @page
    async def handoff_stream(web: Any, request: Any) -> Any:
        from streams.http.handoffs import stream

        return await stream(request, feed)

    @app.page("/hot")
    @api()
    async def hot_json_page(web: Any, request: Any) -> Any:
        from streams.http.hotpage import hot_json, hot_leads

        now = clock()
        return web.json(hot_json(await hot_leads(store, model, now, _limit(request)), now, model))

    @app.page("/handoffs/recent")
    @api()
    async def recent_handoffs(web: Any, request: Any) -> Any:
        return web.json({"feed_running": feed.running, "handoffs": list(feed.recent)})

    return tokens


def guard_api(tokens: ApiTokens, need: auth.Role = auth.Role.READ) -> Callable[[PageFun], PageFun]:
    """A JSON route that needs a token: 401/403 JSON {code, message} otherwise."""

    def wrap(handler: PageFun) -> PageFun:
        @functools.wraps(handler)
        async def guarded(web: Any, request: Any, **match: str) -> Any:
            checked = tokens.check(request.headers, need=need)
            if isinstance(checked, auth.Denied):
                return _api_denied(web, checked)
            return await handler(web, request, **match)

        return guarded

    return wrap


def guard_page(tokens: ApiTokens, handler: PageFun) -> PageFun:
    """An HTML route that needs a token; ``?token=`` signs in (cookie, then redirect)."""

    @functools.wraps(handler)
    async def guarded(web: Any, request: Any, **match: str) -> Any:
        checked = auth.page_access(
            tokens,
            request.headers,
            request.rel_url.raw_path,  # still percent-encoded: the redirect keeps it
            request.query,
            request.query_string,
            secure=bool(request.secure),
        )
        if isinstance(checked, auth.Login):
            return web.text(
                "",
                status=303,
                headers={"Location": checked.location, "Set-Cookie": checked.cookie},
            )
        if isinstance(checked, auth.Denied):
            return web.html(
                auth.denied_page(checked, request.rel_url.raw_path),
                status=checked.status,
                headers={**DENIED_HEADERS, **_challenge(checked)},
            )
        return await handler(web, request, **match)

    return guarded


async def _failure(check: Coroutine[Any, Any, object]) -> str | None:
    """None if `check` finished within `READY_TIMEOUT`, else what went wrong."""
    try:
        await asyncio.wait_for(check, READY_TIMEOUT)
    except TimeoutError:
        return f"no answer in {READY_TIMEOUT:.0f}s"
    except Exception as error:  # noqa: BLE001 -- any failure makes the worker unready
        return f"{type(error).__name__}: {error}"
    return None


async def _broker_metadata(app: faust.App) -> None:
    """One metadata request over the worker's producer connection (raises if none answers)."""
    producer = aiokafka_producer(app)
    if producer is None:
        raise ConnectionError("the producer is not started")
    await producer.client.fetch_all_metadata()


def _replay_of(headers: Any) -> str | None:
    """The replayed letter's id from a record's headers (a mapping or (name, value) pairs)."""
    if not headers:
        return None
    pairs = headers.items() if hasattr(headers, "items") else headers
    for name, value in pairs:
        if name == REPLAY_HEADER and isinstance(value, bytes | str):
            return value.decode(errors="replace") if isinstance(value, bytes) else value
    return None


def _logged(error: FatalError) -> None:
    log.error("the worker cannot go on: %s", error)


def _owns(app: faust.App, topic: str, partition: int) -> bool:
    """Fails closed: a worker that cannot tell owns nothing, so records no progress."""
    try:
        return TP(topic, partition) in app.consumer.assignment()
    except Exception:
        log.warning(
            "cannot read the consumer's assignment; partition %d counts as not owned",
            partition,
            exc_info=True,
        )
        return False


def _highwater(app: faust.App, topic: str, partition: int) -> int | None:
    try:
        high = app.consumer.highwater(TP(topic, partition))
    except Exception:  # noqa: BLE001 -- not assigned or not fetched yet
        return None
    return int(high) if high is not None else None


def _assigned(app: faust.App) -> int:
    try:
        return len(app.consumer.assignment())
    except Exception:  # noqa: BLE001 -- the consumer may not exist yet
        return 0
