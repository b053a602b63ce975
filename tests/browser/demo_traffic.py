"""The demo's traffic (`streams.dev.demo`), as events to produce straight to Kafka.

`leadpulse demo` sends its personas' journeys through the collector, which
stamps each call's time; here the same journeys get an ``occurred_at`` of
their own, spread over the `span` seconds before `now`, in the demo's order.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from leadpulse.streams.dev.demo import DEMO_MODEL, persona_events, plan_traffic

DEMO_MODEL_FILE = Path(str(resources.files("leadpulse.streams.dev") / DEMO_MODEL))


def demo_bodies(leads: int, seed: int, now: datetime, span: float = 20.0) -> list[dict[str, Any]]:
    """Every event of the demo's `leads` personas, oldest first, ending at `now`."""
    plan, _ = plan_traffic(leads, span, seed)
    bodies = []
    for item in plan:
        if item.payload.get("type") == "???":  # the collector's unmapped-name case: no event
            continue
        body = dict(item.payload)
        body["occurred_at"] = (now - timedelta(seconds=span - item.at)).isoformat()
        bodies.append(body)
    return bodies


def known_leads(bodies: list[dict[str, Any]]) -> set[str]:
    """The lead ids the events name (anonymous-only visitors are not leads)."""
    return {str(body["lead_id"]) for body in bodies if body.get("lead_id")}


def buyer_journey(n: int, now: datetime, span: float = 8.0) -> list[dict[str, Any]]:
    """One more buyer (the persona that is handed off), ending at `now`."""
    journey = persona_events("buyer", n, random.Random(n))
    step = span / len(journey)
    return [
        {**body, "occurred_at": (now - timedelta(seconds=span - i * step)).isoformat()}
        for i, body in enumerate(journey)
    ]
