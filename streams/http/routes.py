"""The worker's HTTP routes on Faust's web server: the read API, the pages, the probes.

The pipeline knows nothing of HTTP: the worker process hands its pipeline
(what the probes and /stats read) to `serve_worker`, which adds the routes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Final, Protocol

import faust

from scoring import ScoringModel
from streams.http import auth
from streams.http.auth import ApiTokens
from streams.http.handoffs import HandoffFeed
from streams.http.probes import Probed, probe_routes
from streams.settings import Settings
from streams.store import LeadStore

log = logging.getLogger("leadpulse")


class Served(Probed, Protocol):
    """What the worker's routes read of its pipeline: the probes' reports and /stats."""

    def stats(self) -> dict[str, Any]: ...


def serve_worker(
    app: faust.App,
    served: Served,
    *,
    settings: Settings,
    model: ScoringModel,
    store: LeadStore,
    clock: Callable[[], float],
) -> None:
    """Add every route of the worker to `app` (before its web server starts)."""
    tokens = read_routes(app, settings, model, store, clock)
    api = functools.partial(guard_api, tokens)

    @app.page("/stats")
    @api()
    async def stats_page(web: Any, request: Any) -> Any:
        return web.json(served.stats())

    stop_probes = probe_routes(app, served, settings)
    if stop_probes is not None:
        on_web_shutdown(app, stop_probes)  # now: the signal list is frozen once serving


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


def on_web_shutdown(app: faust.App, stop: Callable[[], Coroutine[Any, Any, None]]) -> None:
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
    on_web_shutdown(app, feed.stop)

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
