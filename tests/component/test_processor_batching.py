"""Batching never changes what a lead ends up with.

The processor applies a batch in rounds (`streams.pipeline.identity.rounds`): every
subject's events and identity links in arrival order, independent links merged
together. Fed the same records one at a time, in chunks, or as one batch, the
leads' states, transitions and the report totals must be the same.
"""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest

from leadpulse.schemas import BehaviorEvent, decode_transition
from leadpulse.scoring import ScoringModel, default_model
from leadpulse.streams.dev.demo import PERSONAS, persona_events
from leadpulse.streams.pipeline.identity import rounds as _rounds
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Report
from leadpulse.streams.store import MemoryLeadStore, decode_state
from tests.component.conftest import T0, FakePublisher, event, page


class Clock:
    def __call__(self) -> float:
        return (T0 + timedelta(days=1)).timestamp()


def journeys(leads: int, seed: int) -> list[dict[str, Any]]:
    """The demo's personas, interleaved by time, as the benchmark sends them."""
    rng = random.Random(seed)
    kinds, weights = zip(*PERSONAS, strict=True)
    planned: list[tuple[float, int, dict[str, Any]]] = []
    for n in range(leads):
        journey = persona_events(rng.choices(kinds, weights)[0], n, rng)
        start = rng.uniform(0, 600)
        for i, body in enumerate(journey):
            at = start + i * rng.uniform(1, 60)
            planned.append(
                (
                    at,
                    len(planned),
                    {**body, "occurred_at": (T0 + timedelta(seconds=at)).isoformat()},
                )
            )
    planned.sort()
    return [body for _, _, body in planned]


def records(bodies: list[dict[str, Any]]) -> list[Record]:
    return [
        Record(key=b"k", value=json.dumps(body).encode(), topic="t", partition=0, offset=i)
        for i, body in enumerate(bodies)
    ]


async def run(
    bodies: list[dict[str, Any]], model: ScoringModel, chunk: int
) -> tuple[MemoryLeadStore, FakePublisher, Report]:
    store, publisher = MemoryLeadStore(partitions=4), FakePublisher()
    processor = Processor(store, publisher, model, clock=Clock())
    total = Report()
    batch = records(bodies)
    for i in range(0, len(batch), chunk):
        total.add(await processor.process(batch[i : i + chunk]))
    return store, publisher, total


def outcome(store: MemoryLeadStore, publisher: FakePublisher) -> dict[str, Any]:
    states = {lead: decode_state(blob).model_dump() for lead, (_, blob) in store.states.items()}
    per_lead: dict[str, list[Any]] = {}
    for message in publisher.sent:
        if message.topic == "leadpulse.transitions":
            t = decode_transition(message.value)
            per_lead.setdefault(t.lead_id, []).append(t.model_dump())
    return {
        "states": states,
        "transitions": per_lead,
        "handoffs": sorted(m.value for m in publisher.sent if m.topic == "leadpulse.handoffs"),
        "aliases": dict(store.aliases),
        "due": dict(store.due_index),
        "outboxes": dict(store.outboxes),
    }


def totals(report: Report) -> tuple[int, int, int, int]:
    return (report.scored, report.duplicates, report.dead_lettered, report.published)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_demo_traffic_gives_the_same_leads_in_any_batch_size(seed: int) -> None:
    model = default_model()
    bodies = journeys(60, seed)
    one_by_one = await run(bodies, model, chunk=1)
    expected = outcome(*one_by_one[:2])
    assert expected["handoffs"], "the traffic should hand some leads off"
    for chunk in (7, 50, len(bodies)):
        store, publisher, report = await run(bodies, model, chunk)
        assert outcome(store, publisher) == expected
        assert totals(report) == totals(one_by_one[2])


async def test_chains_of_identities_in_one_batch(model: ScoringModel) -> None:
    """One lead identified from two anonymous ids, and one id identified twice."""
    bodies = [
        page("https://x.io/pricing", None, anon="a1", at=0),
        page("https://x.io/pricing", None, anon="a2", at=1),
        event("identify", "lead-1", anon="a1", at=2, traits={"company_size": 300}),
        page("https://x.io/docs", None, anon="a1", at=3),
        event("identify", "lead-1", anon="a2", at=4),
        event("demo_request", "lead-1", at=5),
        event("identify", "lead-2", anon="a3", at=6),
        page("https://x.io/pricing", None, anon="a3", at=7),
        event("identify", "lead-2", anon="a3", at=8),
    ]
    one_by_one = await run(bodies, model, chunk=1)
    together = await run(bodies, model, chunk=len(bodies))
    assert outcome(*together[:2]) == outcome(*one_by_one[:2])
    assert totals(together[2]) == totals(one_by_one[2])
    assert set(together[0].aliases) == {"a1", "a2", "a3"}


def test_rounds_keep_each_subjects_order_and_group_independent_links() -> None:
    def parse(body: dict[str, Any]) -> BehaviorEvent:
        return BehaviorEvent.model_validate(body)

    links = [parse(event("identify", f"lead-{i}", anon=f"anon-{i}", at=i)) for i in range(20)]
    before = [parse(page("/", None, anon=f"anon-{i}", at=0)) for i in range(20)]
    after = [parse(page("/", None, anon=f"anon-{i}", at=30)) for i in range(20)]
    rounds = _rounds([*before, *links, *after])
    assert [(len(events), len(linked)) for events, linked in rounds] == [(20, 20), (20, 0)]
    chain = [
        parse(event("identify", "lead-1", anon="a1")),
        parse(event("identify", "lead-1", anon="a2")),
        parse(event("identify", "lead-2", anon="a2")),
        parse(event("page_view", "lead-3")),
    ]
    rounds = _rounds(chain)
    assert [[e.event_id for e in linked] for _, linked in rounds] == [
        [chain[0].event_id],
        [chain[1].event_id],
        [chain[2].event_id],
        [],
    ]
    assert [e.event_id for e in rounds[0][0]] == [chain[3].event_id]


class CountingStore(MemoryLeadStore):
    def __init__(self) -> None:
        super().__init__(partitions=4)
        self.calls: dict[str, int] = {}

    async def snapshot(self, wanted: Any) -> Any:
        self.calls["snapshot"] = self.calls.get("snapshot", 0) + 1
        return await super().snapshot(wanted)

    async def commit(self, commits: Any) -> set[str]:
        self.calls["commit"] = self.calls.get("commit", 0) + 1
        return await super().commit(commits)


async def test_independent_identities_go_through_the_store_together(
    model: ScoringModel,
) -> None:
    store = CountingStore()
    processor = Processor(store, FakePublisher(), model, clock=Clock())
    bodies = []
    for i in range(25):
        bodies.append(page("https://x.io/pricing", None, anon=f"anon-{i}", at=i))
        bodies.append(event("identify", f"lead-{i}", anon=f"anon-{i}", at=30 + i))
        bodies.append(page("https://x.io/docs", f"lead-{i}", at=60 + i))
    report = await processor.process(records(bodies))
    assert report.scored == 75
    # apply, link (one read to resolve merged lead ids, one to merge), apply:
    # not one store round per identify
    assert store.calls == {"snapshot": 4, "commit": 3}


async def test_repeats_inside_a_batch_count_as_duplicates(model: ScoringModel) -> None:
    view = page("https://x.io/pricing", event_id="dup")
    _, _, report = await run([view, view, view], model, chunk=3)
    assert (report.scored, report.duplicates) == (1, 2)
    _, _, report = await run([view, view, view], model, chunk=1)
    assert (report.scored, report.duplicates) == (1, 2)
