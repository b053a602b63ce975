"""/health, /ready and /metrics on a port of their own (`LEADPULSE_METRICS_PORT`).

A plain aiohttp server next to Faust's: only these three routes, no token
(like on the web port), so a Prometheus scraper or an orchestrator's probes
can reach them on another interface than the API and the pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from streams.observability.metrics import CONTENT_TYPE_LATEST

Check = Callable[[], Awaitable[tuple[int, dict[str, Any]]]]


async def start_probe_server(
    host: str,
    port: int,
    *,
    health: Check,
    ready: Check,
    scrape: Callable[[], Awaitable[bytes]],
) -> web.AppRunner:
    """Serve the three routes on host:port; the caller cleans the runner up."""

    def json_route(check: Check) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(_: web.Request) -> web.Response:
            status, body = await check()
            return web.json_response(body, status=status)

        return handle

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=await scrape(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/health", json_route(health))
    app.router.add_get("/ready", json_route(ready))
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
