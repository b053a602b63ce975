"""What a destination receives: the Standard Webhooks JSON body, or a Slack message.

Pure: the time is passed in (Slack shows how long ago the tipping event was).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from leadpulse.schemas.delivery import WEBHOOK_TYPES, WebhookBody
from leadpulse.schemas.messages import Handoff, StageTransition

Message = Handoff | StageTransition

TOP_REASONS = 3
SLACK_TEXT_LIMIT = 3000
"""Slack's limit on a section block's text."""


def message_id(message: Message) -> str:
    """The webhook id: the handoff or transition id, stable across retries and replays."""
    return message.handoff_id if isinstance(message, Handoff) else message.transition_id


def kind_of(message: Message) -> str:
    return "handoffs" if isinstance(message, Handoff) else "transitions"


def json_body(message: Message) -> bytes:
    """``{type, timestamp, data}``: `timestamp` is when leadpulse decided the message."""
    body = WebhookBody(
        type=WEBHOOK_TYPES[kind_of(message)], timestamp=message.occurred_at, data=message
    )
    return body.model_dump_json().encode()


def ago(seconds: float) -> str:
    """A short human duration: 45 s, 12 min, 3 h 5 min, 2 d 4 h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _profile_text(message: Message, key: str) -> str | None:
    profile = message.profile if isinstance(message, Handoff) else {}
    value = profile.get(key)
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:200]


def _escape(text: str) -> str:
    """Slack mrkdwn control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(message: Message, now: datetime) -> dict[str, Any]:
    """An incoming-webhook message: `text` (the notification fallback) and `blocks`."""
    who = _profile_text(message, "name") or _profile_text(message, "email") or message.lead_id
    company = _profile_text(message, "company") or (
        message.account_id if isinstance(message, Handoff) else None
    )
    title = _profile_text(message, "title")
    since = ago((now - message.occurred_at).total_seconds())
    if isinstance(message, Handoff):
        headline = f"New sales-ready lead: {who}" + (f" ({company})" if company else "")
    else:
        headline = f"Lead {who} moved {message.from_stage} -> {message.to_stage}"
    tier = f", tier {message.tier}" if message.tier else ""
    text = (
        f"{headline}: grade {message.grade}{tier}, engagement {message.engagement:.0f}, "
        f"{since} since the tipping event"
    )
    fields = [
        f"*Who*\n{_escape(who)}",
        f"*Company*\n{_escape(company or '-')}",
        f"*Title*\n{_escape(title or '-')}",
        f"*Grade*\n{_escape(message.grade)} (fit {message.fit:.0f})",
        f"*Engagement*\n{message.engagement:.1f}",
        f"*Tipping event*\n{since} ago",
    ]
    if message.tier:
        fields.insert(4, f"*Tier*\n{_escape(message.tier)}")
    reasons = sorted(message.reasons, key=lambda r: -abs(r.points))[:TOP_REASONS]
    why = "\n".join(f"- {_escape(r.rule)}: {r.points:+.1f}" for r in reasons) or "-"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": headline[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f[:2000]} for f in fields]},
        {
            "type": "section",
            "text": {"type": "mrkdwn", "text": f"*Top reasons*\n{why}"[:SLACK_TEXT_LIMIT]},
        },
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": _escape(
                        f"lead {message.lead_id} | model {message.model_version} | "
                        f"id {message_id(message)}"
                    )[:SLACK_TEXT_LIMIT],
                }
            ],
        },
    ]
    return {"text": text, "blocks": blocks}


def slack_body(message: Message, now: datetime) -> bytes:
    return json.dumps(slack_message(message, now), separators=(",", ":")).encode()
