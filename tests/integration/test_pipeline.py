"""The running system on the embedded stack: real Tansu, real redis-server, real worker."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadpulse.schemas import (
    BehaviorEvent,
    DeadLetter,
    decode_handoff,
    from_segment,
    original_payload,
)
from leadpulse.scoring import apply, engagement, new_lead, parse_model
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from tests.integration.harness import (
    MODEL_YAML,
    TopicReader,
    produce,
    read_state,
    wait_for,
)

MODEL = parse_model(MODEL_YAML, "integration")


@pytest.fixture
def lead() -> str:
    return f"lead-{uuid.uuid4().hex[:10]}"


def now(offset: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset)).isoformat()


def ev(kind: str, lead: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": uuid.uuid4().hex, "type": kind, "occurred_at": now()}
    if lead is not None:
        body["lead_id"] = lead
    body.update(extra)
    return body


def hot_events(lead: str) -> list[dict[str, Any]]:
    return [
        ev("identify", lead, traits={"company_size": 400, "title": "VP Sales"}),
        ev("page_view", lead, properties={"url": "https://x.io/pricing"}),
        ev("demo_request", lead),
    ]


def handoffs_for(values: list[dict[str, Any]], lead: str) -> list[dict[str, Any]]:
    return [v for v in values if v["lead_id"] == lead]


def test_events_in_handoff_out_with_scoring_engagement(
    running: tuple[Settings, WorkerProcess], lead: str
) -> None:
    settings, _ = running
    events = hot_events(lead)
    produce(settings, events)
    reader = TopicReader(settings, settings.handoffs_topic)
    try:
        values = reader.until(lambda vs: bool(handoffs_for(vs, lead)))
    finally:
        reader.close()
    handoff = handoffs_for(values, lead)[0]
    state = new_lead(lead)
    for body in events:
        state, _ = apply(state, BehaviorEvent.model_validate(body), MODEL)
    assert handoff["engagement"] == pytest.approx(engagement(state, state.clock, MODEL), rel=1e-9)
    assert handoff["grade"] == "A"
    # the test model declares no handoff profile: only the traits its fit rules read
    assert handoff["profile"] == {"company_size": 400}
    assert {r["rule"] for r in handoff["reasons"]} == {"demo-request", "pricing-page", "page-view"}


def test_same_batch_twice_keeps_state_and_hands_off_once(
    running: tuple[Settings, WorkerProcess], lead: str
) -> None:
    settings, worker = running
    events = hot_events(lead)
    produce(settings, events)
    wait_for(lambda: (read_state(settings, lead)[1] or new_lead(lead)).events_applied == 3)
    before = read_state(settings, lead)
    duplicates = worker.stats()["duplicates"]
    produce(settings, events)
    wait_for(lambda: worker.stats()["duplicates"] >= duplicates + 3, what="duplicates seen")
    assert read_state(settings, lead) == before
    reader = TopicReader(settings, settings.handoffs_topic)
    try:
        values = reader.until(lambda vs: bool(handoffs_for(vs, lead)))
        reader.poll()
    finally:
        reader.close()
    assert len(handoffs_for(values, lead)) == 1


def test_a_group_call_stores_the_account_and_the_handoff_carries_it(
    running: tuple[Settings, WorkerProcess], lead: str
) -> None:
    settings, _ = running
    call = {
        "type": "group",
        "messageId": uuid.uuid4().hex,
        "userId": lead,
        "groupId": "acct-acme",
        "traits": {"name": "Acme", "employees": 400},
        "timestamp": now(),
    }
    group = from_segment(call, received_at=datetime.now(UTC)).model_dump(mode="json")
    produce(settings, [group])
    wait_for(lambda: read_state(settings, lead)[1] is not None, what="group call applied")
    state = read_state(settings, lead)[1]
    assert state is not None
    assert state.account_id == "acct-acme"
    assert state.account_traits == {"name": "Acme", "employees": 400}
    produce(settings, hot_events(lead))
    reader = TopicReader(settings, settings.handoffs_topic)
    try:
        values = reader.until(lambda vs: bool(handoffs_for(vs, lead)))
    finally:
        reader.close()
    (handoff,) = handoffs_for(values, lead)
    assert handoff["account_id"] == "acct-acme"
    assert decode_handoff(json.dumps(handoff)).account_id == "acct-acme"


def bad_payload(i: int, marker: str, lead: str) -> bytes:
    """Five kinds of tracker bugs, each carrying the marker so the DLQ can be matched."""
    tag = f"{marker}-{i}"
    good = {**ev("page_view", lead), "event_id": tag}
    kind = i % 5
    if kind == 0:
        return b'{"truncated": "' + tag.encode()
    if kind == 1:
        return b"\xff\xfe not utf-8 " + tag.encode()
    if kind == 2:
        return json.dumps({**good, "occurred_at": "2026-11-22T10:00:00"}).encode()  # naive
    if kind == 3:
        return json.dumps({**good, "type": "Page View"}).encode()
    return json.dumps({k: v for k, v in good.items() if k != "lead_id"}).encode()


def test_malformed_payloads_go_to_dlq_and_valid_events_are_scored(
    running: tuple[Settings, WorkerProcess],
) -> None:
    settings, worker = running
    marker = uuid.uuid4().hex
    leads = [f"lead-{marker[:6]}-{i}" for i in range(50)]
    batch: list[dict[str, Any] | bytes] = []
    for i in range(200):
        batch.append(bad_payload(i, marker, leads[0]))
        batch.append(ev("form_submit", leads[i % 50]))
    pid = worker.process.pid if worker.process else None
    produce(settings, batch)

    def mine(letters: list[dict[str, Any]]) -> list[DeadLetter]:
        parsed = [DeadLetter.model_validate(v) for v in letters]
        return [d for d in parsed if marker.encode() in original_payload(d)]

    reader = TopicReader(settings, settings.dlq_topic)
    try:
        letters = mine(reader.until(lambda vs: len(mine(vs)) >= 200, timeout=90))
    finally:
        reader.close()
    assert len(letters) == 200
    assert len({original_payload(d) for d in letters}) == 200
    assert all(d.reason and d.source_topic == settings.events_topic for d in letters)
    reasons = {d.errors[0].split(":")[0] for d in letters}
    assert reasons == {"invalid JSON", "message", "occurred_at", "type"}
    wait_for(
        lambda: all(
            (read_state(settings, lead)[1] or new_lead(lead)).events_applied == 4 for lead in leads
        ),
        what="valid events scored",
    )
    assert worker.alive()
    assert (worker.process.pid if worker.process else None) == pid


def test_identify_merges_anonymous_behaviour(
    running: tuple[Settings, WorkerProcess], lead: str
) -> None:
    settings, _ = running
    anon = f"anon-{uuid.uuid4().hex[:10]}"
    views = [
        ev("page_view", None, anonymous_id=anon, properties={"url": "https://x.io/pricing"})
        for _ in range(2)
    ]
    produce(settings, views)
    wait_for(lambda: read_state(settings, anon)[1] is not None, what="anonymous state")
    link = ev("identify", lead, anonymous_id=anon, traits={"company_size": 10})
    produce(settings, [link])
    wait_for(lambda: read_state(settings, lead)[1] is not None, what="merged lead")
    form = ev("form_submit", lead)
    produce(settings, [form])
    wait_for(
        lambda: (read_state(settings, lead)[1] or new_lead(lead)).events_applied == 4,
        what="form fill scored",
    )
    state = read_state(settings, lead)[1]
    assert state is not None
    expected = new_lead(lead)
    for body in [*[{**v, "lead_id": lead} for v in views], link, form]:
        expected, _ = apply(expected, BehaviorEvent.model_validate(body), MODEL)
    at = state.clock
    assert engagement(state, at, MODEL) == pytest.approx(engagement(expected, at, MODEL), rel=1e-9)
    assert engagement(state, at, MODEL) > 40  # the two anonymous pricing views count
    assert read_state(settings, anon)[1] is None


def test_mql_recycles_by_decay_without_new_events(
    running: tuple[Settings, WorkerProcess], lead: str
) -> None:
    settings, _ = running
    produce(settings, [ev("quick_look", lead)])  # 60 points, half-life 3 s
    reader = TopicReader(settings, settings.transitions_topic)
    try:
        values = reader.until(
            lambda vs: any(v["lead_id"] == lead and v["to_stage"] == "nurture" for v in vs),
            timeout=60,
        )
    finally:
        reader.close()
    moves = [
        (v["from_stage"], v["to_stage"], v["event_id"]) for v in values if v["lead_id"] == lead
    ]
    assert moves[0][:2] == ("iql", "mql")
    assert moves[1] == ("mql", "nurture", None)
    state = read_state(settings, lead)[1]
    assert state is not None
    assert state.stage == "nurture"
