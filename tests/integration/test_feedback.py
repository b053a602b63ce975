"""Sales feedback on the embedded stack: real Tansu, real redis-server, a real worker and collector.

A lead is handed off; then feedback reaches the worker two ways: produced to
the events topic (the operator's own integration), and through the collector
with the ``crm`` source's write key (a trusted sales source). Either way the
lead moves SAL -> SQL by the model's MEDDIC rule, with a StageTransition on
the transitions topic. A tracker's key sending feedback is refused by the
collector (never reaches Kafka); feedback with bad properties is dead-lettered
with the property named; feedback about another handoff is recorded only.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from segment import analytics as segment
from segment.analytics import request as segment_request

from leadpulse.schemas import DeadLetter, Stage
from leadpulse.scoring import LeadState
from leadpulse.streams.dev.devstack import DevStack
from tests.integration.collector_harness import (
    SDK_EVENTS,
    Rig,
    recording,
    running_rig,
    topic_json,
)
from tests.integration.harness import MODEL_YAML, produce, read_state, wait_for

FEEDBACK_MODEL_YAML = (
    MODEL_YAML
    + "  sql: {framework: meddic, require: [economic_buyer, identify_pain, champion], min_met: 4}\n"
    + "  rejection_cooldown: 1h\n"
    + "tiers:\n  excellent: {min_grade: A, rules: {demo-request: 50}}\n  else: risky\n"
    + "events:\n"
    + "".join(f'  "{k}": {v}\n' for k, v in SDK_EVENTS.items())
)
QUALIFIED = {"economic_buyer": "met", "identify_pain": "met", "champion": "met", "metrics": "met"}


@pytest.fixture(scope="module")
def rig(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One worker and one collector (keys: website, crm = the sales source) on the MEDDIC model."""
    with running_rig(stack, tmp_path_factory.mktemp("feedback"), FEEDBACK_MODEL_YAML) as rig:
        yield rig


def new_lead_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ev(kind: str, lead: str, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "lead_id": lead,
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }


def state_of(rig: Rig, lead: str) -> LeadState:
    state = read_state(rig.settings, lead)[1]
    assert state is not None, f"no state for {lead}"
    return state


def mine(values: list[dict[str, Any]], lead: str) -> list[dict[str, Any]]:
    return [v for v in values if v.get("lead_id") == lead]


def handoff_of(rig: Rig, lead: str) -> dict[str, Any]:
    values = topic_json(
        rig.settings, rig.settings.handoffs_topic, lambda vs: bool(mine(vs, lead)), timeout=60
    )
    (handoff,) = mine(values, lead)
    return handoff


def transitions_of(rig: Rig, lead: str, to_stage: str) -> list[dict[str, Any]]:
    values = topic_json(
        rig.settings,
        rig.settings.transitions_topic,
        lambda vs: any(v["to_stage"] == to_stage for v in mine(vs, lead)),
        timeout=60,
    )
    return mine(values, lead)


