"""The sweeper recycles a lead at the exact end of a rule window (issue 16 item 5).

In memory, through the processor's real steps (decode -> apply -> persist ->
due index -> sweep -> publish), with a model whose demo rule counts only for
one hour: the due time and the NURTURE transition are the window end itself.
"""

from __future__ import annotations

import json
from datetime import timedelta

from leadpulse.schemas import decode_transition
from leadpulse.scoring import parse_model
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.store import MemoryLeadStore, decode_state
from tests.component.conftest import T0, FakePublisher, event

WINDOW_MODEL = parse_model(
    """
version: "window-1"
engagement:
  rules:
    - {name: demo-request, event: demo_request, points: 60, half_life: none, window: 1h}
    - {name: visits, event: page_view, points: 15, half_life: none}
fit:
  grades: {A: 40, B: 20}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: C}
  recycle: 25
""",
    "window-model.yaml",
)
TOPICS = Topics()


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


async def test_the_sweeper_recycles_at_the_window_end() -> None:
    store = MemoryLeadStore(partitions=4)
    publisher = FakePublisher()
    clock = Clock()
    processor = Processor(store, publisher, WINDOW_MODEL, topics=TOPICS, clock=clock)
    bodies = [
        event("demo_request", "lead-1", at=0),
        event("page_view", "lead-1", at=600, properties={"url": "https://x.io/"}),
    ]
    records = [
        Record(
            key=b"lead-1",
            value=json.dumps(body).encode(),
            topic="leadpulse.events",
            partition=0,
            offset=offset,
            timestamp=T0.timestamp() + at,
        )
        for offset, (body, at) in enumerate(zip(bodies, (0, 600), strict=True))
    ]
    report = await processor.process(records)
    assert [(t.from_stage, t.to_stage) for t in report.transitions] == [
        ("iql", "mql"),
        ("mql", "sal"),
    ]
    window_end = T0.timestamp() + 3600.0  # demo at T0 counts on [T0, T0 + 1h): 75 -> 15
    assert store.due_index["lead-1"] == window_end
    state = decode_state(store.states["lead-1"][1])
    assert state.windows == {"demo-request": ((T0.timestamp(), 60.0),)}

    clock.now = window_end - 0.001
    assert (await processor.sweep()).transitions == []
    clock.now = window_end + 900  # a late sweep still dates the recycle at the window end
    report = await processor.sweep()
    assert [(t.from_stage, t.to_stage, t.event_id) for t in report.transitions] == [
        ("sal", "nurture", None)
    ]
    published = [decode_transition(m.value) for m in publisher.on(TOPICS.transitions)]
    recycle = published[-1]
    assert recycle.to_stage == "nurture"
    assert recycle.occurred_at == T0 + timedelta(hours=1)
    assert recycle.engagement == 15.0
    assert "lead-1" not in store.due_index
    assert decode_state(store.states["lead-1"][1]).stage == "nurture"
