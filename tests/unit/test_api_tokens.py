"""API tokens: the settings format, the constant-time lookup, roles, the page's sign-in."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadpulse.streams.http.auth import (
    COOKIE,
    ApiTokens,
    Denied,
    Login,
    Principal,
    Role,
    bearer,
    cookie_token,
    denied_page,
    login_cookie,
    new_token,
    page_access,
    without_token,
)
from leadpulse.streams.settings import Settings, parse_api_tokens

ADMIN = "tk_admin_0123456789abcdef"
READ = "tk_read_0123456789abcdefg"
TOKENS = ApiTokens(parse_api_tokens(f"ops={ADMIN}:admin, grafana={READ}:read"))


def test_the_format_is_name_token_role() -> None:
    assert parse_api_tokens(f"ops={ADMIN}:admin,grafana={READ}:READ,") == {
        ADMIN: ("ops", "admin"),
        READ: ("grafana", "read"),
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ops", "entry 1: expected NAME=TOKEN:ROLE"),
        (f"ops={ADMIN}", "entry 1: expected NAME=TOKEN:ROLE"),
        (f"a={READ}:read,={ADMIN}:admin", "entry 2: expected NAME=TOKEN:ROLE"),
        (f"ops={ADMIN}:root", "entry 1 ('ops'): role must be read or admin"),
        ("ops=sh0rt:admin", "API token 'ops': shorter than 16 characters"),
        ("ops=has spaces in it 0123:admin", "API token 'ops': only letters, digits"),
        ("ops=semi;colon0123456789:admin", "API token 'ops': only letters, digits"),
        (f"a={ADMIN}:read,b={ADMIN}:admin", "API token 'b': the same token is listed twice"),
        (" , ", "no API tokens"),
    ],
)
def test_bad_token_lists_name_the_entry_never_the_token(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_api_tokens(text)
    assert problem in str(caught.value)
    for secret in (ADMIN, "sh0rt", "semi;colon0123456789", "has spaces in it 0123"):
        assert secret not in str(caught.value)


def test_settings_reject_a_bad_list_at_load_and_keep_the_value_secret() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(api_tokens="ops=tooshort:admin")
    assert "shorter than 16" in str(caught.value)
    settings = Settings(api_tokens=f"grafana={READ}:read,ops={ADMIN}:admin")
    assert ADMIN not in repr(settings)
    assert settings.api_token_roles[ADMIN] == ("ops", "admin")
    assert settings.local_api_token() == ADMIN  # an admin token first, whatever the order
    assert Settings(api_tokens=f"g={READ}:read").local_api_token() == READ
    assert Settings().local_api_token() is None
    assert Settings(api_tokens="  ").api_tokens is None  # an empty variable: no tokens
    assert Settings().api_token_roles == {}


def test_lookup_and_roles() -> None:
    assert TOKENS.principal_of(ADMIN) == Principal("ops", Role.ADMIN)
    assert TOKENS.principal_of(READ) == Principal("grafana", Role.READ)
    assert TOKENS.principal_of(READ + "x") is None
    assert TOKENS.principal_of("") is None
    assert TOKENS.principal_of(None) is None
    assert TOKENS.principal_of("\udcff-lone-surrogate-00000") is None  # no UnicodeEncodeError
    admin = {"Authorization": f"Bearer {ADMIN}"}
    read = {"Authorization": f"bearer  {READ} "}
    assert TOKENS.check(admin, need=Role.ADMIN) == Principal("ops", Role.ADMIN)
    assert TOKENS.check(read) == Principal("grafana", Role.READ)
    refused = TOKENS.check(read, need=Role.ADMIN)
    assert isinstance(refused, Denied)
    assert (refused.status, refused.code) == (403, "forbidden")
    assert "'grafana'" in refused.message


@pytest.mark.parametrize(
    ("headers", "code"),
    [
        ({}, "unauthorized"),
        ({"Authorization": "Basic b3BzOg=="}, "unauthorized"),
        ({"Authorization": "Bearer wrong-token-0123456789"}, "unauthorized"),
        ({"Cookie": f"{COOKIE}=wrong-token-0123456789"}, "unauthorized"),
    ],
)
def test_no_or_a_wrong_token_is_a_401(headers: dict[str, str], code: str) -> None:
    refused = TOKENS.check(headers)
    assert isinstance(refused, Denied)
    assert (refused.status, refused.body()["code"]) == (401, code)
    assert "wrong-token" not in refused.message


def test_with_no_tokens_configured_everything_is_refused_saying_what_to_set() -> None:
    refused = ApiTokens({}).check({"Authorization": f"Bearer {ADMIN}"})
    assert isinstance(refused, Denied)
    assert refused.status == 401
    assert refused.code == "no_tokens_configured"
    assert "LEADPULSE_API_TOKENS" in refused.message


def test_the_cookie_carries_the_token_for_the_page() -> None:
    assert TOKENS.check({"Cookie": f"theme=dark; {COOKIE}={READ}"}) == Principal(
        "grafana", Role.READ
    )
    assert cookie_token(None) is None
    assert cookie_token("theme=dark") is None
    assert cookie_token('junk="unterminated') is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None
    cookie = login_cookie(READ)
    assert cookie.startswith(f"{COOKIE}={READ}; Path=/")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie
    assert "; Secure" in login_cookie(READ, secure=True)


def test_a_token_in_the_url_signs_in_and_is_dropped_from_it() -> None:
    signed = page_access(TOKENS, {}, "/ui", {"token": READ, "limit": "5"}, f"token={READ}&limit=5")
    assert signed == Login("/ui?limit=5", login_cookie(READ))
    signed = page_access(TOKENS, {}, "/ui/leads/a%20b", {"token": ADMIN}, f"token={ADMIN}")
    assert isinstance(signed, Login)
    assert signed.location == "/ui/leads/a%20b"
    refused = page_access(TOKENS, {}, "/ui", {"token": "nope-0123456789abcdef"}, "token=nope")
    assert isinstance(refused, Denied)
    assert refused.status == 401
    assert page_access(TOKENS, {"Cookie": f"{COOKIE}={READ}"}, "/ui", {}, "") == Principal(
        "grafana", Role.READ
    )
    assert without_token("/ui", "a=1&token=x&b=%3C") == "/ui?a=1&b=%3C"
    assert without_token("/ui", "") == "/ui"


def test_the_refusal_page_escapes_and_offers_a_form() -> None:
    page = denied_page(Denied(401, "unauthorized", "no <token>"), '/ui/leads/"x"')
    assert "no &lt;token&gt;" in page
    assert 'action="/ui/leads/&quot;x&quot;"' in page
    assert 'name="token"' in page
    assert "<script" not in page
    forbidden = denied_page(Denied(403, "forbidden", "read only"), "/ui")
    assert "<form" not in forbidden


def test_new_tokens_are_valid_and_distinct() -> None:
    made = {new_token() for _ in range(20)}
    assert len(made) == 20
    text = ",".join(f"t{n}={token}:read" for n, token in enumerate(made))
    assert set(parse_api_tokens(text)) == made
