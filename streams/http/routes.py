"""The worker's HTTP routes on Faust's web server: the read API, the pages, the probes.

The pipeline knows nothing of HTTP: the worker process hands its pipeline
(what the probes and /stats read) to `serve_worker`, which adds the routes
and the one middleware that decides who may call them (`streams.http.access`).
The handlers themselves check nothing; the sign-in form's routes are the
gate's own (`streams.http.access.Gate`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import faust
from aiohttp.web import Application

from leadpulse.scoring import ScoringModel
from leadpulse.streams.http import auth
from leadpulse.streams.http.access import RULES, Gate, access_middleware, signed_in_by_session
from leadpulse.streams.http.handoffs import HandoffFeed
from leadpulse.streams.http.probes import Probed, probe_routes
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import LeadStore

log = logging.getLogger("leadpulse")


class Served(Probed, Protocol):
    """What the worker's routes read of its pipeline: the probes' reports and /stats."""

    async def health_detail(self) -> tuple[int, dict[str, Any]]: ...

    def stats(self) -> dict[str, Any]: ...


APPLY_READ_TIMEOUT = 1.0
"""Seconds the hot page waits for the apply status: a page is never held up by it."""


async def running_apply(settings: Settings, store: LeadStore) -> dict[str, Any] | None:
    """The running `leadpulse model apply`'s progress (`Keys.apply`), else None.

    Read with the store's own client (a Redis store's); any failure is None.
    """
    from leadpulse.streams.store.namespaces import Deployment
    from leadpulse.streams.store.redis import RedisLeadStore
    from leadpulse.streams.store.redis.keys import Keys

    inner = getattr(store, "_store", store)  # the metrics wrapper's store
    if not isinstance(inner, RedisLeadStore):
        return None
    deployment = Deployment(inner.client, Keys(settings.redis_prefix))
    try:
        status = await asyncio.wait_for(deployment.status(), APPLY_READ_TIMEOUT)
    except Exception:  # noqa: BLE001 -- progress for people: never fail the page on it
        return None
    if status is None or not status.running:
        return None
    return status.model_dump(mode="json")


def serve_worker(
    app: faust.App,
    served: Served,
    *,
    settings: Settings,
    model: ScoringModel,
    store: LeadStore,
    clock: Callable[[], float],
) -> None:
    """Add every route of the worker to `app`, each behind `RULES` (before it serves).

    Faust's own routes are switched off (`streams.pipeline.app.faust_settings`);
    whatever it still adds gets the middleware's default: admin only.
    """
    gate = Gate.of(settings, clock)
    if not len(gate.tokens):
        log.warning(
            "no API tokens: set %s (NAME=TOKEN:ROLE,...); until then every route but /health, "
            "/ready and /metrics answers 401",
            auth.ENV,
        )
    web_app = _web_app(app)
    web_app.middlewares.append(access_middleware(gate, RULES))
    web_app.router.add_post(auth.SIGN_IN, gate.sign_in)  # POST only: no HEAD, no GET
    web_app.router.add_post(auth.SIGN_OUT, gate.sign_out)
    read_routes(app, settings, model, store, clock)

    @app.page("/stats")
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json(served.stats())

    @app.page("/health/detail")
    async def health_detail_page(web: Any, request: Any) -> Any:
        status, body = await served.health_detail()
        return web.json(body, status=status)

    stop_probes = probe_routes(app, served, settings)
    if stop_probes is not None:
        on_web_shutdown(app, stop_probes)  # now: the signal list is frozen once serving


def _web_app(app: faust.App) -> Application:
    """The aiohttp application under Faust's web server (the only driver it ships)."""
    web_app = getattr(app.web, "web_app", None)
    if not isinstance(web_app, Application):
        raise TypeError(
            f"the worker needs Faust's aiohttp web driver, not {type(app.web).__name__}: "
            "its routes are guarded by an aiohttp middleware"
        )
    return web_app


def _limit(request: Any) -> int:
    """``?limit=`` of the hot-leads routes, bounded; the default when absent or bad."""
    from leadpulse.streams.http.hotpage import MAX_SHOWN, SHOWN

    try:
        wanted = int(request.query.get("limit", SHOWN))
    except ValueError:
        return SHOWN
    return min(max(wanted, 1), MAX_SHOWN)


def on_web_shutdown(app: faust.App, stop: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run `stop` when the web server shuts down, before it waits for open requests.

    Open event streams would hold the server's shutdown for its handler timeout.
    """

    async def on_shutdown(_: object) -> None:
        await stop()

    _web_app(app).on_shutdown.append(on_shutdown)


def read_routes(
    app: faust.App,
    settings: Settings,
    model: ScoringModel,
    store: LeadStore,
    clock: Callable[[], float],
) -> None:
    """The read API and the live page: /leads, /hot, /handoffs/recent, /ui..."""
    feed = HandoffFeed(settings)
    on_web_shutdown(app, feed.stop)

    @app.page("/leads/{lead_id}")
    async def lead_page(web: Any, request: Any, lead_id: str) -> Any:
        from leadpulse.streams.http.views import explain_lead

        everything = request.query.get("traits") == "all"  # admins only (RULES)
        view = await explain_lead(store, model, lead_id, clock(), all_traits=everything)
        return web.json(view)

    @app.page("/ui/leads/{lead_id}")
    async def lead_ui_page(web: Any, request: Any, lead_id: str) -> Any:
        from leadpulse.streams.http.leadpage import HEADERS, lead_page, with_sign_out

        status, body = await lead_page(store, model, lead_id, clock())
        if signed_in_by_session(request):
            body = with_sign_out(body)
        return web.html(body, status=status, headers=dict(HEADERS))

    @app.page("/ui")
    async def hot_ui_page(web: Any, request: Any) -> Any:
        from leadpulse.streams.http.hotpage import HEADERS, hot_leads, render_hot
        from leadpulse.streams.http.leadpage import with_sign_out

        now = clock()
        rows = await hot_leads(store, model, now, _limit(request))
        body = render_hot(rows, now, model, await running_apply(settings, store))
        if signed_in_by_session(request):
            body = with_sign_out(body)
        return web.html(body, headers=dict(HEADERS))

    @app.page("/ui/hot.js")
    async def hot_script(web: Any, request: Any) -> Any:
        from leadpulse.streams.http.hotpage import SCRIPT

        return web.bytes(
            SCRIPT.encode(),
            headers={
                "Content-Type": "text/javascript; charset=utf-8",
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
            },
        )

    @app.page("/ui/handoffs/stream")
    async def handoff_stream(web: Any, request: Any) -> Any:
        from leadpulse.streams.http.handoffs import stream

        return await stream(request, feed)

    @app.page("/hot")
    async def hot_json_page(web: Any, request: Any) -> Any:
        from leadpulse.streams.http.hotpage import hot_json, hot_leads

        now = clock()
        rows = await hot_leads(store, model, now, _limit(request))
        return web.json(hot_json(rows, now, model, await running_apply(settings, store)))

    @app.page("/handoffs/recent")
    async def recent_handoffs(web: Any, request: Any) -> Any:
        return web.json({"feed_running": feed.running, "handoffs": list(feed.recent)})
