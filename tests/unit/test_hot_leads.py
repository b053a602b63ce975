"""The hot-leads view (re-scored at now, stale entries dropped) and the handoff fan-out."""

from __future__ import annotations

import asyncio
import html
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

from leadpulse.schemas import Handoff, encode
from leadpulse.scoring import engagement, to_epoch
from leadpulse.streams.http.handoffs import (
    HandoffFeed,
    Subscriber,
    SubscriberDroppedError,
    event,
    summary,
)
from leadpulse.streams.http.hotpage import CANDIDATES, SCRIPT, hot_json, hot_leads, render_hot
from leadpulse.streams.pipeline.hotindex import repair_hot
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import Commit, MemoryLeadStore, encode_state
from tests.unit.test_lead_page import EVIL, MODEL, T0, fold, pricing
from tests.unit.test_lead_page import event as lead_event


def lead(name: str, days: float, demo: bool) -> Any:
    events = [pricing(0, days, name)]
    if demo:
        events.append(lead_event(1, "demo_request", days, name))
    return fold(events)


async def test_hot_leads_are_scored_again_at_now_and_stale_ones_leave() -> None:
    store = MemoryLeadStore()
    # "old" was hottest when last committed, 20 days ago; decayed it is below "fresh"
    old, fresh, mild = lead("old", -20, True), lead("fresh", -0.5, True), lead(EVIL, -1, False)
    await store.commit(
        [
            Commit("old", 0, encode_state(old), [], hot=500.0),
            Commit("fresh", 0, encode_state(fresh), [], hot=80.0),
            Commit(EVIL, 0, encode_state(mild), [], hot=20.0),
        ]
    )
    store.hot_index["gone"] = 900.0  # an index entry whose state expired
    now = to_epoch(T0)
    rows = await hot_leads(store, MODEL, now, limit=2)
    assert [row.lead_id for row in rows] == ["fresh", "old"]
    assert rows[0].engagement == engagement(fresh, now, MODEL)
    assert rows[1].engagement == engagement(old, now, MODEL)
    assert rows[0].engagement > rows[1].engagement
    # a GET writes nothing: the index is as it was
    assert store.hot_index == {"old": 500.0, "fresh": 80.0, EVIL: 20.0, "gone": 900.0}
    # the worker's repair drops "gone" and gives the others their engagement at now
    assert await repair_hot(store, MODEL, now, range(store.partitions)) == (1, 3)
    assert "gone" not in store.hot_index
    assert store.hot_index["old"] == rows[1].engagement
    assert store.hot_index["fresh"] == rows[0].engagement
    everything = await hot_leads(store, MODEL, now, limit=10)
    assert [row.lead_id for row in everything] == ["fresh", "old", EVIL]
    page = render_hot(everything, now, MODEL)
    assert html.escape(EVIL) in page
    assert EVIL not in page
    assert page.count("<script") == 1
    assert '<script src="/ui/hot.js"' in page
    listed = hot_json(everything, now, MODEL)
    assert [row["lead_id"] for row in listed["leads"]] == ["fresh", "old", EVIL]
    assert listed["leads"][0]["stage"] == fresh.stage.value


async def test_an_unreadable_lead_is_shown_as_such_and_the_page_renders() -> None:
    store = MemoryLeadStore()
    fresh = lead("fresh", -0.5, True)
    await store.commit(
        [
            Commit("fresh", 0, encode_state(fresh), [], hot=80.0),
            Commit("broken", 0, b"\x00not a state", [], hot=900.0),
        ]
    )
    now = to_epoch(T0)
    rows = await hot_leads(store, MODEL, now)
    assert [(row.lead_id, row.stage) for row in rows] == [
        ("fresh", "mql"),
        ("broken", "unreadable"),
    ]
    assert rows[0].stage == fresh.stage.value
    assert rows[1].unreadable is not None
    assert rows[1].unreadable.startswith("state is not JSON")
    listed = hot_json(rows, now, MODEL)
    assert listed["unreadable"] == 1
    page = render_hot(rows, now, MODEL)
    assert "UNREADABLE" in page
    # the repair leaves it alone (its events go to the DLQ until it is repaired)
    assert await repair_hot(store, MODEL, now, range(store.partitions)) == (0, 1)
    assert store.hot_index["broken"] == 900.0


async def test_hot_leads_read_candidates_beyond_what_they_show() -> None:
    store = MemoryLeadStore()
    asked: list[int] = []
    real = store.hot

    async def spy(limit: int) -> list[tuple[str, float]]:
        asked.append(limit)
        return await real(limit)

    store.hot = spy  # type: ignore[method-assign]
    assert await hot_leads(store, MODEL, to_epoch(T0), limit=5) == []
    assert asked == [5 * CANDIDATES]
    assert "no known lead has scored yet" in render_hot([], to_epoch(T0), MODEL)


