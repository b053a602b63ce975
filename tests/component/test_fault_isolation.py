"""One record's failure costs that record: batches are narrowed, unknown errors are bounded.

Before, a `PermanentError` at batch level dead-lettered the whole batch as
timing cut it (up to 500 good events), and an error that was neither
transient nor permanent (a bug, an inner retry that gave up) was retried
forever, stalling the partition.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from leadpulse.schemas import decode_dead_letter
from leadpulse.scoring import ScoringModel
from leadpulse.streams.errors import PermanentError
from leadpulse.streams.observability.health import Health
from leadpulse.streams.observability.metrics import WorkerMetrics
from leadpulse.streams.observability.stats import Totals
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.pipeline.retry import RetryPolicy
from leadpulse.streams.pipeline.runtime import Runtime
from leadpulse.streams.store import Commit, MemoryLeadStore
from tests.component.conftest import T0, Clock, FakePublisher, page

TOPIC = "leadpulse.events"
FAST = RetryPolicy(max_unknown_retries=2, first_delay=0.001, max_delay=0.002)
POISON = "poison-lead"


class PoisonStore(MemoryLeadStore):
    """A memory store whose commits of one lead fail the way `failure` says."""

    def __init__(self, failure: str) -> None:
        super().__init__(partitions=4)
        self.failure = failure
        self.transient_left = 0

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        if self.transient_left:
            self.transient_left -= 1
            raise ConnectionError("redis away (fake)")
        if any(c.subject == POISON for c in commits):
            if self.failure == "permanent":
                raise PermanentError("this lead's state is refused (fake)")
            if self.failure == "bug":
                raise KeyError("a bug (fake)")
            if self.failure == "lost-races":
                # every commit of the poison lead loses its compare-and-set race
                won = await super().commit([c for c in commits if c.subject != POISON])
                return won | {POISON}
        return await super().commit(commits)


def make(
    store: MemoryLeadStore, model: ScoringModel
) -> tuple[Runtime, FakePublisher, Health, WorkerMetrics]:
    publisher = FakePublisher()
    clock = Clock(T0.timestamp() + 60)
    health = Health(clock=clock)
    metrics = WorkerMetrics(CollectorRegistry())
    processor = Processor(
        store,
        publisher,
        model,
        topics=Topics(),
        clock=clock,
        health=health,
        dead_lettered=metrics.dead_lettered,
    )
    runtime = Runtime(
        processor,
        store,
        TOPIC,
        totals=Totals(),
        health=health,
        stopped=lambda: False,
        highwater=lambda partition: None,
        clock=clock,
        on_fatal=lambda error: None,
        metrics=metrics,
        policy=FAST,
    )
    return runtime, publisher, health, metrics


def batch(size: int, poison_at: int | None, start: int = 1000) -> list[Record]:
    bodies: list[dict[str, Any]] = [
        page("https://x.io/pricing", f"lead-{n}", event_id=f"ev-{n}") for n in range(size)
    ]
    if poison_at is not None:
        bodies[poison_at] = page("https://x.io/pricing", POISON, event_id="ev-poison")
    return [
        Record(str(b["lead_id"]).encode(), json.dumps(b).encode(), TOPIC, 2, start + n)
        for n, b in enumerate(bodies)
    ]


def sample(metrics: WorkerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


@pytest.mark.parametrize(
    ("failure", "kind"),
    [("permanent", "permanent_error"), ("bug", "unknown_error"), ("lost-races", "unknown_error")],
)
async def test_a_poison_record_in_a_batch_of_500_costs_one_record(
    model: ScoringModel, failure: str, kind: str
) -> None:
    store = PoisonStore(failure)
    runtime, publisher, health, metrics = make(store, model)

    await runtime.score(batch(500, poison_at=250))

    # where the failing attempt committed the others first (lost races), their redo is a
    # duplicate: each of them counted once either way
    assert runtime.totals.scored + runtime.totals.duplicates == 499
    if failure != "lost-races":
        assert runtime.totals.scored == 499
    scored = {s for s, (_, blob) in store.states.items() if blob}
    assert len(scored) == 499
    assert POISON not in scored
    letters = [decode_dead_letter(m.value) for m in publisher.on(Topics().dlq)]
    assert len(letters) == 1
    (letter,) = letters
    assert letter.source_offset == 1250
    assert letter.source_partition == 2
    assert letter.key == POISON
    assert letter.kind == kind
    assert json.loads(letter.payload)["event_id"] == "ev-poison"
    assert sample(metrics, "leadpulse_dead_letters_total", reason=kind) == 1
    # the partition's progress covers the whole batch: nothing of it is read again
    assert await store.progress(TOPIC) == {2: 1500}
    assert health.healthy


async def test_an_unknown_error_is_dead_lettered_with_its_type_message_and_digest(
    model: ScoringModel,
) -> None:
    store = PoisonStore("bug")
    runtime, publisher, health, metrics = make(store, model)

    await runtime.score(batch(8, poison_at=3))

    (letter,) = [decode_dead_letter(m.value) for m in publisher.on(Topics().dlq)]
    assert letter.reason.startswith("unexpected KeyError: 'a bug (fake)' (after 3 attempts;")
    digest = letter.reason.rsplit("traceback ", 1)[1].rstrip(")")
    assert len(digest) == 12
    int(digest, 16)  # hex
    assert letter.errors == [letter.reason]
    # retried 2 times for the batch (3 failures), then halved: the halves with the poison
    # record fail once each (8 -> 4 -> 2), the record alone 3 times
    assert health.unknown_errors == 3 + 1 + 1 + 3
    assert sample(metrics, "leadpulse_unknown_errors_total", step="scoring_batch") == 8
    assert health.as_dict()["unknown_errors"] == 8
    assert runtime.totals.scored == 7


async def test_the_same_bug_gives_the_same_digest_whatever_the_input(
    model: ScoringModel,
) -> None:
    digests = []
    for offset in (0, 500):
        store = PoisonStore("bug")
        runtime, publisher, _, _ = make(store, model)
        await runtime.score(batch(3, poison_at=1, start=offset))
        (letter,) = [decode_dead_letter(m.value) for m in publisher.on(Topics().dlq)]
        digests.append(letter.reason.rsplit("traceback ", 1)[1])
    assert digests[0] == digests[1]


async def test_transient_errors_are_retried_without_limit(model: ScoringModel) -> None:
    store = PoisonStore("none")
    store.transient_left = 40  # far beyond the unknown-error budget of 2 retries
    runtime, publisher, health, metrics = make(store, model)

    await runtime.score(batch(20, poison_at=None))

    assert runtime.totals.scored == 20
    assert publisher.on(Topics().dlq) == []
    assert health.unknown_errors == 0
    assert sample(metrics, "leadpulse_retries_total", step="scoring_batch") == 40
