"""One model replayed over records through the worker's own Processor, in memory.

A lead handed off 60 days ago and recycled by decay since (found by the final
sweep at "now"); a visitor merged into a lead that is handed off, accepted
and then rejected by sales. Expected values are literals, and handoff ids come
from `scoring.transition_id` (pinned by tests/unit/test_golden_ids.py).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from leadpulse.schemas import Stage
from leadpulse.scoring import parse_model, transition_id
from leadpulse.streams.pipeline.records import Record
from leadpulse.streams.replay import replay_records

MODEL = parse_model(
    """
version: "replay-1"
engagement:
  rules:
    - {name: pricing-page, event: page_view, when: {url_contains: /pricing}, points: 20,
       half_life: 30d, cap: 40}
    - {name: page-view, event: page_view, points: 1, half_life: 30d, cap: 5}
    - {name: demo-request, event: demo_request, points: 60, half_life: 30d}
fit:
  rules:
    - {name: mid-market, trait: company_size, between: [50, 5000], points: 40}
  grades: {A: 40, B: 20, C: 10}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
"""
)
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
PARTITIONS = 2


def body(event_id: str, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {"event_id": event_id, "type": kind, "occurred_at": at.isoformat(), **fields}


def records(bodies: list[tuple[int, dict[str, Any]]]) -> list[Record]:
    offsets = dict.fromkeys(range(PARTITIONS), 0)
    out = []
    for partition, b in bodies:
        at = datetime.fromisoformat(b["occurred_at"]).timestamp() + 1
        key = (b.get("lead_id") or b.get("anonymous_id")).encode()
        out.append(Record(key, json.dumps(b).encode(), "events", partition, offsets[partition], at))
        offsets[partition] += 1
    return out


async def test_a_replay_counts_handoffs_recycles_merges_and_sales_outcomes() -> None:
    old = NOW - timedelta(days=60)
    day = NOW - timedelta(days=1)
    handoff_s = transition_id("s", Stage.MQL, Stage.SAL, event_id="s-demo")
    handoff_r = transition_id("r", Stage.MQL, Stage.SAL, event_id="r-demo")
    pricing = {"properties": {"url": "https://x.io/pricing"}}
    history = records(
        [
            (0, body("r-id", "identify", old, lead_id="r", traits={"company_size": 400})),
            (0, body("r-pr", "page_view", old + timedelta(minutes=1), lead_id="r", **pricing)),
            (0, body("r-demo", "demo_request", old + timedelta(minutes=2), lead_id="r")),
            (
                1,
                body(
                    "v-pv",
                    "page_view",
                    day - timedelta(days=1),
                    anonymous_id="v",
                    properties={"url": "https://x.io/blog"},
                ),
            ),
            (
                0,
                body(
                    "s-id",
                    "identify",
                    day,
                    lead_id="s",
                    anonymous_id="v",
                    traits={"company_size": 400},
                ),
            ),
            (0, body("s-pr", "page_view", day, lead_id="s", **pricing)),
            (0, body("s-demo", "demo_request", day, lead_id="s")),
            (
                0,
                body(
                    "s-acc",
                    "sales_accepted",
                    NOW - timedelta(hours=2),
                    lead_id="s",
                    properties={"handoff_id": handoff_s},
                ),
            ),
            (
                0,
                body(
                    "s-rej",
                    "sales_rejected",
                    NOW - timedelta(hours=1),
                    lead_id="s",
                    properties={"handoff_id": handoff_s, "reason": "not_ready"},
                ),
            ),
        ]
    )
    result = await replay_records(history, MODEL, partitions=PARTITIONS, now=NOW.timestamp())
    assert result.events == 9
    assert sorted(h.handoff_id for h in result.handoffs) == sorted([handoff_r, handoff_s])
    assert result.mqls == 2
    # r: 81 points 60 days ago, half-life 30d: below 25 after ~50.9 days, by decay alone
    assert result.recycles == 1
    assert result.lead_stages == {"r": "nurture", "s": "nurture"}
    assert result.stages == {"nurture": 2}
    assert result.outcomes == {
        "accepted": {handoff_s},
        "rejected": {handoff_s},
        "sql": set(),
        "disqualified": set(),
    }
    # s's first touch is its visitor's page view, two days before now
    assert result.first_touch == {
        "r": old.timestamp(),
        "s": (day - timedelta(days=1)).timestamp(),
    }
    # the rule parts at s's handoff, all at one moment: partition 0 went first, so the
    # visitor's page view (partition 1) was not credited yet
    assert result.parts[handoff_s] == {"pricing-page": 20.0, "page-view": 1.0, "demo-request": 60.0}