def handoff_record(lead_id: str, at: float, n: int = 1) -> Any:
    message = Handoff(
        handoff_id=f"h-{lead_id}-{n}",
        lead_id=lead_id,
        engagement=81.5,
        fit=40.0,
        grade="A",
        occurred_at=T0 + timedelta(seconds=n),
        model_version="m-1",
    )
    return SimpleNamespace(value=encode(message), timestamp=int(at * 1000))


async def test_the_feed_fans_out_and_drops_a_subscriber_that_falls_behind() -> None:
    now = [1_000.0]
    feed = HandoffFeed(Settings(), queue_size=2, clock=lambda: now[0])
    fast, slow = feed.subscribe(), feed.subscribe()
    feed._publish(handoff_record("lead-1", 999.0))
    assert (await fast.next(0.1) or {})["lead_id"] == "lead-1"
    feed._publish(handoff_record("lead-2", 999.0))
    assert (await fast.next(0.1) or {})["lead_id"] == "lead-2"
    feed._publish(handoff_record("lead-3", 999.0))  # slow holds 2 already: dropped
    assert slow not in feed.subscribers
    assert slow.dropped.is_set()
    assert feed.dropped == 1
    assert (await fast.next(0.1) or {})["handoff_id"] == "h-lead-3-1"
    assert await fast.next(0.05) is None  # nothing new: time for a heartbeat
    feed._publish(handoff_record("old", 1_000.0 - 60))  # from before the feed: history
    feed._publish(SimpleNamespace(value=b"{not a handoff", timestamp=999_000))
    assert await fast.next(0.05) is None
    assert [item["lead_id"] for item in feed.recent] == ["lead-1", "lead-2", "lead-3"]
    await feed.stop()
    try:
        await fast.next(1.0)
    except SubscriberDroppedError:
        pass
    else:
        raise AssertionError("a stopped feed ends its streams")


async def test_a_subscriber_returns_its_item_before_a_drop_and_sse_framing() -> None:
    subscriber = Subscriber(4)
    subscriber.queue.put_nowait({"a": 1})
    assert await asyncio.wait_for(subscriber.next(1.0), 2) == {"a": 1}
    assert event("handoff", {"x": "a\nb"}) == b'event: handoff\ndata: {"x":"a\\nb"}\n\n'
    assert summary(b"[]", 1.0) is None


def test_times_are_written_as_the_script_writes_them() -> None:
    from leadpulse.streams.http.hotpage import iso_ms

    assert iso_ms(to_epoch(T0) + 0.1234) == "2026-11-22T10:00:00.123Z"


def test_the_page_and_its_json_name_the_workers_model_version() -> None:
    now = to_epoch(T0)
    page = render_hot([], now, MODEL)
    assert MODEL.model_version.startswith("page-1+")  # the model file's version, then its digest
    assert f'<code id="model-version">{MODEL.model_version}</code>' in page
    assert hot_json([], now, MODEL)["model_version"] == MODEL.model_version
    # the script shows the version each /hot refresh reports (a worker that switched models)
    assert 'getElementById("model-version")' in SCRIPT
    assert "modelVersion.textContent = hot.model_version" in SCRIPT


APPLYING = {
    "from_version": "v1+ffffffffffff",
    "to_version": "v2+0123456789ab",
    "phase": "replaying",
    "replayed": 1200,
    "done_events": 300,
    "target": 1200,
    "lag": 45,
}


def test_a_running_apply_is_on_the_page_and_in_the_json() -> None:
    now = to_epoch(T0)
    page = render_hot([], now, MODEL, APPLYING)
    assert (
        '<p id="model-apply" class="note">Applying model v2+0123456789ab (from '
        "v1+ffffffffffff): replaying, 1200 events replayed (25% of this round), lag 45.</p>"
    ) in page
    assert hot_json([], now, MODEL, APPLYING)["apply"] == APPLYING
    assert hot_json([], now, MODEL)["apply"] is None
    assert '<p id="model-apply" class="note" hidden></p>' in render_hot([], now, MODEL)
    assert "applying.hidden = !hot.apply" in SCRIPT  # the script keeps it current


async def test_the_apply_status_is_only_read_from_a_redis_store() -> None:
    from leadpulse.streams.http.routes import running_apply
    from leadpulse.streams.settings import Settings
    from leadpulse.streams.store import MemoryLeadStore

    assert await running_apply(Settings(), MemoryLeadStore()) is None