def test_feedback_produced_to_the_events_topic_moves_sal_to_sql(rig: Rig) -> None:
    lead = new_lead_id("fb-topic")
    produce(
        rig.settings,
        [
            ev("identify", lead, traits={"company_size": 400}),
            ev("page_view", lead, properties={"url": "https://x.io/pricing"}),
            ev("demo_request", lead),
        ],
    )
    handoff = handoff_of(rig, lead)
    assert handoff["tier"] == "excellent"  # grade A, demo-request 60 >= 50
    handoff_id = handoff["handoff_id"]
    accepted = ev("sales_accepted", lead, properties={"handoff_id": handoff_id})
    stale = ev("sales_rejected", lead, properties={"handoff_id": "h-old", "reason": "bad_fit"})
    bad = ev("qualification", lead, properties={"handoff_id": handoff_id, "framework": "spin"})
    partial = {k: v for k, v in QUALIFIED.items() if k != "champion"}
    first = ev(
        "qualification",
        lead,
        properties={"handoff_id": handoff_id, "framework": "meddic", "criteria": partial},
    )
    second = ev(
        "qualification",
        lead,
        properties={
            "handoff_id": handoff_id,
            "framework": "meddic",
            "criteria": {"champion": "met"},
        },
    )
    produce(rig.settings, [accepted, stale, bad, first, second])
    wait_for(
        lambda: state_of(rig, lead).stage == Stage.SQL, timeout=60, what="the lead became an SQL"
    )
    moves = transitions_of(rig, lead, "sql")
    (sql,) = [t for t in moves if t["to_stage"] == "sql"]
    assert (sql["from_stage"], sql["event_id"]) == ("sal", second["event_id"])
    assert sql["reason"].startswith("sales qualified the lead: MEDDIC 4 of 6 met")
    assert not any(t["to_stage"] == "nurture" for t in moves)  # the stale rejection moved nothing
    state = state_of(rig, lead)
    assert state.handoff_id == handoff_id
    assert state.accepted_at is not None
    assert state.qualification == {"meddic": QUALIFIED}
    assert [(f.type, f.applied, f.stale) for f in state.feedback] == [
        ("sales_accepted", True, False),
        ("sales_rejected", False, True),
        ("qualification", True, False),
        ("qualification", True, False),
    ]
    letters = topic_json(
        rig.settings,
        rig.settings.dlq_topic,
        lambda vs: any(bad["event_id"] in v.get("payload", "") for v in vs),
        timeout=60,
    )
    (letter,) = [
        DeadLetter.model_validate(v) for v in letters if bad["event_id"] in v.get("payload", "")
    ]
    assert any(line.startswith("properties.framework: ") for line in letter.errors), letter.errors


def test_feedback_through_the_collector_needs_the_sales_key(rig: Rig) -> None:
    lead = new_lead_id("fb-crm")
    website = segment.Client(rig.keys["website"], host=rig.url, sync_mode=True)
    crm = segment.Client(rig.keys["crm"], host=rig.url, sync_mode=True)
    with recording(segment_request._session) as seen:
        website.identify(lead, {"company_size": 400})
        website.page(lead, properties={"url": "https://x.io/pricing"})
        website.track(lead, "Demo Request")
        handoff_id = handoff_of(rig, lead)["handoff_id"]
        forged = website.track(lead, "Sales Accepted", {"handoff_id": handoff_id})[1]
        (reject,) = seen.exchanges[-1].answer["rejected"]
        assert reject["messageId"] == forged["messageId"]
        assert "may only be sent by a sales tool's write key" in reject["errors"][0]
        typo = crm.track(lead, "Sales Accepted", {"handof_id": handoff_id})[1]
        (reject,) = seen.exchanges[-1].answer["rejected"]
        assert reject["messageId"] == typo["messageId"]
        assert any("properties.handof_id: unknown property" in e for e in reject["errors"])
        crm.track(lead, "Sales Accepted", {"handoff_id": handoff_id})
        assert seen.exchanges[-1].answer == {"success": True, "accepted": 1}
        verdict = crm.track(
            lead,
            "Qualification",
            {"handoff_id": handoff_id, "framework": "meddic", "criteria": QUALIFIED},
        )[1]
        assert seen.exchanges[-1].answer == {"success": True, "accepted": 1}
    wait_for(
        lambda: state_of(rig, lead).stage == Stage.SQL, timeout=60, what="the lead became an SQL"
    )
    (sql,) = [t for t in transitions_of(rig, lead, "sql") if t["to_stage"] == "sql"]
    assert (sql["from_stage"], sql["event_id"]) == ("sal", verdict["messageId"])
    events = topic_json(
        rig.settings,
        rig.settings.events_topic,
        lambda vs: any(v.get("event_id") == verdict["messageId"] for v in vs),
        timeout=30,
    )
    ids = {v["event_id"] for v in mine(events, lead)}
    assert forged["messageId"] not in ids  # the tracker's feedback never reached Kafka
    assert typo["messageId"] not in ids
    state = state_of(rig, lead)
    assert [(f.type, f.applied) for f in state.feedback] == [
        ("sales_accepted", True),
        ("qualification", True),
    ]
