"""API tokens and page sessions: who may read the worker's HTTP API and pages, who is admin.

Tokens come from ``LEADPULSE_API_TOKENS`` (``NAME=TOKEN:ROLE,...``, see
`streams.settings.parse_api_tokens`). The API takes one as ``Authorization:
Bearer <token>``. A browser never keeps the token: the sign-in form posts it
once (``POST /ui/sign-in``), and a ``?token=`` link (what ``leadpulse dev``
and ``demo`` print) is exchanged once, redirecting to the same URL without
it; both give a signed, expiring session cookie (`streams.http.sessions`),
which the pages and the API accept. A lookup compares the presented token
with every configured one in constant time. ``/health``, ``/ready`` and
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

from leadpulse.streams.http.sessions import COOKIE, Rejected, Session, Sessions

ENV: Final = "LEADPULSE_API_TOKENS"
SIGN_IN: Final = "/ui/sign-in"
SIGN_OUT: Final = "/ui/sign-out"
HOME: Final = "/ui"
"""Where a sign-in without a (usable) ``next`` goes, and a sign-out: the hot page."""
PAGE_CSP: Final = "frame-ancestors 'none'; form-action 'self'"
"""What every page's Content-Security-Policy ends with: never framed, forms post here only."""


class Role(enum.IntEnum):
    """Ordered: a role may do what every lower one may."""

    READ = 1
    ADMIN = 2

    @classmethod
    def named(cls, name: str) -> Role:
        return cls[name.upper()]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the token's name and role, and the session when signed in by one."""

    name: str
    role: Role
    session: Session | None = None


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request is refused: HTTP status (401, 403 or 429), a code and a message."""

    status: int
    code: str
    message: str

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


NO_TOKENS: Final = Denied(
    401,
    "no_tokens_configured",
    f"this worker has no API tokens: set {ENV} (NAME=TOKEN:ROLE,...) to use its API",
)
NOT_SIGNED_IN: Final = Denied(
    401, "unauthorized", "an API token is needed: send Authorization: Bearer <token>"
)
BAD_TOKEN: Final = Denied(401, "unauthorized", "the API token is not valid")
BAD_SESSION: Final = Denied(401, "unauthorized", "the session is not valid: sign in again")
EXPIRED: Final = Denied(401, "session_expired", "the session has expired: sign in again")


class ApiTokens:
    """Looks a presented token up in constant time: every known token is compared, always.

    `sessions` verifies session cookies; without it a cookie signs nobody in.
    """

    def __init__(
        self, tokens: Mapping[str, tuple[str, str]], sessions: Sessions | None = None
    ) -> None:
        self._tokens = [
            (token.encode(), Principal(name, Role.named(role)))
            for token, (name, role) in tokens.items()
        ]
        self.sessions = sessions

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

    def sign_in(self, presented: str | None, *, need: Role = Role.READ) -> Principal | Denied:
        """The principal of a token given to sign in (a form, a link) if it allows `need`."""
        if not self._tokens:
            return NO_TOKENS
        principal = self.principal_of(presented)
        if principal is None:
            return BAD_TOKEN
        return allowed(principal, need)

    def check(
        self, headers: Mapping[str, str], *, now: float, need: Role = Role.READ
    ) -> Principal | Denied:
        """The request's principal if its bearer token, else its session, allows `need`.

        The raw token is never taken from a cookie: only a session at `now`.
        """
        if not self._tokens:
            return NO_TOKENS
        presented = bearer(headers.get("Authorization"))
        if presented is not None:
            return self.sign_in(presented, need=need)
        value = session_cookie(headers.get("Cookie"))
        if value is None or self.sessions is None:
            return NOT_SIGNED_IN
        session = self.sessions.verify(value, now)
        if session is Rejected.EXPIRED:
            return EXPIRED
        if not isinstance(session, Session):
            return BAD_SESSION
        return allowed(Principal(session.name, Role.named(session.role), session), need)


def allowed(principal: Principal, need: Role) -> Principal | Denied:
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


def session_cookie(header: str | None) -> str | None:
    """The ``leadpulse_session`` value of a Cookie header, else None."""
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except Exception:  # noqa: BLE001 -- http.cookies raises CookieError and others on junk
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def without_token(path: str, query: str) -> str:
    """`path` with `query` minus its ``token`` parameter: where a sign-in link redirects to."""
    kept = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "token"]
    return f"{path}?{urlencode(kept)}" if kept else path


def local_path(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None: no redirect off the site.

    It starts with one ``/`` (``//host`` and ``/\\host`` are other hosts to a
    browser), holds no backslash, whitespace or control character.
    """
    if not target or not target.startswith("/") or target[1:2] in ("/", "\\"):
        return None
    if any(ch == "\\" or ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in target):
        return None
    return target


UNAUTHORIZED_HEADERS: Final = {"WWW-Authenticate": 'Bearer realm="leadpulse"'}


def denied_page(denied: Denied, next_path: str) -> str:
    """The small HTML page of a refused page request; a 401 has the sign-in form (no script).

    The form posts the token to ``/ui/sign-in``, which sends the browser on to
    `next_path` (a local path, without any ``token``).
    """
    from leadpulse.streams.http.leadpage import document, e

    form = (
        f'<form method="post" action="{SIGN_IN}">'
        f'<input type="hidden" name="next" value="{e(next_path)}"><label>API token '
        '<input type="password" name="token" autocomplete="current-password" required '
        'minlength="16"></label> <button type="submit">Sign in</button></form>'
        '<p class="note">The token is exchanged for a session cookie of this site '
        "(signed and expiring, HttpOnly, SameSite=Strict), never kept; "
        "<code>leadpulse dev</code> prints a sign-in link.</p>"
    )
    return document(
        f"{denied.status} - leadpulse",
        f'<main id="denied" data-code="{e(denied.code)}"><h1>Sign in to leadpulse</h1>'
        f"<p>{e(denied.message)}</p>{form if denied.status == 401 else ''}</main>",
    )


def new_token() -> str:
    """A fresh API token (32 URL-safe random characters after ``tk_``)."""
    return "tk_" + secrets.token_urlsafe(24)
