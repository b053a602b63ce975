"""Page sessions: the signed cookie's exact format, what verify refuses, the cookie's
attributes, and the bound on failed sign-ins. The clock is an argument: no sleeps."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadpulse.streams.http.auth import ApiTokens, Principal, Role
from leadpulse.streams.http.sessions import (
    COOKIE,
    CookieRules,
    Rejected,
    Session,
    Sessions,
    SignInLimiter,
)
from leadpulse.streams.settings import Settings, parse_api_tokens

ADMIN = "tk_golden_admin_0123456789"
READ = "tk_golden_read_0123456789ab"
TOKENS = parse_api_tokens(f"ops={ADMIN}:admin,team.a b={READ}:read")
SID = "sess-0001_golden"
NOW = 1_800_000_000.0
TTL = 3600
GOLDEN = "sess-0001_golden.1800003600.ops.admin.tf6NFudRF6PQxKCaHNsd_ODNPV8OCLbbM3Vk-jqypxQ"
"""ops' session from NOW: HMAC-SHA256 over the first four fields with
HMAC(label, label NUL name NUL token), computed apart from this code."""
SECRET = "a-session-secret-of-32-characters-at-least"
GOLDEN_WITH_SECRET = (
    "sess-0001_golden.1800003600.ops.admin.WKaGN-5WbxdlVAu7Z8pT2aB4WR2GPFuiT-MNGNn5eeg"
)
GOLDEN_ODD_NAME = (
    "sess-0001_golden.1800003600.team%2Ea%20b.read.qtqJDoGEIcElVswTEYiNEEUmqzoHi0n-5l6SdM8Wfhw"
)


def sessions(tokens: dict[str, tuple[str, str]] = TOKENS, **options: object) -> Sessions:
    return Sessions(tokens, ttl=TTL, **options)  # type: ignore[arg-type]


def test_the_cookie_value_is_id_expiry_name_role_and_mac() -> None:
    assert sessions().issue("ops", "admin", NOW, SID) == GOLDEN
    assert sessions().issue("ops", "admin", NOW + 0.9, SID) == GOLDEN  # whole seconds
    assert sessions(secret=SECRET).issue("ops", "admin", NOW, SID) == GOLDEN_WITH_SECRET
    # a name with a dot or a space: percent-encoded, so the five fields stay apart
    assert sessions().issue("team.a b", "read", NOW, SID) == GOLDEN_ODD_NAME
    assert ADMIN not in GOLDEN
    assert READ not in GOLDEN_ODD_NAME


def test_verify_accepts_its_own_until_the_expiry_second() -> None:
    ops = Session(SID, 1_800_003_600, "ops", "admin")
    assert sessions().verify(GOLDEN, NOW) == ops
    assert sessions().verify(GOLDEN, NOW + TTL - 0.001) == ops
    assert sessions().verify(GOLDEN, NOW + TTL) is Rejected.EXPIRED  # the edge: not valid
    assert sessions().verify(GOLDEN, NOW + 10 * TTL) is Rejected.EXPIRED
    odd = sessions().verify(GOLDEN_ODD_NAME, NOW)
    assert odd == Session(SID, 1_800_003_600, "team.a b", "read")
    made = sessions().issue("ops", "admin", NOW)  # a random id
    assert sessions().verify(made, NOW) == Session(
        made.split(".")[0], 1_800_003_600, "ops", "admin"
    )
    assert made.split(".")[0] != sessions().issue("ops", "admin", NOW).split(".")[0]


def test_another_worker_with_the_same_settings_accepts_it() -> None:
    assert Sessions(dict(TOKENS), ttl=TTL).verify(GOLDEN, NOW) != Rejected.INVALID
    other = Sessions(dict(reversed(TOKENS.items())), ttl=TTL, secret=SECRET)
    assert isinstance(other.verify(GOLDEN_WITH_SECRET, NOW), Session)
    assert other.verify(GOLDEN, NOW) is Rejected.INVALID  # the secret changed: all gone


def fields(value: str) -> list[str]:
    return value.split(".")


@pytest.mark.parametrize(
    "tampered",
    [
        GOLDEN[:-1] + ("A" if GOLDEN[-1] != "A" else "B"),  # the mac
        GOLDEN.replace("1800003600", "1900003600"),  # a later expiry
        GOLDEN.replace(".ops.", ".ops2."),  # another name
        GOLDEN.replace(".admin.", ".read."),  # a lower role, same name: signed otherwise
        GOLDEN.replace("sess-0001_golden", "sess-0002_golden"),  # the id
        GOLDEN + ".x",  # six fields
        GOLDEN.rpartition(".")[0],  # no mac
        "",
        ADMIN,  # the raw token is no session
        "a" * 5000,
        "sess-0001_golden.18e8.ops.admin." + fields(GOLDEN)[4],
        "sess-0001_golden.1800003600.op;s.admin." + fields(GOLDEN)[4],
    ],
)
def test_anything_altered_is_invalid(tampered: str) -> None:
    assert sessions().verify(tampered, NOW) is Rejected.INVALID


def test_changing_or_removing_the_token_or_its_role_ends_its_sessions() -> None:
    revoked = Sessions(parse_api_tokens(f"team={READ}:read"), ttl=TTL)
    assert revoked.verify(GOLDEN, NOW) is Rejected.INVALID  # ops is gone
    rotated = Sessions(parse_api_tokens("ops=tk_rotated_0123456789abc:admin"), ttl=TTL)
    assert rotated.verify(GOLDEN, NOW) is Rejected.INVALID  # same name, new token
    demoted = Sessions(parse_api_tokens(f"ops={ADMIN}:read"), ttl=TTL)
    assert demoted.verify(GOLDEN, NOW) is Rejected.INVALID  # same token, role changed
    kept = Sessions(
        parse_api_tokens(f"new=tk_another_0123456789abc:read,ops={ADMIN}:admin"), ttl=TTL
    )
    assert isinstance(kept.verify(GOLDEN, NOW), Session)  # another token added: ops' stays


def test_issue_refuses_what_it_cannot_sign() -> None:
    with pytest.raises(KeyError):
        sessions().issue("nobody", "read", NOW)
    with pytest.raises(KeyError):
        sessions().issue("ops", "read", NOW)
    with pytest.raises(ValueError, match="session id"):
        sessions().issue("ops", "admin", NOW, "has.dot.in.it")
    with pytest.raises(ValueError, match="positive"):
        Sessions(TOKENS, ttl=0)
    assert Sessions(TOKENS, ttl=2.5).ttl == 3


def test_the_api_tokens_take_a_session_cookie_never_the_token() -> None:
    tokens = ApiTokens(TOKENS, sessions())
    cookie = {"Cookie": f"theme=dark; {COOKIE}={GOLDEN}"}
    signed = tokens.check(cookie, now=NOW, need=Role.ADMIN)
    assert signed == Principal("ops", Role.ADMIN, Session(SID, 1_800_003_600, "ops", "admin"))
    expired = tokens.check(cookie, now=NOW + TTL)
    assert (getattr(expired, "status", None), getattr(expired, "code", None)) == (
        401,
        "session_expired",
    )
    for raw in (f"{COOKIE}={ADMIN}", f"leadpulse_token={ADMIN}"):
        refused = tokens.check({"Cookie": raw}, now=NOW)
        assert getattr(refused, "status", None) == 401, raw
        assert ADMIN not in getattr(refused, "message", ""), raw
    # a bearer token decides on its own: a bad one is not rescued by a good cookie
    both = {**cookie, "Authorization": "Bearer tk_wrong_0123456789abcdef"}
    assert getattr(tokens.check(both, now=NOW), "status", None) == 401
    assert ApiTokens(TOKENS).check(cookie, now=NOW) != signed  # no sessions known: no one


def test_cookie_rules_render_the_attributes() -> None:
    assert CookieRules(28800).set("v.1") == (
        "leadpulse_session=v.1; Max-Age=28800; Path=/; HttpOnly; SameSite=Strict; Secure"
    )
    assert CookieRules(28800, secure=False).set("v.1") == (
        "leadpulse_session=v.1; Max-Age=28800; Path=/; HttpOnly; SameSite=Strict"
    )
    assert CookieRules(28800).clear() == (
        "leadpulse_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure"
    )
    assert CookieRules(2, secure=False).clear() == (
        "leadpulse_session=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict"
    )


def test_the_limiter_allows_n_failures_then_refuses_until_the_window_ends() -> None:
    limiter = SignInLimiter(3, 300.0)
    for at in (1000.0, 1010.0, 1020.0):
        assert limiter.retry_after("10.0.0.1", at) is None
        limiter.failed("10.0.0.1", at)
    assert limiter.retry_after("10.0.0.1", 1020.0) == 280  # the 4th attempt: refused
    assert limiter.retry_after("10.0.0.1", 1299.5) == 1  # at least a second
    assert limiter.retry_after("10.0.0.2", 1020.0) is None  # per client
    assert limiter.retry_after("10.0.0.1", 1300.0) is None  # the window ended at 1000 + 300
    limiter.failed("10.0.0.1", 1300.0)  # a new window
    assert limiter.retry_after("10.0.0.1", 1300.0) is None
    limiter.failed("10.0.0.1", 1599.0)
    limiter.failed("10.0.0.1", 1599.0)
    assert limiter.retry_after("10.0.0.1", 1599.0) == 1
    assert limiter.retry_after("10.0.0.1", 1600.0) is None


def test_the_limiter_tracks_a_bounded_number_of_clients() -> None:
    limiter = SignInLimiter(1, 60.0, max_clients=3)
    for n in range(3):
        limiter.failed(f"c{n}", 100.0 + n)
    assert len(limiter) == 3
    limiter.failed("c3", 103.0)  # full: the oldest client is forgotten
    assert len(limiter) == 3
    assert limiter.retry_after("c0", 103.0) is None
    assert limiter.retry_after("c1", 103.0) == 58
    limiter.failed("c4", 161.5)  # c1's window ended at 161: it goes, not c2
    assert limiter.retry_after("c2", 161.5) == 1
    assert len(limiter) <= 3
    for n in range(1000):
        limiter.failed(f"flood{n}", 200.0)
    assert len(limiter) == 3
    with pytest.raises(ValueError):
        SignInLimiter(0, 60.0)


def test_the_settings() -> None:
    settings = Settings()
    assert (settings.session_ttl, settings.cookie_secure) == (8 * 3600.0, True)
    assert (settings.sign_in_max_failures, settings.sign_in_window) == (10, 300.0)
    assert settings.session_secret is None
    tuned = Settings(
        session_ttl="2h", sign_in_window="1m", cookie_secure="false", session_secret=SECRET
    )
    assert (tuned.session_ttl, tuned.sign_in_window, tuned.cookie_secure) == (7200.0, 60.0, False)
    assert SECRET not in repr(tuned)
    assert Settings(session_secret=" ").session_secret is None
    for bad in (
        {"session_ttl": 0},
        {"session_ttl": "never"},
        {"sign_in_window": 0},
        {"sign_in_max_failures": 0},
        {"session_secret": "short"},
    ):
        with pytest.raises(ValidationError):
            Settings(**bad)  # type: ignore[arg-type]
