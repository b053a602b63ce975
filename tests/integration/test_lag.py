"""A backlog after an outage publishes the same transitions as a run without lag.

ARCHITECTURE.md, "Event time, lag and the sweeper (watermarks)": while a
partition lags, its watermark is the latest event time it has processed, and
the sweeper never evaluates a lead past it. Without that bound the sweeper
judges a lead at wall-clock time in the middle of the backlog: it recycles a
lead whose next hot events are still unread, and those events then hand it off
a second time.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from leadpulse.schemas import encode
from leadpulse.scoring import evaluate, next_recycle_at, parse_model
from leadpulse.streams.dev.devstack import DevStack
from tests.integration.harness import (
    MODEL_YAML,
    poll_topic,
    start_worker,
    wait_for,
    worker_settings,
)
from tests.reliability.campaign import (
    assert_same_states,
    clean_run,
    encode_bodies,
    produce_records,
    read_states,
)

MODEL = parse_model(MODEL_YAML, "integration")
HOT_LEADS = 4
FILLER_EVENTS = 30_000
FILLER_LEADS = 500
SECOND_BURST_AT = 5.0
"""Seconds after t0 of each hot lead's second quick look (+ form fill).

In event time a hot lead never cools below recycle (25) before it: its
engagement is 70 at t0+1 s and still 10 + 60 * 2^(-4/3) = 33.8 just before
t0+5 s. A sweeper that reads the wall clock instead sees the lead at
t0+7 s (10 + 15 < 25) and recycles it first; the second burst then counts
at that later clock (15 + 37.8 + 20 = 72.8) and hands the lead off again.
"""


def _event(kind: str, lead: str, at: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "lead_id": lead,
        "occurred_at": at.isoformat(),
        **extra,
    }


def backlog(t0: datetime, tag: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """4 hot leads around 30,000 filler page views of other leads, event times in order."""
    hot = [f"lag-{tag}-{i}" for i in range(HOT_LEADS)]
    filler = [f"fill-{tag}-{i}" for i in range(FILLER_LEADS)]
    one = t0 + timedelta(seconds=1)
    bodies = [_event("identify", lead, t0, traits={"company_size": 300}) for lead in hot]
    for lead in hot:  # 60 + 10 = 70: MQL and the handoff at once
        bodies += [_event("quick_look", lead, one), _event("form_submit", lead, one)]
    span = SECOND_BURST_AT - 1.0
    for k in range(FILLER_EVENTS):
        at = one + timedelta(seconds=span * (k + 1) / (FILLER_EVENTS + 1))
        url = {"url": "https://acme.io/blog/post"}
        bodies.append(_event("page_view", filler[k % FILLER_LEADS], at, properties=url))
    second = t0 + timedelta(seconds=SECOND_BURST_AT)
    for lead in hot:
        bodies += [_event("quick_look", lead, second), _event("form_submit", lead, second)]
    return bodies, hot, filler


def decision(t: dict[str, Any]) -> tuple[str, str, str, str]:
    return (t["lead_id"], t["from_stage"], t["to_stage"], t["occurred_at"])


async def test_backlog_after_outage_publishes_what_a_run_without_lag_publishes(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = worker_settings(stack, tmp_path, partitions=1)
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    bodies, hot, _ = backlog(t0, uuid.uuid4().hex[:6])
    # the outage: everything is produced while no worker runs
    sent = produce_records(settings, encode_bodies(bodies))

    # what a run without lag decides: the same records, in order, in memory, then
    # each lead evaluated at the wall clock as a caught-up sweeper evaluates it
    clean = await clean_run(sent, MODEL, settings, per_event=False)
    expected = dict(clean.transitions())
    clean_states = clean.states()
    now = time.time()
    for subject, state in list(clean_states.items()):
        swept, made = evaluate(state, now, MODEL, hint=next_recycle_at(state, MODEL))
        clean_states[subject] = swept
        for t in made:
            expected[t.transition_id] = json.loads(encode(t))
    expected_handoffs = clean.handoffs()
    assert {decision(t)[1:3] for t in expected.values()} == {
        ("iql", "mql"),
        ("mql", "sal"),
        ("sal", "nurture"),
    }, "the scenario itself changed: each hot lead must go MQL, SAL, then recycle once"
    assert Counter(h["lead_id"] for h in expected_handoffs.values()) == dict.fromkeys(hot, 1)

    worker = start_worker(settings, tmp_path / "worker.log")
    started = time.monotonic()
    try:
        wait_for(
            lambda: worker.stats().get("scored", 0) >= len(bodies),
            timeout=150,
            what=f"all {len(bodies)} backlog events scored",
        )
        caught_up = time.monotonic()
        # the final recycles are due long ago in wall-clock time; give the sweeper
        # (0.5 s interval) time to find them and to publish anything else it would
        published = poll_topic(
            settings,
            settings.transitions_topic,
            done=lambda values: len(values) >= len(expected),
            timeout=30,
        )
        await asyncio.sleep(8 * settings.sweep_interval)
        published = poll_topic(
            settings, settings.transitions_topic, done=lambda v: False, timeout=3
        )
        handoffs = poll_topic(settings, settings.handoffs_topic, done=lambda v: False, timeout=3)
    finally:
        worker.stop()

    got = {t["transition_id"]: t for t in map(json.loads, published)}
    got_handoffs = {h["handoff_id"]: h for h in map(json.loads, handoffs)}
    per_lead = Counter(h["lead_id"] for h in got_handoffs.values())
    recycles = Counter(t["lead_id"] for t in got.values() if t["to_stage"] == "nurture")
    print(
        f"\nlag campaign: {len(bodies)} events, "
        f"scored {caught_up - started:.1f}s after assignment; "
        f"handoffs per lead {[per_lead.get(lead, 0) for lead in hot]}, "
        f"recycles per lead {[recycles.get(lead, 0) for lead in hot]}, "
        f"{len(got)} transitions (expected {len(expected)})"
    )

    want_decisions = {decision(t) for t in expected.values()}
    got_decisions = {decision(t) for t in got.values()}
    assert got_decisions == want_decisions, (
        f"missing: {sorted(want_decisions - got_decisions)}\n"
        f"unexpected: {sorted(got_decisions - want_decisions)}"
    )
    assert per_lead == dict.fromkeys(hot, 1), f"handoffs per lead: {dict(per_lead)}"
    assert set(got) == set(expected), "transition ids differ from the run without lag"
    assert set(got_handoffs) == set(expected_handoffs), "handoff ids differ"
    assert_same_states(read_states(settings.redis_url, hot), clean_states, MODEL, hot)
