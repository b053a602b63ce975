"""What `leadpulse lead`, ``/leads/{id}`` and the lead page show of sales feedback."""

from __future__ import annotations

from typing import Any

from leadpulse.scoring import explain
from leadpulse.scoring.feedback import sales_view
from leadpulse.streams.cli.format import format_lead
from leadpulse.streams.http.leadpage import render
from tests.unit.test_feedback import MEDDIC, Lead


def worked_lead() -> Lead:
    lead = Lead()
    handoff = lead.hand_off()
    lead.send("sales_accepted", after=900, handoff_id=handoff)
    lead.send(
        "qualification",
        handoff_id=handoff,
        framework="meddic",
        criteria={"economic_buyer": "met", "champion": "not_met"},
        notes="<b>CFO</b> on the call",
    )
    lead.send("sales_accepted", handoff_id="h-old")
    return lead


def view_of(lead: Lead) -> dict[str, Any]:
    state = lead.state
    return {
        "lead_id": state.lead_id,
        "found": True,
        "anonymous": False,
        "model_version": MEDDIC.model_version,
        "explanation": explain(state, state.clock, MEDDIC).model_dump(mode="json"),
        "sales": sales_view(state, MEDDIC),
    }


def test_the_json_view_has_handoff_acceptance_framework_status_and_history() -> None:
    lead = worked_lead()
    sales = sales_view(lead.state, MEDDIC)
    assert sales["handoff_id"] == lead.state.handoff_id
    assert sales["time_to_accept_seconds"] == 900
    (meddic,) = sales["frameworks"]
    assert (meddic["framework"], meddic["label"], meddic["met"], meddic["of"]) == (
        "meddic",
        "MEDDIC",
        1,
        6,
    )
    assert meddic["criteria"] == {
        "metrics": "unknown",
        "economic_buyer": "met",
        "decision_criteria": "unknown",
        "decision_process": "unknown",
        "identify_pain": "unknown",
        "champion": "not_met",
    }
    assert meddic["sql"]["qualified"] is False
    assert "SQL needs identify_pain, champion met" in meddic["sql"]["summary"]
    assert [(h["type"], h["applied"], h["stale"]) for h in sales["history"]] == [
        ("sales_accepted", True, False),
        ("qualification", True, False),
        ("sales_accepted", False, True),
    ]
    assert sales["history"][1]["note"] == "<b>CFO</b> on the call"
    assert sales["history"][0]["at"].endswith("+00:00")


def test_a_lead_without_feedback_or_handoff_shows_no_sales_section() -> None:
    lead = Lead()
    lead.send("ping")
    sales = sales_view(lead.state, MEDDIC)
    assert (sales["handoff_id"], sales["history"]) == (None, [])
    text = format_lead(view_of(lead))
    assert "feedback (oldest first)" not in text
    assert "handoff     " not in text
    assert "Sales feedback" not in render(lead.state, lead.state.clock, MEDDIC)


def test_leadpulse_lead_prints_the_feedback() -> None:
    lines = format_lead(view_of(worked_lead())).splitlines()
    text = "\n".join(lines)
    assert any(line.startswith("handoff     ") for line in lines)
    assert any(line.startswith("accepted    ") and line.endswith("(15m after)") for line in lines)
    assert "MEDDIC      1 of 6 met; not SQL" in lines
    assert "  economic_buyer               met" in lines
    assert "feedback (oldest first):" in lines
    assert "    note: <b>CFO</b> on the call" in lines
    assert "sales_accepted   [stale] not applied: answers handoff h-old" in text


def test_the_lead_page_shows_feedback_escaped() -> None:
    lead = worked_lead()
    lead.send("sales_accepted", handoff_id="<i>forged</i>")
    page = render(lead.state, lead.state.clock, MEDDIC)
    assert "<h2>Sales feedback</h2>" in page
    assert "1 of 6 met" in page
    assert "not applied: answers handoff h-old" in page
    assert "<i>forged</i>" not in page
    assert "answers handoff &lt;i&gt;forged&lt;/i&gt;" in page
