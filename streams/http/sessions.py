"""Signed, expiring page sessions: what a browser keeps instead of the API token.

A sign-in (the form, or a ``?token=`` link exchanged once) gives the browser
a ``leadpulse_session`` cookie ``<id>.<expires>.<name>.<role>.<mac>``: a
random id, the Unix second it expires at, the token's name (percent-encoded,
dots included, so the five fields stay apart) and role, and an HMAC-SHA256
of the four with a key of that token. The token itself is never in it, and
nothing is stored: any worker with the same settings verifies the cookie, a
restarted one too.

The key of a token is ``HMAC(master, LABEL NUL name NUL token)``, the master
being ``LEADPULSE_SESSION_SECRET`` when set, else `LABEL`. So changing or
removing a token, or changing the secret, ends the sessions it signed, and a
session names a token that must still exist with that role. Signing out
clears the cookie in that browser; a copied cookie stays valid until it
expires (or its token or the secret changes).

`SignInLimiter` bounds failed sign-ins per client address. Everything here is
pure: the time is passed in.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import math
import re
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import quote, unquote

COOKIE: Final = "leadpulse_session"
LABEL: Final = b"leadpulse session v1"
"""The master key when no secret is configured, and the domain of every derived key."""
MAX_VALUE: Final = 4096
"""Longest cookie value looked at (what browsers keep): anything longer is refused unread."""
_ID: Final = re.compile(r"[0-9A-Za-z_-]{8,64}")
_EXPIRES: Final = re.compile(r"[0-9]{1,12}")
_NAME: Final = re.compile(r"[0-9A-Za-z%_~-]+")


@dataclass(frozen=True, slots=True)
class Session:
    """A verified session: its id, when it expires (Unix s), the token's name and role."""

    id: str
    expires: int
    name: str
    role: str


class Rejected(enum.Enum):
    """Why a cookie value is no session: not one of ours (or forged), or too old."""

    INVALID = "invalid"
    EXPIRED = "expired"


def token_key(master: bytes, name: str, token: str) -> bytes:
    """The signing key of the sessions of one token (HKDF-extract style)."""
    return hmac.new(
        master, LABEL + b"\0" + encode_name(name).encode() + b"\0" + token.encode(), hashlib.sha256
    ).digest()


def encode_name(name: str) -> str:
    """A token's name as a cookie field: percent-encoded, ``.`` too."""
    return quote(name, safe="").replace(".", "%2E")


class Sessions:
    """Issues and verifies session cookie values for the configured API tokens.

    `tokens` is token -> (name, role), as `Settings.api_token_roles`. A
    session lasts `ttl` seconds (whole seconds, at least 1); it is valid while
    ``now < expires``: at its expiry second it is not.
    """

    def __init__(
        self,
        tokens: Mapping[str, tuple[str, str]],
        *,
        ttl: float,
        secret: str | None = None,
    ) -> None:
        if ttl <= 0:
            raise ValueError("a session needs a positive lifetime")
        self.ttl = max(1, math.ceil(ttl))
        master = secret.encode() if secret else LABEL
        keys: dict[tuple[str, str], list[bytes]] = {}
        for token, (name, role) in tokens.items():
            keys.setdefault((name, role), []).append(token_key(master, name, token))
        self._keys = {identity: tuple(found) for identity, found in keys.items()}

    def issue(self, name: str, role: str, now: float, session_id: str | None = None) -> str:
        """A cookie value for a session of token `name` (role `role`) from `now` on."""
        keys = self._keys.get((name, role))
        if not keys:
            raise KeyError(f"no API token {name!r} with role {role!r}")
        sid = secrets.token_urlsafe(16) if session_id is None else session_id
        if not _ID.fullmatch(sid):
            raise ValueError("a session id is 8-64 letters, digits, '_' or '-'")
        signed = f"{sid}.{math.floor(now) + self.ttl}.{encode_name(name)}.{role}"
        return f"{signed}.{_mac(keys[0], signed)}"

    def verify(self, value: str, now: float) -> Session | Rejected:
        """The session `value` holds if it is ours, intact, its token still there, unexpired."""
        if len(value) > MAX_VALUE:
            return Rejected.INVALID
        fields = value.split(".")
        if len(fields) != 5:
            return Rejected.INVALID
        sid, expires, name, role, mac = fields
        if not (_ID.fullmatch(sid) and _EXPIRES.fullmatch(expires) and _NAME.fullmatch(name)):
            return Rejected.INVALID
        keys = self._keys.get((unquote(name), role), ())
        signed = value.rpartition(".")[0]
        good = False
        for key in keys:  # a name may be listed with more than one token
            good |= hmac.compare_digest(_mac(key, signed), mac)
        if not good:  # forged, altered, or its token changed, gone or of another role
            return Rejected.INVALID
        if now >= int(expires):
            return Rejected.EXPIRED
        return Session(sid, int(expires), unquote(name), role)


def _mac(key: bytes, signed: str) -> str:
    digest = hmac.new(key, signed.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class CookieRules:
    """The attributes of the session cookie: the page's only, never readable by a script.

    ``Secure`` unless `secure` is false (a worker served over plain http, as
    ``leadpulse dev`` does); behind a TLS-terminating proxy it stays on.
    """

    max_age: int
    secure: bool = True

    def set(self, value: str) -> str:
        """The Set-Cookie header value that keeps session `value` for `max_age` seconds."""
        return f"{COOKIE}={value}; Max-Age={self.max_age}{self._flags()}"

    def clear(self) -> str:
        """The Set-Cookie header value that makes the browser drop the session now."""
        return f"{COOKIE}=; Max-Age=0{self._flags()}"

    def _flags(self) -> str:
        return "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if self.secure else "")


class SignInLimiter:
    """At most `max_failures` failed sign-ins per client per fixed window of `window` s.

    A client's window opens at its first failure and ends `window` seconds
    later (at that instant it may try again). Successes are not counted and
    reset nothing: a valid read token does not buy more guesses at an admin
    one. At most `max_clients` clients are tracked; past that, ended windows
    are dropped first, then the oldest.
    """

    def __init__(self, max_failures: int, window: float, *, max_clients: int = 10_000) -> None:
        if max_failures < 1 or window <= 0 or max_clients < 1:
            raise ValueError(
                "a sign-in limit needs max_failures >= 1, window > 0, max_clients >= 1"
            )
        self.max_failures = max_failures
        self.window = window
        self.max_clients = max_clients
        self._failures: OrderedDict[str, tuple[float, int]] = OrderedDict()
        """client -> (its window's start, failures in it), oldest window first."""

    def __len__(self) -> int:
        return len(self._failures)

    def retry_after(self, client: str, now: float) -> int | None:
        """Whole seconds `client` must wait before it may try again (at least 1), else None."""
        found = self._failures.get(client)
        if found is None:
            return None
        start, failures = found
        if now >= start + self.window:
            del self._failures[client]
            return None
        if failures < self.max_failures:
            return None
        return max(1, math.ceil(start + self.window - now))

    def failed(self, client: str, now: float) -> None:
        """Count a failed sign-in of `client` at `now`."""
        found = self._failures.get(client)
        if found is not None and now < found[0] + self.window:
            self._failures[client] = (found[0], found[1] + 1)
            return
        self._failures.pop(client, None)
        self._make_room(now)
        self._failures[client] = (now, 1)

    def _make_room(self, now: float) -> None:
        while self._failures:
            oldest, (start, _) = next(iter(self._failures.items()))
            if now < start + self.window and len(self._failures) < self.max_clients:
                return
            del self._failures[oldest]
