"""/health, /ready and /metrics: on the worker's web port, and on a port of their own
(`LEADPULSE_METRICS_PORT`, `LEADPULSE_COLLECTOR_METRICS_PORT`).

A plain aiohttp server next to the process's own: only these routes (and a
process's extra read-only ones, such as the collector's /stats), no token,
so a Prometheus scraper or an orchestrator's probes can reach them on
another interface than the API, the pages or the public ingest port.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

import faust
from aiohttp import web

from leadpulse.streams.observability.metrics import CONTENT_TYPE_LATEST
from leadpulse.streams.settings import Settings

log = logging.getLogger("leadpulse")

Check = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]
"""A probe: (HTTP status, JSON body)."""


class Probed(Protocol):
    """What the probes of a worker read (its pipeline)."""

    async def health_report(self) -> tuple[int, dict[str, Any]]: ...

    async def readiness_report(self) -> tuple[int, dict[str, Any]]: ...

    async def scrape(self) -> bytes: ...


def probe_routes(
    app: faust.App, probed: Probed, settings: Settings
) -> Callable[[], Coroutine[Any, Any, None]] | None:
    """Add the three routes to the Faust app, start their own server if `metrics_port` is set.

    Returns what stops that server (None without one); the caller runs it when
    the web server shuts down.
    """

    @app.page("/health")
    async def health_page(web: Any, request: Any) -> Any:
        status, body = await probed.health_report()
        return web.json(body, status=status)

    @app.page("/ready")
    async def ready_page(web: Any, request: Any) -> Any:
        status, body = await probed.readiness_report()
        return web.json(body, status=status)

    @app.page("/metrics")
    async def metrics_page(web: Any, request: Any) -> Any:
        # aiohttp refuses a content_type with parameters: set the header itself
        return web.bytes(await probed.scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    if settings.metrics_port is None:
        return None
    host = settings.metrics_host or settings.web_host
    port = settings.metrics_port
    runners: list[web.AppRunner] = []

    async def stop_probes() -> None:
        while runners:
            await runners.pop().cleanup()

    @app.task
    async def serve_probes() -> None:
        runners.append(
            await start_probe_server(
                host,
                port,
                health=probed.health_report,
                ready=probed.readiness_report,
                scrape=probed.scrape,
            )
        )
        log.info("serving /health, /ready and /metrics on http://%s:%d", host, port)

    return stop_probes


def json_route(check: Check) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A GET handler answering `check`'s status and JSON body."""

    async def handle(_: web.Request) -> web.Response:
        status, body = await check()
        return web.json_response(body, status=status)

    return handle


def metrics_route(
    scrape: Callable[[], Awaitable[bytes]],
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A GET handler answering `scrape`'s Prometheus text."""

    async def handle(_: web.Request) -> web.Response:
        # aiohttp refuses a content_type with parameters: the header is set as it is
        return web.Response(body=await scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    return handle


def add_probes(
    app: web.Application,
    *,
    health: Check,
    ready: Check,
    scrape: Callable[[], Awaitable[bytes]] | None = None,
    extra: Mapping[str, Check] | None = None,
) -> web.Application:
    """Add /health, /ready, /metrics (with `scrape`) and the `extra` JSON routes to `app`.

    For a process's own public port too (the collector's ingest port answers
    /health and /ready, not /metrics): one implementation of the probes.
    """
    app.router.add_get("/health", json_route(health))
    app.router.add_get("/ready", json_route(ready))
    if scrape is not None:
        app.router.add_get("/metrics", metrics_route(scrape))
    for path, check in (extra or {}).items():
        app.router.add_get(path, json_route(check))
    return app


def probe_application(
    *,
    health: Check,
    ready: Check,
    scrape: Callable[[], Awaitable[bytes]],
    extra: Mapping[str, Check] | None = None,
) -> web.Application:
    """An app of /health, /ready, /metrics and the `extra` JSON routes (path -> check)."""
    return add_probes(web.Application(), health=health, ready=ready, scrape=scrape, extra=extra)


async def start_site(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve `app` on host:port; the caller cleans the runner up."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner


async def start_probe_server(
    host: str,
    port: int,
    *,
    health: Check,
    ready: Check,
    scrape: Callable[[], Awaitable[bytes]],
    extra: Mapping[str, Check] | None = None,
) -> web.AppRunner:
    """Serve `probe_application` on host:port; the caller cleans the runner up."""
    app = probe_application(health=health, ready=ready, scrape=scrape, extra=extra)
    return await start_site(app, host, port)
