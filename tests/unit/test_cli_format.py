"""`leadpulse lead` text: what an operator reads, notes (clamps, dropped traits) included."""

from __future__ import annotations

import json

from leadpulse.streams.cli.format import format_lead


def view(**explanation: object) -> dict[str, object]:
    base = {
        "stage": "mql",
        "engagement": 55.5,
        "fit": 40,
        "grade": "A",
        "parts": [{"rule": "demo-request", "points": 55.5}],
        "fit_parts": [{"rule": "mid-market", "points": 40}],
    }
    return {
        "lead_id": "lead-1",
        "found": True,
        "anonymous": False,
        "model_version": "m-1",
        "explanation": {**base, **explanation},
    }


def test_notes_are_printed_after_the_parts() -> None:
    text = format_lead(view(notes=["1 event time clamped to its record time + skew"]))
    lines = text.splitlines()
    assert lines[-2:] == ["notes:", "  1 event time clamped to its record time + skew"]
    assert "demo-request" in text


def test_no_notes_no_section() -> None:
    assert "notes:" not in format_lead(view())
    assert "notes:" not in format_lead(view(notes=[]))


def test_a_merged_id_points_at_its_lead() -> None:
    text = format_lead({"lead_id": "anon-1", "merged_into": "lead-1", "lead": view()})
    assert text.splitlines()[0] == "anon-1 was merged into lead-1"


def test_the_account_and_its_traits_are_shown() -> None:
    lead = {
        **view(),
        "account_id": "acme",
        "account_traits": {"name": "Acme \u00e9", "employees": 300, "bad\nkey": "x\ny"},
    }
    lines = format_lead(lead).splitlines()
    at = lines.index("account     acme")
    assert lines[at + 1 : at + 4] == [
        f'  {"name":28} "Acme \u00e9"',
        f"  {'employees':28} 300",
        f'  {json.dumps("bad" + chr(10) + "key"):28} "x\\ny"',
    ]
    assert lines[at + 4] == "why (engagement, decayed to now):"


def test_no_account_no_line() -> None:
    assert "account" not in format_lead({**view(), "account_id": None, "account_traits": {}})
    assert "account" not in format_lead(view())
