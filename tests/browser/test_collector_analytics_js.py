"""analytics.js, unmodified, in headless Chromium, pointed at `leadpulse collect`.

The page's identify + page + track calls go through the collector (CORS
preflights included) into Kafka; the worker scores them: the lead's stored
engagement equals `scoring`'s for the events on the topic, and the handoff
appears on the handoffs topic. A second run of the same page (a returning
visitor) shows the browser's retries and re-sends are counted once.
"""

from __future__ import annotations

import json
import os
import secrets
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from leadpulse.schemas import decode_event, decode_handoff
from leadpulse.scoring import apply, engagement, load_model, new_lead
from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import CollectorProcess, WorkerProcess
from leadpulse.streams.settings import Settings
from tests.browser.analytics_js import missing, run_analytics_js
from tests.integration.harness import (
    free_port,
    poll_topic,
    read_state,
    start_worker,
    wait_for,
    worker_settings,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing()) and not os.environ.get("CI"),
        reason="analytics.js harness not installed: " + "; ".join(missing()),
    ),
]

EVENTS_TABLE = "events:\n  Demo Requested: demo_request\n"

SCRIPT = """
await analytics.identify("LEAD", {email: "ada@example.com", company_size: 300});
await analytics.page("Pricing", {url: "https://example.com/pricing"});
await analytics.track("Demo Requested", {plan: "growth"});
return analytics.user().anonymousId();
"""


@pytest.fixture(scope="module")
def deployment(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, CollectorProcess, WorkerProcess]]:
    workdir = tmp_path_factory.mktemp("browser")
    settings = worker_settings(stack, workdir)
    assert settings.model_file is not None
    with settings.model_file.open("a") as model:
        model.write(EVENTS_TABLE)
    settings = settings.replace(
        collector_port=free_port(),
        collector_metrics_port=free_port(),
        write_keys=f"website=wk_{secrets.token_hex(12)}",
    )
    worker = start_worker(settings, workdir / "worker.log")
    try:
        with CollectorProcess(settings, workdir / "collector.log") as collector:
            yield settings, collector, worker
    finally:
        worker.stop()


def _key(settings: Settings) -> str:
    return next(iter(settings.write_key_sources))


def _events_of(settings: Settings, lead: str, count: int) -> list[bytes]:
    def mine(values: list[bytes]) -> list[bytes]:
        return [v for v in values if decode_event(v).lead_id == lead]

    return mine(
        poll_topic(
            settings, settings.events_topic, done=lambda v: len(mine(v)) >= count, timeout=30
        )
    )


def test_analytics_js_calls_are_scored_and_hand_the_lead_off(
    deployment: tuple[Settings, CollectorProcess, WorkerProcess], tmp_path: Path
) -> None:
    settings, collector, _ = deployment
    lead = "lead-browser-1"
    host = f"127.0.0.1:{settings.collector_port}"
    run = run_analytics_js(
        host, _key(settings), SCRIPT.replace("LEAD", lead), screenshot=tmp_path / "page.png"
    )
    posts = [r for r in run.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/v1/i", "/v1/p", "/v1/t"], run.summary()
    assert [r.status for r in posts] == [200, 200, 200], run.summary()
    assert run.delivery_failures == []
    assert run.pending() == []
    anonymous_id = run.result

    values = _events_of(settings, lead, 3)
    events = [decode_event(v) for v in values]
    assert [e.type for e in events] == ["identify", "page_view", "demo_request"]
    assert events[0].anonymous_id == anonymous_id
    assert {e.event_id for e in events} == {m["messageId"] for m in run.messages()}

    handoffs = poll_topic(settings, settings.handoffs_topic, done=bool, timeout=60)
    handoff = next(decode_handoff(v) for v in handoffs if decode_handoff(v).lead_id == lead)
    assert handoff.event_id == events[-1].event_id  # the demo request tipped it over

    assert settings.model_file is not None
    model = load_model(settings.model_file)
    expected = new_lead(lead)
    for event in events:
        expected, _ = apply(expected, event, model)
    _, state = read_state(settings, lead)
    assert state is not None
    at = expected.clock
    assert engagement(state, at, model) == pytest.approx(engagement(expected, at, model))
    assert handoff.engagement == pytest.approx(engagement(expected, at, model))
    assert collector.alive()


def test_the_same_page_sent_twice_counts_once(
    deployment: tuple[Settings, CollectorProcess, WorkerProcess],
) -> None:
    """A browser re-sends a call whose answer it did not see: the messageId keeps it one event."""
    settings, collector, worker = deployment
    lead = "lead-browser-2"
    host = f"127.0.0.1:{settings.collector_port}"
    script = SCRIPT.replace("LEAD", lead)
    first = run_analytics_js(host, _key(settings), script)
    assert [r.status for r in first.requests if r.method == "POST"] == [200, 200, 200]
    messages = first.messages()
    # the browser's retry of each call: the same JSON, posted again as analytics.js would
    for request in (r for r in first.requests if r.method == "POST"):
        body = json.dumps({**request.json, "sentAt": "2026-12-01T00:00:00.000Z"}).encode()
        reply = urllib.request.urlopen(
            urllib.request.Request(
                f"{collector.url}{request.path}",
                data=body,
                headers={"Content-Type": "text/plain"},
            ),
            timeout=10,
        )
        assert reply.status == 200
    wait_for(lambda: _applied(settings, lead) >= 3, timeout=60, what="events applied")
    wait_for(lambda: worker.stats().get("duplicates", 0) >= 3, timeout=60, what="duplicates")
    assert _applied(settings, lead) == len(messages) == 3


def _applied(settings: Settings, lead: str) -> int:
    _, state = read_state(settings, lead)
    return 0 if state is None else state.events_applied
