"""Write keys: constant-time lookup of the source, and the Basic header the SDKs send."""

from __future__ import annotations

import base64
import hmac

import pytest

from leadpulse.streams.collector import auth
from leadpulse.streams.collector.auth import Source, WriteKeys, basic_username

KEYS = {
    "wk_website_0123456789abcdef": "website",
    "wk_crm_0123456789abcdefghij": "crm",
    "wk_mobile_0123456789abcdef0": "mobile",
    "wk_sales_tool_0123456789abc": "salesforce",
}


@pytest.fixture
def keys() -> WriteKeys:
    return WriteKeys(KEYS, frozenset({"salesforce", "not-a-configured-source"}))


@pytest.mark.parametrize(("key", "name"), list(KEYS.items()))
def test_every_key_names_its_own_source(keys: WriteKeys, key: str, name: str) -> None:
    source = keys.source_of(key)
    assert source == Source(name, sales=name == "salesforce")


def test_sources_and_length(keys: WriteKeys) -> None:
    assert len(keys) == 4
    assert keys.sources == [
        Source("website"),
        Source("crm"),
        Source("mobile"),
        Source("salesforce", sales=True),
    ]


def test_two_keys_may_name_the_same_source() -> None:
    keys = WriteKeys({"a" * 16: "website", "b" * 16: "website"})
    assert keys.source_of("a" * 16) == keys.source_of("b" * 16) == Source("website")


# (case, presented)
UNKNOWN: list[tuple[str, str | None]] = [
    ("none", None),
    ("empty", ""),
    ("prefix of a key", "wk_website_0123456789abcde"),
    ("key plus a character", "wk_website_0123456789abcdef0"),
    ("key in capitals", "WK_WEBSITE_0123456789ABCDEF"),
    ("key with a space", " wk_website_0123456789abcdef"),
    ("a source name", "website"),
    ("non-ASCII", "wk_wébsite_0123456789abcdef"),
    ("lone surrogate", "\ud800"),
    ("surrogate-escaped byte", "wk_website_0123456789abcde\udcff"),
    ("NUL", "\x00"),
    ("long", "x" * 100_000),
]


@pytest.mark.parametrize(("case", "presented"), UNKNOWN, ids=[u[0] for u in UNKNOWN])
def test_anything_else_is_no_source(keys: WriteKeys, case: str, presented: str | None) -> None:
    assert keys.source_of(presented) is None


@pytest.mark.parametrize(
    "presented",
    [*KEYS, "wk_nobody_0123456789abcdef0", "", "\ud800"],
    ids=["first", "second", "third", "last", "unknown", "empty", "surrogate"],
)
def test_every_key_is_compared_whatever_is_presented(
    keys: WriteKeys, presented: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Constant time: the number of comparisons does not depend on where (or if) it matches."""
    compared: list[bytes] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(a)
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    keys.source_of(presented)
    assert sorted(compared) == sorted(key.encode() for key in KEYS)


def test_no_keys_no_source() -> None:
    assert WriteKeys({}).source_of("anything") is None


def basic(user_password: bytes | str, scheme: str = "Basic") -> str:
    raw = user_password.encode() if isinstance(user_password, str) else user_password
    return f"{scheme} {base64.b64encode(raw).decode()}"


KEY = "wk_website_0123456789abcdef"

# (case, header, expected user name)
HEADERS: list[tuple[str, str | None, str | None]] = [
    ("key and empty password (the SDKs)", basic(f"{KEY}:"), KEY),
    ("lowercase scheme", basic(f"{KEY}:", "basic"), KEY),
    ("uppercase scheme", basic(f"{KEY}:", "BASIC"), KEY),
    ("padding spaces", f"  Basic   {base64.b64encode(f'{KEY}:'.encode()).decode()}  ", KEY),
    ("password present: the user name is the key", basic(f"{KEY}:secret"), KEY),
    ("password with colons", basic(f"{KEY}:a:b:c"), KEY),
    ("no colon: all of it is the user name", basic(KEY), KEY),
    ("non-ASCII user name in UTF-8", basic("clé:"), "clé"),
    ("empty user name", basic(":secret"), None),
    ("empty credentials", basic(""), None),
    ("scheme only", "Basic", None),
    ("scheme and space only", "Basic ", None),
    ("no header", None, None),
    ("empty header", "", None),
    ("another scheme", f"Bearer {KEY}", None),
    ("no scheme", base64.b64encode(f"{KEY}:".encode()).decode(), None),
    ("bad base64 characters", "Basic !!!notbase64!!!", None),
    (
        "base64 without its padding",
        "Basic " + base64.b64encode(b"abcd:").decode().rstrip("="),
        None,
    ),
    ("base64 with a space inside", "Basic d2tf c2l0ZTo=", None),
    ("base64url alphabet", "Basic " + base64.urlsafe_b64encode(b"\xfb\xff:").decode(), None),
    ("not UTF-8 once decoded", basic(b"\xff\xfe:"), None),
    ("non-ASCII in the header", "Basic d2tf\u00e9c2l0ZTo=", None),
    ("surrogate-escaped byte in the header", "Basic d2tf\udcffc2l0ZTo=", None),
    ("lone surrogate in the header", "Basic \ud800", None),
    ("NUL in the header", "Basic \x00", None),
]


@pytest.mark.parametrize(("case", "header", "expected"), HEADERS, ids=[h[0] for h in HEADERS])
def test_basic_header_variants(case: str, header: str | None, expected: str | None) -> None:
    assert basic_username(header) == expected


def test_basic_user_name_is_looked_up(keys: WriteKeys) -> None:
    assert keys.source_of(basic_username(basic(f"{KEY}:"))) == Source("website")
