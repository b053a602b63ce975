"""Future-skewed event times: clamped at decode, recorded in the state, explained."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from leadpulse.schemas import BehaviorEvent, decode_event, decode_transition, encode
from leadpulse.scoring import Clamp, LeadState, RuleState, apply, explain, merge, new_lead, to_epoch
from leadpulse.streams.pipeline.processor import Processor, _latest
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.store import MemoryLeadStore, decode_state
from tests.component.conftest import FakePublisher
from tests.unit.test_scoring_engine import E0, MODEL, event

RECORD_TIME = E0 + 3600.0
LATEST = datetime.fromtimestamp(RECORD_TIME + 300, UTC)


def clamped(index: int, kind: str, ahead: timedelta, **extra: object) -> BehaviorEvent:
    """An event as decode_event leaves it when the tracker's clock ran `ahead`."""
    body = event(index, kind, 0, **extra).model_dump(mode="json")  # type: ignore[arg-type]
    body["occurred_at"] = (LATEST + ahead).isoformat()
    return decode_event(json.dumps(body), latest=LATEST)


def test_moves_a_clamped_event_causes_say_so() -> None:
    state = LeadState(
        lead_id="lead-1",
        clock=RECORD_TIME,
        traits={"tier": "gold"},
        rules={"hot": RuleState(40.0, RECORD_TIME), "warm": RuleState(5.0, RECORD_TIME)},
    )
    big = clamped(1, "big", timedelta(hours=5))
    assert big.occurred_at == LATEST
    state, made = apply(state, big, MODEL)
    assert [t.to_stage for t in made] == ["mql", "sal"]
    note = (
        " (event time clamped from 2026-11-22T16:05:00+00:00 to "
        "2026-11-22T11:05:00+00:00, the record time + skew)"
    )
    assert all(t.reason.endswith(note) for t in made)
    assert made[1].reason.startswith("engagement ")
    assert state.clock == to_epoch(LATEST)
    assert state.clamped_events == 1
    assert state.last_clamp == Clamp(
        event_id="lead-1-e1",
        reported_at=to_epoch(LATEST + timedelta(hours=5)),
        clamped_to=to_epoch(LATEST),
    )
    (text,) = explain(state, state.clock, MODEL).notes
    assert text == (
        "1 event(s) reported a time later than their record time + skew and were scored at "
        "that bound; the last, lead-1-e1, reported 2026-11-22T16:05:00+00:00 and was clamped "
        "to 2026-11-22T11:05:00+00:00"
    )
    # an unclamped event's moves carry no note, and the record stays
    state, made = apply(state, event(2, "sales_qualified", 3 * 3600), MODEL)
    assert [t.reason for t in made] == ["sales qualified the lead"]
    assert state.clamped_events == 1


def test_anonymous_clamps_count_after_a_merge() -> None:
    anon, _ = apply(
        new_lead("anon-1", anonymous=True),
        clamped(1, "ping", timedelta(minutes=1), subject="anon-1", anonymous=True),
        MODEL,
    )
    assert anon.clamped_events == 1
    known, _ = apply(new_lead("lead-1"), clamped(2, "noop", timedelta(hours=1)), MODEL)
    merged = merge(known, anon, MODEL)
    assert merged.clamped_events == 2
    assert merged.last_clamp == known.last_clamp  # same bound: the known lead's is kept
    assert merge(new_lead("lead-2"), anon, MODEL).last_clamp == anon.last_clamp


# -- the processor bounds each record by its own timestamp ------------------------------


def test_latest_is_the_record_time_plus_skew_else_now() -> None:
    now = RECORD_TIME + 10.0  # the record was written ten seconds ago
    assert _latest(RECORD_TIME, now, 300.0) == LATEST
    assert _latest(None, now, 300.0) == datetime.fromtimestamp(now + 300, UTC)
    assert _latest(-0.001, now, 60.0) == datetime.fromtimestamp(now + 60, UTC)  # Kafka's -1 ms
    assert _latest(86400.0, now, 60.0) == datetime.fromtimestamp(now + 60, UTC)  # 1970
    assert _latest(1e300, now, 60.0) == datetime.fromtimestamp(now + 60, UTC)


async def test_processor_clamps_to_the_record_timestamp() -> None:
    store, publisher = MemoryLeadStore(partitions=1), FakePublisher()
    processor = Processor(store, publisher, MODEL, clock=lambda: E0 + 86400, max_future_skew=60)
    ahead = event(0, "ping", 5 * 3600, properties={"n": 2})
    on_time = event(1, "ping", 30, properties={"n": 2})
    stamped = [
        Record(None, encode(e), "leadpulse.events", 0, i, timestamp=E0)
        for i, e in enumerate((ahead, on_time))
    ]
    unstamped = Record(None, encode(event(2, "noop", 10 * 86400)), "leadpulse.events", 0, 2)
    report = await processor.process([*stamped, unstamped])
    assert (report.scored, report.dead_lettered) == (3, 0)
    state = decode_state(store.states["lead-1"][1])
    assert state.clamped_events == 2
    assert state.last_clamp is not None
    assert state.last_clamp.clamped_to == E0 + 86400 + 60  # no timestamp: now + skew
    assert state.clock == E0 + 86400 + 60
    assert publisher.on(Topics().dlq) == []
    assert [decode_transition(m.value) for m in publisher.on(Topics().transitions)] == []
    # the first ping scored at its record time + skew, not five hours ahead
    assert state.rules["hot"].ref == E0 + 60


def test_a_record_time_ahead_of_the_wall_clock_bounds_by_the_wall_clock() -> None:
    """A producer with a fast clock must not lift the bound either."""
    now = E0 + 10.0
    assert _latest(now + 7200, now, 300.0) == datetime.fromtimestamp(now + 300, UTC)


def test_a_tracker_cannot_claim_its_time_was_clamped() -> None:
    from leadpulse.schemas import decode_event

    body = {
        "event_id": "e-claim",
        "type": "page_view",
        "lead_id": "lead-1",
        "occurred_at": "2026-11-22T10:00:00Z",
        "reported_at": "2026-11-22T12:00:00Z",
    }
    assert decode_event(json.dumps(body)).reported_at is None
    latest = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
    assert decode_event(json.dumps(body), latest=latest).reported_at is None
