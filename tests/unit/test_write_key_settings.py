"""LEADPULSE_WRITE_KEYS: SOURCE=KEY pairs, checked when settings load, never echoed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadpulse.streams.settings import Settings, parse_write_keys

KEY_A = "wk_aaaaaaaaaaaaaaaaaaaa"
KEY_B = "wk_bbbbbbbbbbbbbbbbbbbb"


def test_pairs_map_each_key_to_its_source() -> None:
    assert parse_write_keys(f"website={KEY_A}, crm = {KEY_B},") == {KEY_A: "website", KEY_B: "crm"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no write keys"),
        (" , ", "no write keys"),
        (KEY_A, "entry 1: expected SOURCE=KEY"),
        (f"website={KEY_A},={KEY_B}", "entry 2: expected SOURCE=KEY"),
        ("website=", "entry 1: expected SOURCE=KEY"),
        ("website=short", "shorter than 16"),
        (f"website={KEY_A},crm={KEY_A}", "listed twice"),
    ],
)
def test_malformed_lists_are_refused_naming_the_entry(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_write_keys(text)


def test_settings_refuse_a_bad_list_at_load_without_showing_the_key() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(write_keys="website=sh0rt-secret")
    assert "shorter than 16" in str(raised.value)
    # pydantic echoes the input value; what matters is that the parsed message names no key
    assert "sh0rt-secret" not in raised.value.errors()[0]["msg"]


def test_settings_expose_sources_and_sales_names() -> None:
    settings = Settings(write_keys=f"website={KEY_A},crm={KEY_B}", sales_sources=" crm ,")
    assert settings.write_key_sources == {KEY_A: "website", KEY_B: "crm"}
    assert settings.sales_source_names == frozenset({"crm"})
    assert KEY_A not in repr(settings)
    assert Settings().write_key_sources == {}


def test_the_cli_names_the_variable_and_never_prints_the_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadpulse.streams.cli.common import load_settings

    monkeypatch.setenv("LEADPULSE_WRITE_KEYS", f"website={KEY_A},crm={KEY_A}")
    with pytest.raises(SystemExit) as raised:
        load_settings()
    message = str(raised.value)
    assert "LEADPULSE_WRITE_KEYS: " in message
    assert "listed twice" in message
    assert KEY_A not in message
