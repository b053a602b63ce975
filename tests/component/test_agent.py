"""The Faust scoring agent, without a broker: `agent.test_context()` + in-memory store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

from leadpulse.schemas import decode_dead_letter, decode_handoff
from leadpulse.scoring import ScoringModel
from leadpulse.streams.pipeline.app import build
from leadpulse.streams.pipeline.records import Topics
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import MemoryLeadStore
from tests.component.conftest import FakePublisher, event, page


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not met")


async def test_agent_scores_hands_off_and_dead_letters(model: ScoringModel) -> None:
    store, publisher = MemoryLeadStore(), FakePublisher()
    settings = Settings(broker="kafka://127.0.0.1:9", web_port=6066, batch_within=0.01)
    pipeline = build(settings, model, store=store, publisher=publisher)
    bodies = [
        event("identify", "lead-1", traits={"company_size": 300}),
        page("https://x.io/pricing", at=1),
        event("demo_request", at=2),
    ]
    async with pipeline.agent.test_context() as agent:
        await agent.put(b"{broken", key=b"lead-1")
        for body in bodies:
            await agent.put(json.dumps(body).encode(), key=b"lead-1")
        await until(lambda: len(publisher.on(Topics().handoffs)) == 1)
    handoff = decode_handoff(publisher.on(Topics().handoffs)[0].value)
    assert (handoff.lead_id, handoff.grade) == ("lead-1", "A")
    letter = decode_dead_letter(publisher.on(Topics().dlq)[0].value)
    assert letter.reason.startswith("invalid JSON")
    assert pipeline.totals.scored == 3
    assert pipeline.totals.dead_lettered == 1
    assert pipeline.totals.transitions == {"iql->mql": 1, "mql->sal": 1}


async def test_agent_retries_a_batch_until_the_broker_takes_it(model: ScoringModel) -> None:
    store, publisher = MemoryLeadStore(), FakePublisher()
    publisher.fail_next = 2  # the broker refuses twice, then recovers
    settings = Settings(broker="kafka://127.0.0.1:9", web_port=6066)
    pipeline = build(settings, model, store=store, publisher=publisher)
    bodies = [
        event("identify", "lead-2", traits={"company_size": 300}),
        event("demo_request", "lead-2", at=1),
        page("https://x.io/pricing", "lead-2", at=2),
    ]
    async with pipeline.agent.test_context() as agent:
        for body in bodies:
            await agent.put(json.dumps(body).encode(), key=b"lead-2")
        await until(lambda: len(publisher.on(Topics().handoffs)) == 1, seconds=10)
    assert store.outboxes == {}
    assert pipeline.totals.transitions == {"iql->mql": 1, "mql->sal": 1}
