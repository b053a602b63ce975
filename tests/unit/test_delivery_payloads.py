"""What destinations receive: the webhook JSON body and the Slack message (Slack's own models)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, SectionBlock

from leadpulse.schemas.messages import Handoff, RuleContribution, Stage, StageTransition
from leadpulse.streams.delivery.payloads import ago, json_body, slack_message

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def handoff(**changes: object) -> Handoff:
    values: dict[str, object] = {
        "handoff_id": "h-42",
        "lead_id": "lead-42",
        "engagement": 72.4,
        "fit": 55,
        "grade": "A",
        "occurred_at": NOW - timedelta(minutes=12),
        "model_version": "2026-11-a",
        "reasons": [
            RuleContribution(rule="pricing-page", points=18.2),
            RuleContribution(rule="demo-request", points=40),
            RuleContribution(rule="page-view", points=2),
            RuleContribution(rule="unsubscribe", points=-30),
        ],
        "profile": {"name": "Ada <Lovelace>", "company": "Analytical Engines", "title": "CTO"},
    }
    values.update(changes)
    return Handoff.model_validate(values)


def test_json_body_is_type_timestamp_data() -> None:
    body = json.loads(json_body(handoff()))
    assert set(body) == {"type", "timestamp", "data"}
    assert body["type"] == "lead.handoff"
    assert body["timestamp"] == "2026-12-01T09:48:00Z"
    assert body["data"]["handoff_id"] == "h-42"
    assert Handoff.model_validate(body["data"]) == handoff()


def test_slack_message_validates_against_slacks_block_models() -> None:
    message = slack_message(handoff(), NOW)
    assert set(message) == {"text", "blocks"}
    assert isinstance(message["text"], str)
    assert "Ada <Lovelace>" in message["text"]  # fallback text: plain, for notifications
    parsed = [Block.parse(block) for block in message["blocks"]]
    assert [type(b) for b in parsed] == [HeaderBlock, SectionBlock, SectionBlock, ContextBlock]
    for block in parsed:
        assert block is not None
        block.validate_json()  # raises SlackObjectFormationError on a bad block
        assert block.to_dict() == message["blocks"][parsed.index(block)]


def test_slack_message_tells_a_rep_who_why_and_how_long_ago() -> None:
    message = slack_message(handoff(), NOW)
    text = json.dumps(message["blocks"])
    for expected in (
        "Ada &lt;Lovelace&gt;",  # escaped in mrkdwn
        "Analytical Engines",
        "CTO",
        "*Grade*\\nA",
        "72.4",
        "12 min ago",
        "demo-request: +40.0",
        "unsubscribe: -30.0",
        "pricing-page: +18.2",
    ):
        assert expected in text, expected
    assert "page-view" not in text  # only the top three reasons


def test_slack_message_shows_the_success_ready_tier_when_the_model_has_tiers() -> None:
    tiered = slack_message(handoff(tier="excellent"), NOW)
    assert "tier excellent" in tiered["text"]
    assert "*Tier*\\nexcellent" in json.dumps(tiered["blocks"])
    for block in tiered["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()
    untiered = slack_message(handoff(), NOW)
    assert "Tier" not in json.dumps(untiered)
    assert "tier" not in untiered["text"]


def test_long_values_stay_within_slacks_limits() -> None:
    long = handoff(profile={"name": "N" * 500, "company": "C" * 500, "title": "T" * 500})
    for block in slack_message(long, NOW)["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()


def test_transitions_render_too() -> None:
    transition = StageTransition(
        transition_id="t-1",
        lead_id="lead-7",
        from_stage=Stage.SAL,
        to_stage=Stage.NURTURE,
        engagement=20,
        fit=10,
        grade="C",
        occurred_at=NOW - timedelta(hours=3, minutes=5),
        model_version="m",
        reason="decayed",
    )
    message = slack_message(transition, NOW)
    assert "lead-7 moved sal -> nurture" in message["text"]
    assert json.loads(json_body(transition))["type"] == "lead.transition"
    for block in message["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5, "5 s"), (125, "2 min"), (3600, "1 h"), (3 * 3600 + 300, "3 h 5 min"), (90000, "1 d 1 h")],
)
def test_ago(seconds: float, text: str) -> None:
    assert ago(seconds) == text
