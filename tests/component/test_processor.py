"""The pipeline's behaviour, in memory: decode -> apply -> persist -> publish."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from leadpulse.schemas import BehaviorEvent, decode_dead_letter, decode_handoff, decode_transition
from leadpulse.scoring import ScoringModel, apply, engagement, new_lead
from leadpulse.streams.http.views import explain_lead
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.store import MemoryLeadStore, decode_state
from tests.component.conftest import T0, FakePublisher, event, page

TOPICS = Topics()


def records(bodies: list[dict[str, Any] | bytes]) -> list[Record]:
    out = []
    for offset, body in enumerate(bodies):
        value = body if isinstance(body, bytes) else json.dumps(body).encode()
        out.append(
            Record(key=b"k", value=value, topic="leadpulse.events", partition=0, offset=offset)
        )
    return out


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryLeadStore:
    return MemoryLeadStore(partitions=4)


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def processor(
    store: MemoryLeadStore, publisher: FakePublisher, model: ScoringModel, clock: Clock
) -> Processor:
    return Processor(store, publisher, model, topics=TOPICS, clock=clock)


def stored(store: MemoryLeadStore, lead: str) -> Any:
    return decode_state(store.states[lead][1])


HOT = [
    event("identify", "lead-1", traits={"company_size": 300}),
    page("https://x.io/pricing", at=1),
    event("demo_request", at=2),
]


async def test_events_in_handoff_out_with_pure_engagement(
    processor: Processor, publisher: FakePublisher, store: MemoryLeadStore, model: ScoringModel
) -> None:
    report = await processor.process(records(HOT))
    assert report.scored == 3
    handoffs = [decode_handoff(m.value) for m in publisher.on(TOPICS.handoffs)]
    assert len(handoffs) == 1
    state = new_lead("lead-1")
    for body in HOT:
        state, _ = apply(state, BehaviorEvent.model_validate(body), model)
    expected = engagement(state, T0 + timedelta(seconds=2), model)
    assert handoffs[0].engagement == pytest.approx(expected, rel=1e-12)
    assert handoffs[0].lead_id == "lead-1"
    assert handoffs[0].grade == "A"
    assert handoffs[0].profile == {"company_size": 300}
    moves = [decode_transition(m.value) for m in publisher.on(TOPICS.transitions)]
    assert [(t.from_stage, t.to_stage) for t in moves] == [("iql", "mql"), ("mql", "sal")]
    assert moves[1].transition_id == handoffs[0].handoff_id
    assert store.outboxes == {}


async def test_same_batch_twice_changes_nothing(
    processor: Processor, publisher: FakePublisher, store: MemoryLeadStore
) -> None:
    await processor.process(records(HOT))
    before = (dict(store.states), len(publisher.sent))
    report = await processor.process(records(HOT))
    assert (report.scored, report.duplicates) == (0, 3)
    assert (dict(store.states), len(publisher.sent)) == before


async def test_duplicate_inside_one_batch_counts_once(
    processor: Processor, store: MemoryLeadStore, model: ScoringModel
) -> None:
    view = page("https://x.io/pricing", event_id="dup")
    await processor.process(records([view, view, view]))
    state = stored(store, "lead-1")
    assert engagement(state, T0, model) == pytest.approx(21.0)


async def test_malformed_payloads_go_to_dlq_and_valid_ones_are_scored(
    processor: Processor, publisher: FakePublisher, store: MemoryLeadStore
) -> None:
    bad: list[dict[str, Any] | bytes] = [b"{not json", b"\xff\xfe", {"event_id": "x"}]
    batch = [bad[0], HOT[0], bad[1], HOT[1], bad[2], HOT[2]]
    report = await processor.process(records(batch))
    assert (report.scored, report.dead_lettered) == (3, 3)
    letters = [decode_dead_letter(m.value) for m in publisher.on(TOPICS.dlq)]
    assert [letter.source_offset for letter in letters] == [0, 2, 4]
    assert letters[0].reason.startswith("invalid JSON")
    assert letters[1].payload_encoding == "base64"
    assert "type: Field required" in letters[2].errors
    assert len(publisher.on(TOPICS.handoffs)) == 1


async def test_identify_merges_anonymous_history(
    processor: Processor, store: MemoryLeadStore, model: ScoringModel
) -> None:
    anonymous = [page("https://x.io/pricing", None, anon="anon-1", at=i) for i in range(2)]
    await processor.process(records(anonymous))
    assert stored(store, "anon-1").anonymous
    await processor.process(
        records([event("identify", "lead-1", anon="anon-1", at=3, traits={"company_size": 80})])
    )
    await processor.process(records([event("form_submit", at=4)]))
    state = stored(store, "lead-1")
    # two pricing views (20 each, 10 s half-life) plus page-view points, seen at t=4
    expected = sum(20 * 2 ** (-(4 - i) / 10) + 2 ** (-(4 - i) / 10) for i in range(2))
    assert engagement(state, T0 + timedelta(seconds=4), model) == pytest.approx(expected)
    assert "anon-1" not in store.states
    # later anonymous events are credited to the lead, once
    late = page("https://x.io/pricing", None, anon="anon-1", at=5, event_id="late")
    await processor.process(records([late, late]))
    await processor.process(records([late]))
    after = stored(store, "lead-1")
    assert after.events_applied == state.events_applied + 1


async def test_identify_replayed_merges_once(
    processor: Processor, store: MemoryLeadStore, model: ScoringModel
) -> None:
    await processor.process(records([page("https://x.io/pricing", None, anon="a", at=0)]))
    link = event("identify", "lead-1", anon="a", at=1)
    await processor.process(records([link]))
    once = engagement(stored(store, "lead-1"), T0 + timedelta(seconds=1), model)
    await processor.process(records([link]))
    twice = engagement(stored(store, "lead-1"), T0 + timedelta(seconds=1), model)
    assert twice == once == pytest.approx(21.0 * 2 ** (-1 / 10))


async def test_sweeper_recycles_by_decay_without_events(
    processor: Processor, publisher: FakePublisher, store: MemoryLeadStore, clock: Clock
) -> None:
    await processor.process(records(HOT))
    due = store.due_index["lead-1"]
    assert due > T0.timestamp()
    clock.now = due - 2
    assert (await processor.sweep()).transitions == []
    clock.now = due + 1
    report = await processor.sweep()
    assert [(t.from_stage, t.to_stage, t.event_id) for t in report.transitions] == [
        ("sal", "nurture", None)
    ]
    assert stored(store, "lead-1").stage == "nurture"
    assert "lead-1" not in store.due_index
    assert (await processor.sweep()).transitions == []


async def test_failed_publish_keeps_outbox_and_retry_sends_same_ids(
    processor: Processor, publisher: FakePublisher, store: MemoryLeadStore
) -> None:
    publisher.fail_next = 1
    with pytest.raises(ConnectionError):
        await processor.process(records(HOT))
    assert len(store.outboxes["lead-1"]) == 3  # two transitions + one handoff
    pending_ids = sorted(
        decode_transition(v).transition_id
        for k, v in store.outboxes["lead-1"].items()
        if k.startswith("t:")
    )
    # a restart replays the outbox; the re-delivered batch is then a no-op
    assert (await processor.replay_outboxes()).published == 3
    report = await processor.process(records(HOT))
    assert report.scored == 0
    sent_ids = sorted(
        decode_transition(m.value).transition_id for m in publisher.on(TOPICS.transitions)
    )
    assert sent_ids == pending_ids
    assert store.outboxes == {}


async def test_redelivery_after_failed_publish_republishes_pending(
    processor: Processor, publisher: FakePublisher, store: MemoryLeadStore
) -> None:
    publisher.fail_next = 1
    with pytest.raises(ConnectionError):
        await processor.process(records(HOT))
    report = await processor.process(records(HOT))
    assert report.published == 3
    assert len(publisher.on(TOPICS.handoffs)) == 1


async def test_hovering_score_hands_off_once(
    processor: Processor, publisher: FakePublisher
) -> None:
    await processor.process(records([event("identify", traits={"company_size": 300})]))
    # demo requests keep engagement between 55 and 120: never below recycle (25)
    for i in range(6):
        await processor.process(records([event("demo_request", at=10.0 * i)]))
    assert len(publisher.on(TOPICS.handoffs)) == 1


async def test_pending_and_new_outbox_entries_are_published_together(
    processor: Processor, publisher: FakePublisher, store: MemoryLeadStore
) -> None:
    publisher.fail_next = 1
    with pytest.raises(ConnectionError):
        await processor.process(records(HOT))
    report = await processor.process(records([event("email_unsubscribe", at=3)]))
    assert report.published == 4  # 2 transitions + 1 handoff pending, 1 new recycle
    assert [(t.from_stage, t.to_stage) for t in report.transitions] == [
        ("iql", "mql"),
        ("mql", "sal"),
        ("sal", "nurture"),
    ]
    assert store.outboxes == {}


async def test_a_visitor_back_after_its_alias_expired_merges_its_new_history(
    model: ScoringModel,
) -> None:
    """The merge marker names the history, not just the visitor (issue 8 review, item 8)."""
    now = [T0.timestamp()]
    store = MemoryLeadStore(partitions=4, anonymous_ttl=60, clock=lambda: now[0])
    publisher = FakePublisher()
    proc = Processor(store, publisher, model, topics=TOPICS, clock=lambda: now[0])
    await proc.process(records([page("https://x.io/a", None, anon="z-1")]))
    await proc.process(records([event("identify", "lead-z", anon="z-1", at=1)]))
    first = decode_state(store.states["lead-z"][1])
    assert first.events_applied == 2
    now[0] += 3600  # the alias and the visitor's leftovers expire
    later = T0.timestamp() + 3600
    await proc.process(
        records(
            [
                page("https://x.io/b", None, anon="z-1", at=later - T0.timestamp()),
                event("identify", "lead-z", anon="z-1", at=later - T0.timestamp() + 1),
            ]
        )
    )
    again = decode_state(store.states["lead-z"][1])
    assert again.events_applied == 4, "the second history must merge too"


async def test_a_handoff_carries_the_profile_of_its_own_event_not_of_later_ones() -> None:
    """The same handoff whatever the batch boundaries (a replay after a crash cuts elsewhere)."""
    from leadpulse.scoring import parse_model
    from tests.component.conftest import MODEL_YAML

    model = parse_model(
        MODEL_YAML.replace(
            "  handoff: {engagement: 70, min_grade: B}",
            "  handoff: {engagement: 70, min_grade: B, profile: [company_size, industry]}",
        ),
        "profile-model.yaml",
    )
    bodies = [
        event("identify", "lead-p", traits={"company_size": 300}),
        page("https://x.io/pricing", "lead-p", at=1),
        event("demo_request", "lead-p", at=2),
        event("identify", "lead-p", at=3, traits={"industry": "fintech"}),
    ]
    profiles = []
    for cut in (len(bodies), 3):  # one batch, or the last event in a batch of its own
        store, publisher = MemoryLeadStore(partitions=4), FakePublisher()
        proc = Processor(store, publisher, model, topics=TOPICS, clock=T0.timestamp)
        await proc.process(records(bodies[:cut]))
        await proc.process(records(bodies[cut:]))
        (handoff,) = publisher.on(TOPICS.handoffs)
        profiles.append(decode_handoff(handoff.value).profile)
    assert profiles == [{"company_size": 300}, {"company_size": 300}]


def group(lead: str | None, account: str, *, at: float = 0.0, **kw: Any) -> dict[str, Any]:
    traits = {"name": account.title()}
    return event(
        "group", lead, at=at, properties={"account_id": account, "account_traits": traits}, **kw
    )


async def test_a_handoff_carries_the_account_of_its_own_event_not_of_later_ones(
    model: ScoringModel,
) -> None:
    bodies = [
        group("lead-g", "acme"),
        event("identify", "lead-g", at=1, traits={"company_size": 300}),
        page("https://x.io/pricing", "lead-g", at=2),
        event("demo_request", "lead-g", at=3),
        group("lead-g", "globex", at=4),
    ]
    for cut in (len(bodies), 4):  # one batch, or the last event in a batch of its own
        store, publisher = MemoryLeadStore(partitions=4), FakePublisher()
        proc = Processor(store, publisher, model, topics=TOPICS, clock=T0.timestamp)
        await proc.process(records(bodies[:cut]))
        await proc.process(records(bodies[cut:]))
        (handoff,) = publisher.on(TOPICS.handoffs)
        assert decode_handoff(handoff.value).account_id == "acme"
        state = stored(store, "lead-g")
        assert (state.account_id, state.account_traits) == ("globex", {"name": "Globex"})


async def test_an_anonymous_visitors_account_is_merged_into_the_lead(
    processor: Processor, publisher: FakePublisher, store: MemoryLeadStore, model: ScoringModel
) -> None:
    await processor.process(
        records(
            [
                group(None, "acme", anon="v-1"),
                event("identify", "lead-v", anon="v-1", at=1, traits={"company_size": 300}),
                page("https://x.io/pricing", "lead-v", at=2),
                event("demo_request", "lead-v", at=3),
            ]
        )
    )
    state = stored(store, "lead-v")
    assert (state.account_id, state.account_traits) == ("acme", {"name": "Acme"})
    (handoff,) = publisher.on(TOPICS.handoffs)
    assert decode_handoff(handoff.value).account_id == "acme"
    # what `leadpulse lead` and the worker's /leads/{id} show, for the visitor's id too
    view = await explain_lead(store, model, "v-1", T0.timestamp() + 10)
    assert view["merged_into"] == "lead-v"
    assert view["lead"]["account_id"] == "acme"
    assert view["lead"]["account_traits"] == {"name": "Acme"}
