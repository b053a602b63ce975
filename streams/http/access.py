"""Who may call which worker route: one table, one aiohttp middleware, deny by default.

Every request to the worker's web server passes `access_middleware` before
any handler, Faust's own routes included. A route listed in `RULES` gets
what its rule says; any other route (Faust's index, a route added without a
rule) needs the admin role, and a path that matches no route needs a valid
token before it may even learn that it is not found. Only the probes are
open: an orchestrator or a scraper has no token. The two sign-in routes take
anyone (that is what they are for), within `SignInLimiter`'s bound.

A request is someone by its ``Authorization: Bearer`` token or by a session
cookie (`streams.http.sessions`), never by a token in a cookie. A page URL
with ``?token=`` exchanges a valid token for a session (303 to the same URL
without it); `Gate.sign_in` and `Gate.sign_out` are the form's routes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from leadpulse.streams.http import auth
from leadpulse.streams.http.auth import ApiTokens, Principal, Role
from leadpulse.streams.http.sessions import CookieRules, Sessions, SignInLimiter
from leadpulse.streams.settings import Settings


class Kind(enum.Enum):
    """How a route is refused: not at all, as JSON, with the sign-in page, or by its handler."""

    OPEN = "open"
    API = "api"
    PAGE = "page"
    SIGN_IN = "sign-in"
    """Open; the handler checks the token posted (bounded by the limiter) or signs out."""


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
    auth.SIGN_IN: Rule(Kind.SIGN_IN),  # POST only
    auth.SIGN_OUT: Rule(Kind.SIGN_IN),  # POST only
}
"""Every route of the worker by its pattern (as aiohttp's router spells it)."""

UNLISTED: Final = Rule(Kind.API, Role.ADMIN)
"""A route without a rule: Faust's own (its index at ``/``) or one added by mistake."""

UNMATCHED: Final = API
"""A path no route matches: a valid token first, then the 404 (or 405)."""

DENIED_HEADERS: Final = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'unsafe-inline'; {auth.PAGE_CSP}",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

PRINCIPAL: Final = web.RequestKey("leadpulse_principal", Principal)
"""Who the middleware let through (not set on open routes)."""

MAX_FORM_BYTES: Final = 8192
"""Largest sign-in form body read."""
SAME_SITE: Final = frozenset({"same-origin", "none"})
"""``Sec-Fetch-Site`` values a sign-in or sign-out may come with (absent: not a browser)."""


@dataclass(frozen=True, slots=True)
class Gate:
    """What decides who a request is: tokens, sessions, their cookie, the sign-in limit."""

    tokens: ApiTokens
    sessions: Sessions
    cookies: CookieRules
    limiter: SignInLimiter
    clock: Callable[[], float]

    @classmethod
    def of(cls, settings: Settings, clock: Callable[[], float]) -> Gate:
        secret = settings.session_secret
        sessions = Sessions(
            settings.api_token_roles,
            ttl=settings.session_ttl,
            secret=None if secret is None else secret.get_secret_value(),
        )
        return cls(
            tokens=ApiTokens(settings.api_token_roles, sessions),
            sessions=sessions,
            cookies=CookieRules(sessions.ttl, secure=settings.cookie_secure),
            limiter=SignInLimiter(settings.sign_in_max_failures, settings.sign_in_window),
            clock=clock,
        )

    def session_cookie(self, principal: Principal, now: float) -> str:
        """The Set-Cookie value of a new session for `principal`."""
        return self.cookies.set(
            self.sessions.issue(principal.name, principal.role.name.lower(), now)
        )

    def exchange(self, request: web.Request, need: Role) -> web.Response:
        """A page URL with ``?token=``: 303 without it and a session, or the sign-in page."""
        path = request.rel_url.raw_path  # still percent-encoded: the redirect keeps it
        target = auth.without_token(path, request.query_string)
        now = self.clock()
        client = request.remote or ""
        wait = self.limiter.retry_after(client, now)
        if wait is not None:
            return too_many(wait)
        checked = self.tokens.sign_in(request.query.get("token"), need=need)
        if isinstance(checked, auth.Denied):
            if checked.status == 401:
                self.limiter.failed(client, now)
            return refused_page(checked, target)
        return redirect(target, self.session_cookie(checked, now))

    async def sign_in(self, request: web.Request) -> web.Response:
        """``POST /ui/sign-in`` (form: ``token``, ``next``): 303 to `next` with a session."""
        now = self.clock()
        client = request.remote or ""
        if request.headers.get("Sec-Fetch-Site", "none") not in SAME_SITE:
            return refused_page(CROSS_SITE, auth.HOME)
        wait = self.limiter.retry_after(client, now)
        if wait is not None:
            return too_many(wait)
        if (request.content_length or 0) > MAX_FORM_BYTES:  # chunked: aiohttp's 1 MiB bound
            return web.Response(status=413, text="a sign-in form is small")
        form = await request.post()
        token, wanted = form.get("token"), form.get("next")
        target = auth.local_path(wanted if isinstance(wanted, str) else None) or auth.HOME
        checked = self.tokens.sign_in(token if isinstance(token, str) else None)
        if isinstance(checked, auth.Denied):
            self.limiter.failed(client, now)
            return refused_page(checked, target)
        return redirect(target, self.session_cookie(checked, now))

    async def sign_out(self, request: web.Request) -> web.Response:
        """``POST /ui/sign-out``: the browser drops its session; 303 to the sign-in page."""
        if request.headers.get("Sec-Fetch-Site", "none") not in SAME_SITE:
            return refused_page(CROSS_SITE, auth.HOME)
        return redirect(auth.HOME, self.cookies.clear())


CROSS_SITE: Final = auth.Denied(403, "cross_site", "a sign-in or sign-out from another site")


def rule_for(request: web.Request, rules: Mapping[str, Rule] = RULES) -> Rule:
    """The rule of the route `request` matched (`UNLISTED`, `UNMATCHED` otherwise)."""
    match = request.match_info
    if match.http_exception is not None:
        return UNMATCHED
    resource = match.route.resource
    if resource is None:
        return UNLISTED
    return rules.get(resource.canonical, UNLISTED)


def access_middleware(gate: Gate, rules: Mapping[str, Rule] = RULES) -> Middleware:
    """The middleware that lets a request through only if its route's rule allows it."""

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        rule = rule_for(request, rules)
        if rule.kind in (Kind.OPEN, Kind.SIGN_IN):
            return await handler(request)
        need = rule.needs(request.query)
        if rule.kind is Kind.PAGE and "token" in request.query:
            return gate.exchange(request, need)
        checked = gate.tokens.check(request.headers, now=gate.clock(), need=need)
        if isinstance(checked, auth.Denied):
            if rule.kind is Kind.PAGE:
                return page_refusal(gate, request, checked)
            return web.json_response(
                checked.body(), status=checked.status, headers=_challenge(checked)
            )
        request[PRINCIPAL] = checked
        return await handler(request)

    return access


def signed_in_by_session(request: web.Request) -> bool:
    """Whether the middleware let `request` through on a session (a page shows sign-out)."""
    principal = request.get(PRINCIPAL)
    return principal is not None and principal.session is not None


def page_refusal(gate: Gate, request: web.Request, denied: auth.Denied) -> web.Response:
    """The sign-in page (401) or a refusal (403); a session it could not use is dropped."""
    target = auth.without_token(request.rel_url.raw_path, request.query_string)
    refused = refused_page(denied, target)
    if denied.status == 401 and auth.session_cookie(request.headers.get("Cookie")) is not None:
        refused.headers["Set-Cookie"] = gate.cookies.clear()
    return refused


def refused_page(denied: auth.Denied, next_path: str) -> web.Response:
    return web.Response(
        text=auth.denied_page(denied, next_path),
        status=denied.status,
        content_type="text/html",
        headers={**DENIED_HEADERS, **_challenge(denied)},
    )


def too_many(wait: int) -> web.Response:
    """429: this client failed to sign in too often; Retry-After says when it may again."""
    denied = auth.Denied(
        429,
        "too_many_sign_ins",
        f"too many failed sign-ins from this address: try again in {wait} s",
    )
    response = refused_page(denied, auth.HOME)
    response.headers["Retry-After"] = str(wait)
    return response


def redirect(location: str, cookie: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location, "Set-Cookie": cookie})


def _challenge(denied: auth.Denied) -> dict[str, str]:
    return dict(auth.UNAUTHORIZED_HEADERS) if denied.status == 401 else {}
