"""Who may call which worker route: one table, one aiohttp middleware, deny by default.

Every request to the worker's web server passes `access_middleware` before
any handler, Faust's own routes included. A route listed in `RULES` gets
what its rule says; any other route (Faust's index, a route added without a
rule) needs the admin role, and a path that matches no route needs a valid
token before it may even learn that it is not found. Only the probes are
open: an orchestrator or a scraper has no token.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from leadpulse.streams.http import auth
from leadpulse.streams.http.auth import ApiTokens, Role


class Kind(enum.Enum):
    """How a route is refused: not at all, as JSON, or with the sign-in page."""

    OPEN = "open"
    API = "api"
    PAGE = "page"


@dataclass(frozen=True, slots=True)
class Rule:
    """What a route needs: its kind, a role, and a query that needs admin on top.

    `admin_query` (parameter, value): a request with it needs the admin role
    (``/leads/{id}?traits=all`` shows every trait, not only those the model
    declares for display).
    """

    kind: Kind
    need: Role = Role.READ
    admin_query: tuple[str, str] | None = None

    def needs(self, query: Mapping[str, str]) -> Role:
        if self.admin_query is not None:
            name, value = self.admin_query
            if query.get(name) == value:
                return Role.ADMIN
        return self.need


OPEN: Final = Rule(Kind.OPEN)
API: Final = Rule(Kind.API)
PAGE: Final = Rule(Kind.PAGE)

PROBES: Final = ("/health", "/ready", "/metrics")
"""The only routes open without a token (on the web port and on the metrics port)."""

RULES: Final[Mapping[str, Rule]] = {
    **dict.fromkeys(PROBES, OPEN),
    "/health/detail": Rule(Kind.API, Role.ADMIN),  # error texts can quote a payload
    "/stats": API,
    "/leads/{lead_id}": Rule(Kind.API, admin_query=("traits", "all")),
    "/hot": API,
    "/handoffs/recent": API,
    "/ui": PAGE,
    "/ui/leads/{lead_id}": PAGE,
    "/ui/hot.js": PAGE,
    "/ui/handoffs/stream": PAGE,
}
"""Every route of the worker by its pattern (as aiohttp's router spells it)."""

UNLISTED: Final = Rule(Kind.API, Role.ADMIN)
"""A route without a rule: Faust's own (its index at ``/``) or one added by mistake."""

UNMATCHED: Final = API
"""A path no route matches: a valid token first, then the 404 (or 405)."""

DENIED_HEADERS: Final = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


def rule_for(request: web.Request, rules: Mapping[str, Rule] = RULES) -> Rule:
    """The rule of the route `request` matched (`UNLISTED`, `UNMATCHED` otherwise)."""
    match = request.match_info
    if match.http_exception is not None:
        return UNMATCHED
    resource = match.route.resource
    if resource is None:
        return UNLISTED
    return rules.get(resource.canonical, UNLISTED)


def access_middleware(tokens: ApiTokens, rules: Mapping[str, Rule] = RULES) -> Middleware:
    """The middleware that lets a request through only if its route's rule allows it."""

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        rule = rule_for(request, rules)
        if rule.kind is Kind.OPEN:
            return await handler(request)
        if rule.kind is Kind.PAGE:
            refused = page_refusal(tokens, request, rule.needs(request.query))
        else:
            refused = api_refusal(tokens, request, rule.needs(request.query))
        return refused if refused is not None else await handler(request)

    return access


def api_refusal(tokens: ApiTokens, request: web.Request, need: Role) -> web.Response | None:
    """401/403 JSON {code, message} unless the request's token has `need`."""
    checked = tokens.check(request.headers, need=need)
    if not isinstance(checked, auth.Denied):
        return None
    return web.json_response(checked.body(), status=checked.status, headers=_challenge(checked))


def page_refusal(tokens: ApiTokens, request: web.Request, need: Role) -> web.Response | None:
    """The sign-in page (401) or a refusal (403); ``?token=`` signs in (cookie, redirect)."""
    path = request.rel_url.raw_path  # still percent-encoded: the redirect keeps it
    checked = auth.page_access(
        tokens,
        request.headers,
        path,
        request.query,
        request.query_string,
        secure=request.secure,
        need=need,
    )
    if isinstance(checked, auth.Login):
        return web.Response(
            status=303, headers={"Location": checked.location, "Set-Cookie": checked.cookie}
        )
    if isinstance(checked, auth.Denied):
        return web.Response(
            text=auth.denied_page(checked, path),
            status=checked.status,
            content_type="text/html",
            headers={**DENIED_HEADERS, **_challenge(checked)},
        )
    return None


def _challenge(denied: auth.Denied) -> dict[str, str]:
    return dict(auth.UNAUTHORIZED_HEADERS) if denied.status == 401 else {}
