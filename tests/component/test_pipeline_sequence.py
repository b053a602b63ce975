"""The steps of a batch compose in the documented order, seen from the store and the broker.

`streams.pipeline.processor` documents decode -> identity -> apply -> commit
-> publish, the merges' own commit and publish after that, and the DLQ last;
a refused message is lettered before it leaves the outbox; a sweep commits
and publishes through the same steps. These tests record every store and
broker call of a batch and compare it with that order, written out by hand.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from leadpulse.schemas import decode_transition
from leadpulse.scoring import ScoringModel, parse_model
from leadpulse.streams.kafka.publisher import Outgoing
from leadpulse.streams.pipeline.identity import Identity
from leadpulse.streams.pipeline.letters import DeadLetters
from leadpulse.streams.pipeline.outbox import Outbox
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.pipeline.sweeper import Sweeper
from leadpulse.streams.store import Commit, MemoryLeadStore, Snapshot
from tests.component.conftest import MODEL_YAML, T0, FakePublisher, event, page

TOPICS = Topics()
Call = str | tuple[str, ...]


class RecordingStore(MemoryLeadStore):
    """The memory store, noting each call the pipeline makes (not its own inner ones)."""

    def __init__(self, calls: list[Call]) -> None:
        super().__init__(partitions=4)
        self.calls = calls

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        self.calls.append(("snapshot", *sorted(wanted)))
        return await super().snapshot(wanted)

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        self.calls.append(("commit", *sorted(c.subject for c in commits)))
        return await super().commit(commits)

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        self.calls.append(("clear_outbox", *sorted(published)))
        await super().clear_outbox(published)

    async def detach(self, links: Sequence[tuple[str, str]]) -> list[bytes | None]:
        self.calls.append(("detach", *(f"{anon}->{lead}" for anon, lead in links)))
        return await super().detach(links)

    async def forget_detached(self, anonymous_ids: Collection[str]) -> None:
        self.calls.append(("forget_detached", *anonymous_ids))
        await super().forget_detached(anonymous_ids)

    async def due(self, now: float, limit: int, shards: Collection[int]) -> dict[str, float]:
        self.calls.append("due")
        return await super().due(now, limit, shards)


class RecordingPublisher(FakePublisher):
    def __init__(self, calls: list[Call], max_size: int | None = None) -> None:
        super().__init__(max_size=max_size)
        self.log = calls

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        self.log.append(("publish", *(m.topic for m in messages)))
        await super().publish(messages)


def records(bodies: list[dict[str, Any] | bytes]) -> list[Record]:
    return [
        Record(
            key=b"k",
            value=body if isinstance(body, bytes) else json.dumps(body).encode(),
            topic="leadpulse.events",
            partition=0,
            offset=n,
        )
        for n, body in enumerate(bodies)
    ]


def make(
    model: ScoringModel, max_size: int | None = None
) -> tuple[Processor, RecordingPublisher, list[Call]]:
    calls: list[Call] = []
    publisher = RecordingPublisher(calls, max_size)
    processor = Processor(
        RecordingStore(calls),
        publisher,
        model,
        topics=TOPICS,
        clock=T0.timestamp,
        max_message=max_size or 1_000_000,
    )
    return processor, publisher, calls


async def test_a_batch_goes_decode_identity_apply_commit_publish_then_merges_then_the_dlq(
    model: ScoringModel,
) -> None:
    processor, publisher, calls = make(model)
    batch = records(
        [
            page("https://x.io/pricing", None, anon="v-1", at=0),  # 20 points, the visitor's
            event("demo_request", "lead-1", at=1),  # 60 points: MQL
            b"not json",
            event("identify", "lead-1", anon="v-1", at=2, traits={"company_size": 300}),
        ]
    )
    report = await processor.process(batch)
    assert calls == [
        ("snapshot", "lead-1"),  # identity: is lead-1 an alias? (no)
        ("snapshot", "lead-1", "v-1"),  # apply: the plain events' leads
        ("commit", "lead-1", "v-1"),  # commit: states and outboxes
        ("publish", TOPICS.transitions),  # publish: lead-1 -> MQL
        ("clear_outbox", "lead-1"),
        ("detach", "v-1->lead-1"),  # the merge: the visitor's history
        ("snapshot", "lead-1"),
        ("commit", "lead-1"),
        ("publish", TOPICS.transitions, TOPICS.handoffs),  # MQL -> SAL, with its handoff
        ("clear_outbox", "lead-1"),
        ("forget_detached", "v-1"),
        ("publish", TOPICS.dlq),  # the record that did not decode, last
    ]
    moves = [decode_transition(m.value) for m in publisher.on(TOPICS.transitions)]
    assert [(t.from_stage, t.to_stage) for t in moves] == [("iql", "mql"), ("mql", "sal")]
    assert (report.scored, report.dead_lettered, report.published) == (3, 1, 3)


async def test_a_refused_handoff_is_dead_lettered_before_it_leaves_the_outbox() -> None:
    # handoffs of this model carry long notes, so the broker (6000 bytes) refuses one
    model = parse_model(
        MODEL_YAML.replace(
            "  handoff: {engagement: 70, min_grade: B}\n",
            "  handoff: {engagement: 70, min_grade: B,"
            " profile: [company_size, notes, more_notes]}\n",
        )
        + "limits: {max_trait_bytes: 8192}\n",
        "notes-model.yaml",
    )
    processor, publisher, calls = make(model, max_size=6000)
    batch = records(
        [
            event(
                "identify",
                "lead-1",
                traits={"company_size": 300, "notes": "x" * 4000, "more_notes": "y" * 4000},
            ),
            event("demo_request", "lead-1", at=1),
            page("https://x.io/pricing", "lead-1", at=2),
        ]
    )
    report = await processor.process(batch)
    assert calls == [
        ("snapshot", "lead-1"),
        ("commit", "lead-1"),
        ("publish", TOPICS.transitions, TOPICS.transitions, TOPICS.handoffs),
        ("publish", TOPICS.dlq),  # the refused handoff's letter ...
        ("clear_outbox", "lead-1"),  # ... before the outbox forgets it
    ]
    assert (report.published, report.dead_lettered) == (2, 1)
    assert publisher.on(TOPICS.handoffs) == []


async def test_a_sweep_commits_and_publishes_through_the_same_steps(model: ScoringModel) -> None:
    processor, publisher, calls = make(model)
    await processor.process(
        records(
            [
                event("identify", "lead-1", traits={"company_size": 300}),
                event("demo_request", "lead-1", at=1),
            ]
        )
    )
    calls.clear()
    # 60 points, half-life 20 s: below the recycle threshold (25) well within 10 minutes
    report = await processor.sweep(T0.timestamp() + 600)
    assert calls == [
        "due",
        ("snapshot", "lead-1"),
        ("commit", "lead-1"),
        ("publish", TOPICS.transitions),
        ("clear_outbox", "lead-1"),
    ]
    assert (report.swept, report.published) == (1, 1)
    assert decode_transition(publisher.sent[-1].value).to_stage == "nurture"


def test_the_parts_hold_what_they_need_never_the_processor_or_each_other(
    model: ScoringModel,
) -> None:
    processor, publisher, _ = make(model)
    composed = (Processor, DeadLetters, Outbox, Identity, Sweeper)
    parts = [processor.letters, processor.outbox, processor.identity, processor.sweeper]
    held = {
        f"{type(part).__name__}.{name}"
        for part in parts
        for name, value in vars(part).items()
        if isinstance(value, composed) or isinstance(getattr(value, "__self__", None), composed)
    }
    assert held == set()
    assert (processor.outbox.store, processor.outbox.publisher) == (processor.store, publisher)
    assert (processor.identity.store, processor.sweeper.store) == (processor.store,) * 2
