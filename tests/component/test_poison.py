"""Permanent failures are dead-lettered once and never stall the batch or the lead.

Regression tests for issue 8, defect 4: `retrying` used to retry any
exception forever, so a handoff larger than the broker accepts, or a stored
state this release cannot read, stalled every partition of the worker.
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

from leadpulse.schemas import decode_dead_letter, decode_handoff
from leadpulse.scoring import ScoringModel, new_lead, parse_model
from leadpulse.streams.observability.health import Health
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.store import MemoryLeadStore, encode_state
from tests.component.conftest import MODEL_YAML, T0, FakePublisher, event, page

TOPICS = Topics()


def records(bodies: list[dict[str, Any]], start: int = 0) -> list[Record]:
    return [
        Record(
            key=str(body.get("lead_id")).encode(),
            value=json.dumps(body).encode(),
            topic="leadpulse.events",
            partition=3,
            offset=start + n,
        )
        for n, body in enumerate(bodies)
    ]


def hot(lead: str, **traits: Any) -> list[dict[str, Any]]:
    return [
        event("identify", lead, traits={"company_size": 300, **traits}),
        page("https://x.io/pricing", lead, at=1),
        event("demo_request", lead, at=2),
    ]


def make(model: ScoringModel, publisher: FakePublisher) -> tuple[Processor, MemoryLeadStore]:
    store = MemoryLeadStore()
    health = Health(clock=T0.timestamp)
    processor = Processor(
        store,
        publisher,
        model,
        topics=TOPICS,
        clock=T0.timestamp,
        health=health,
        max_message=publisher.max_size or 1_000_000,
    )
    return processor, store


async def test_a_handoff_the_broker_refuses_is_dead_lettered_and_the_rest_flows() -> None:
    # a model whose handoffs carry long notes, so one can exceed the broker's limit
    model = parse_model(
        MODEL_YAML.replace(
            "  recycle: 25",
            "  recycle: 25\n  handoff: {engagement: 70, min_grade: B, "
            "profile: [company_size, notes, more_notes]}",
        ).replace("  handoff: {engagement: 70, min_grade: B}\n", "", 1)
        + "limits: {max_trait_bytes: 8192}\n",
        "notes-model.yaml",
    )
    publisher = FakePublisher(max_size=6000)
    processor, store = make(model, publisher)
    big = hot("lead-big", notes="x" * 4000, more_notes="y" * 4000)
    report = await processor.process(records([*big, *hot("lead-ok")]))
    handoffs = [decode_handoff(m.value).lead_id for m in publisher.on(TOPICS.handoffs)]
    assert handoffs == ["lead-ok"]
    letters = [decode_dead_letter(m.value) for m in publisher.on(TOPICS.dlq)]
    assert [(d.lead_id, d.source_topic) for d in letters] == [("lead-big", TOPICS.handoffs)]
    assert "MessageSizeTooLarge" in letters[0].reason
    assert report.dead_lettered == 1
    assert store.outboxes == {}, "the refused handoff must leave the outbox"
    assert processor.health.last_dead_letter is not None
    assert processor.health.last_dead_letter["lead_id"] == "lead-big"
    # the lead goes on: its transitions were published, later events score
    more = await processor.process(records([page("https://x.io/", "lead-big", at=3)], start=10))
    assert more.scored == 1


async def test_an_undecodable_state_dead_letters_its_events_only(model: ScoringModel) -> None:
    publisher = FakePublisher()
    processor, store = make(model, publisher)
    store.states["lead-bad"] = (1, b'{"lead_id": "lead-bad", "stage": "no-such-stage"')
    bodies = [page("https://x.io/pricing", "lead-bad", at=1), *hot("lead-ok")]
    report = await processor.process(records(bodies))
    letters = [decode_dead_letter(m.value) for m in publisher.on(TOPICS.dlq)]
    assert [(d.lead_id, d.source_partition, d.source_offset) for d in letters] == [
        ("lead-bad", 3, 0)
    ]
    assert "lead-bad" in letters[0].reason
    assert "cannot be decoded" in letters[0].reason
    assert report.scored == 3
    assert [decode_handoff(m.value).lead_id for m in publisher.on(TOPICS.handoffs)] == ["lead-ok"]
    assert store.states["lead-bad"][0] == 1, "the unreadable state is left as it was"


async def test_dead_letters_are_not_sent_again_when_the_batch_is_retried(
    model: ScoringModel,
) -> None:
    publisher = FakePublisher()
    processor, store = make(model, publisher)
    store.states["lead-bad"] = (1, b"not json")
    batch = [
        Record(b"k", b"{broken", "leadpulse.events", 3, 99),
        *records([page("https://x.io/", "lead-bad"), *hot("lead-ok")]),
    ]
    first = await processor.process(batch)
    assert first.dead_lettered == 2
    # the same batch again (as `retrying` does after a transient failure later on)
    again = await processor.process(batch)
    assert again.dead_lettered == 0
    assert len(publisher.on(TOPICS.dlq)) == 2


async def test_a_batch_that_failed_after_lettering_letters_nothing_twice(
    model: ScoringModel,
) -> None:
    """Letters of a failed attempt are dropped, then sent once by the attempt that succeeds."""

    class FailsOnHandoff(FakePublisher):
        failures = 2

        async def publish(self, messages: Any) -> None:
            if self.failures and any(m.topic == TOPICS.handoffs for m in messages):
                self.failures -= 1
                raise ConnectionError("broker away (fake)")
            await super().publish(messages)

    publisher = FailsOnHandoff()
    processor, store = make(model, publisher)
    store.states["lead-bad"] = (1, encode_state(new_lead("lead-bad"))[:-5])
    batch = records([page("https://x.io/", "lead-bad"), *hot("lead-ok")])
    for _ in range(2):
        with contextlib.suppress(ConnectionError):
            await processor.process(batch)
    report = await processor.process(batch)
    assert len(publisher.on(TOPICS.dlq)) == 1
    assert report.dead_lettered == 1
    assert [decode_handoff(m.value).lead_id for m in publisher.on(TOPICS.handoffs)] == ["lead-ok"]


async def test_an_identify_into_an_unreadable_lead_is_dead_lettered_and_keeps_the_history(
    model: ScoringModel,
) -> None:
    publisher = FakePublisher()
    processor, store = make(model, publisher)
    await processor.process(records([page("https://x.io/pricing", None, anon="anon-9")]))
    store.states["lead-bad"] = (1, b"\x00not a state")
    link = event("identify", "lead-bad", anon="anon-9", at=2)
    report = await processor.process(records([link, *hot("lead-ok")], start=5))
    letters = [decode_dead_letter(m.value) for m in publisher.on(TOPICS.dlq)]
    assert [(d.lead_id, d.source_offset) for d in letters] == [("lead-bad", 5)]
    assert report.scored == 3
    assert "anon-9" in store.detached, "the visitor's history must not be thrown away"
