"""API tokens: who may read the worker's HTTP API and page, and who is admin.

Tokens come from ``LEADPULSE_API_TOKENS`` (``NAME=TOKEN:ROLE,...``, see
`streams.settings.parse_api_tokens`). A request presents one as
``Authorization: Bearer <token>`` (the API) or in the ``leadpulse_token``
cookie, which ``/ui?token=<token>`` sets (HttpOnly, SameSite=Strict) before it
redirects to the same URL without the token, so the token does not stay in
the address bar or the history. A lookup compares the presented token with
every configured one in constant time. ``/health``, ``/ready`` and
``/metrics`` need no token; everything else does (`streams.http.access`
decides per route), and with no token configured nothing else is served
(401 saying to set the variable).

Roles: ``read`` sees the pages and the JSON views with the traits the model
declares for display; ``admin`` may also ask for every trait
(``/leads/{id}?traits=all``) and for ``/health/detail`` (error texts, the
last dead letter's lead, offset and reason).
"""

from __future__ import annotations

import enum
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Final
from urllib.parse import parse_qsl, urlencode

COOKIE: Final = "leadpulse_token"
ENV: Final = "LEADPULSE_API_TOKENS"


class Role(enum.IntEnum):
    """Ordered: a role may do what every lower one may."""

    READ = 1
    ADMIN = 2

    @classmethod
    def named(cls, name: str) -> Role:
        return cls[name.upper()]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who presented a valid token: the token's name and its role."""

    name: str
    role: Role


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request is refused: HTTP status (401 or 403), a code and a message."""

    status: int
    code: str
    message: str

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ApiTokens:
    """Looks a presented token up in constant time: every known token is compared, always."""

    def __init__(self, tokens: Mapping[str, tuple[str, str]]) -> None:
        self._tokens = [
            (token.encode(), Principal(name, Role.named(role)))
            for token, (name, role) in tokens.items()
        ]

    def __len__(self) -> int:
        return len(self._tokens)

    def principal_of(self, presented: str | None) -> Principal | None:
        if not presented:
            return None
        candidate = presented.encode("utf-8", "surrogatepass")
        found: Principal | None = None
        for token, principal in self._tokens:
            if hmac.compare_digest(token, candidate):
                found = principal
        return found

    def check(self, headers: Mapping[str, str], *, need: Role = Role.READ) -> Principal | Denied:
        """The request's principal if its token (bearer, else cookie) allows `need`."""
        if not self._tokens:
            return Denied(
                401,
                "no_tokens_configured",
                f"this worker has no API tokens: set {ENV} (NAME=TOKEN:ROLE,...) to use its API",
            )
        presented = bearer(headers.get("Authorization")) or cookie_token(headers.get("Cookie"))
        if presented is None:
            return Denied(
                401,
                "unauthorized",
                "an API token is needed: send Authorization: Bearer <token>",
            )
        principal = self.principal_of(presented)
        if principal is None:
            return Denied(401, "unauthorized", "the API token is not valid")
        if principal.role < need:
            return Denied(
                403, "forbidden", f"token {principal.name!r} may not do this ({need.name} only)"
            )
        return principal


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def cookie_token(header: str | None) -> str | None:
    """The ``leadpulse_token`` value of a Cookie header, else None."""
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 -- http.cookies raises CookieError and others on junk
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def login_cookie(token: str, *, secure: bool = False) -> str:
    """The Set-Cookie value that keeps `token` for the page (HttpOnly, SameSite=Strict)."""
    flags = "; Path=/; HttpOnly; SameSite=Strict"
    return f"{COOKIE}={token}{flags}{'; Secure' if secure else ''}"


def without_token(path: str, query: str) -> str:
    """`path` with `query` minus its ``token`` parameter: where a login redirects to."""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "token"]
    return f"{path}?{urlencode(kept)}" if kept else path


@dataclass(frozen=True, slots=True)
class Login:
    """A valid ``?token=``: set the cookie and send the browser to `location`."""

    location: str
    cookie: str


def page_access(
    tokens: ApiTokens,
    headers: Mapping[str, str],
    path: str,
    query: Mapping[str, str],
    query_string: str,
    *,
    secure: bool = False,
    need: Role = Role.READ,
) -> Principal | Denied | Login:
    """A page request: a ``?token=`` logs in (or is refused), else as `ApiTokens.check`."""
    presented = query.get("token")
    if presented is None:
        return tokens.check(headers, need=need)
    checked = tokens.check({"Authorization": f"Bearer {presented}"}, need=need)
    if isinstance(checked, Denied):
        return checked
    return Login(without_token(path, query_string), login_cookie(presented, secure=secure))


UNAUTHORIZED_HEADERS: Final = {"WWW-Authenticate": 'Bearer realm="leadpulse"'}


def denied_page(denied: Denied, path: str) -> str:
    """The small HTML page of a refused page request, with a sign-in form (no script)."""
    from leadpulse.streams.http.leadpage import document, e

    form = (
        f'<form method="get" action="{e(path)}"><label>API token '
        '<input type="password" name="token" autocomplete="current-password" required '
        'minlength="16"></label> <button type="submit">Sign in</button></form>'
        '<p class="note">The token is kept in a cookie of this site (HttpOnly, '
        "SameSite=Strict); <code>leadpulse dev</code> prints a sign-in link.</p>"
    )
    return document(
        f"{denied.status} - leadpulse",
        f'<main id="denied" data-code="{e(denied.code)}"><h1>Sign in to leadpulse</h1>'
        f"<p>{e(denied.message)}</p>{form if denied.status == 401 else ''}</main>",
    )


def new_token() -> str:
    """A fresh API token (32 URL-safe random characters after ``tk_``)."""
    return "tk_" + secrets.token_urlsafe(24)
