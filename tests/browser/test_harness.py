"""The analytics.js harness against a recording Segment-like endpoint on 127.0.0.1.

These tests pin what the real analytics.js (npm @segment/analytics-next, UMD build)
sends, so that the collector's end-to-end test can rely on the harness.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.browser.analytics_js import (
    AnalyticsJsTimeoutError,
    missing,
    run_analytics_js,
    run_analytics_js_async,
)

# On CI a missing piece must fail the run, not hide behind a skip.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing()) and not os.environ.get("CI"),
        reason="analytics.js harness not installed: " + "; ".join(missing()),
    ),
]

WRITE_KEY = "wk-harness-test"

IDENTIFY_PAGE_TRACK = """
await analytics.identify("lead-1", {email: "ada@example.com", company: "Acme"});
await analytics.page("Pricing");
await analytics.track("Demo Requested", {plan: "growth"});
return analytics.user().anonymousId();
"""


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: str
    at: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Recorder:
    """A Segment-ish endpoint: records every request, answers `statuses` first, then 200."""

    statuses: list[int] = field(default_factory=list)
    cors: bool = True
    requests: list[Recorded] = field(default_factory=list)
    host: str = ""

    def posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    def cors_headers(self, request: web.Request) -> dict[str, str]:
        if not self.cors:
            return {}
        return {
            "Access-Control-Allow-Origin": request.headers.get("Origin", "*"),
            "Access-Control-Allow-Methods": "POST, OPTIONS",
            "Access-Control-Allow-Headers": request.headers.get(
                "Access-Control-Request-Headers", "authorization, content-type"
            ),
            "Access-Control-Max-Age": "0",
        }

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        self.requests.append(
            Recorded(request.method, request.path, dict(request.headers), body, time.monotonic())
        )
        headers = self.cors_headers(request)
        if request.method == "OPTIONS":
            return web.Response(status=204, headers=headers)
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(
            status=status, text="{}", content_type="application/json", headers=headers
        )


async def _start(recorder: Recorder) -> web.AppRunner:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    recorder.host = f"127.0.0.1:{runner.addresses[0][1]}"
    return runner


@pytest.fixture
async def recorder() -> AsyncIterator[Recorder]:
    rec = Recorder()
    runner = await _start(rec)
    try:
        yield rec
    finally:
        await runner.cleanup()


def _basic(write_key: str) -> str:
    return "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()


async def test_identify_page_track_post_short_paths(recorder: Recorder, tmp_path: Path) -> None:
    shot = tmp_path / "page.png"
    started = time.monotonic()
    run = await run_analytics_js_async(
        recorder.host, WRITE_KEY, IDENTIFY_PAGE_TRACK, timeout=30, screenshot=shot
    )
    wall = time.monotonic() - started
    print(f"run took {run.duration:.2f} s, {wall:.2f} s with teardown")

    assert run.version == "1.84.3"
    assert run.paths == ["/v1/i", "/v1/p", "/v1/t"]
    assert [r.status for r in run.requests] == [200, 200, 200]
    assert run.console_errors == []
    assert run.foreign_requests == []
    assert run.delivery_failures == []
    assert run.pending() == []
    assert shot.stat().st_size > 0

    posts = recorder.posts()
    assert [p.path for p in posts] == ["/v1/i", "/v1/p", "/v1/t"]
    # Authorization is not a CORS-safelisted header: each POST was preflighted.
    preflights = [r for r in recorder.requests if r.method == "OPTIONS"]
    assert [p.path for p in preflights] == ["/v1/i", "/v1/p", "/v1/t"]
    for preflight in preflights:
        assert preflight.headers["Access-Control-Request-Method"] == "POST"
        assert preflight.headers["Access-Control-Request-Headers"] == "authorization"

    anonymous_id = run.result
    bodies = [p.json for p in posts]
    for post, body in zip(posts, bodies, strict=True):
        assert post.headers["Content-Type"] == "text/plain"
        assert post.headers["Authorization"] == _basic(WRITE_KEY)
        assert "X-Retry-Count" not in post.headers
        assert post.headers["Origin"].startswith("http://127.0.0.1:")
        assert body["writeKey"] == WRITE_KEY
        assert body["anonymousId"] == anonymous_id
        assert body["userId"] == "lead-1"
        assert body["sentAt"].endswith("Z")
        assert body["timestamp"].endswith("Z")
        assert body["context"]["library"] == {"name": "analytics.js", "version": "next-1.84.3"}
        assert body["context"]["page"]["url"].startswith("http://127.0.0.1:")
    assert len({b["messageId"] for b in bodies}) == 3
    assert [b["type"] for b in bodies] == ["identify", "page", "track"]
    identify, page, track = bodies
    assert identify["traits"] == {"email": "ada@example.com", "company": "Acme"}
    assert page["name"] == "Pricing"
    assert page["properties"]["url"].startswith("http://127.0.0.1:")
    assert track["event"] == "Demo Requested"
    assert track["properties"] == {"plan": "growth"}
    assert "traits" not in track
    # The harness saw the same bodies the endpoint got.
    assert [r.json for r in run.requests] == bodies
    assert [m["messageId"] for m in run.messages()] == [b["messageId"] for b in bodies]
    assert [d["messageId"] for d in run.dispatched] == [b["messageId"] for b in bodies]


async def test_retries_after_a_500(recorder: Recorder) -> None:
    recorder.statuses = [500]
    run = await run_analytics_js_async(
        recorder.host, WRITE_KEY, 'await analytics.track("Demo Requested");', timeout=20
    )
    print(f"run took {run.duration:.2f} s")

    posts = recorder.posts()
    assert [p.path for p in posts] == ["/v1/t", "/v1/t"]
    assert [r.status for r in run.requests] == [500, 200]
    first, second = (p.json for p in posts)
    assert first["messageId"] == second["messageId"]
    assert "X-Retry-Count" not in posts[0].headers
    assert posts[1].headers["X-Retry-Count"] == "1"
    # The retry is normalised again: a new sentAt, and the attempt in _metadata.
    assert second["sentAt"] >= first["sentAt"]
    assert "retryCount" not in first["_metadata"]
    assert second["_metadata"]["retryCount"] == 2
    # The first retry waits only for the destination's flush timer (0.1-0.6 s).
    gap = posts[1].at - posts[0].at
    print(f"retry after {gap:.2f} s")
    assert 0.05 < gap < 15
    # The retry's preflight asks for the extra header too.
    preflights = [r for r in recorder.requests if r.method == "OPTIONS"]
    assert [p.headers["Access-Control-Request-Headers"] for p in preflights] == [
        "authorization",
        "authorization,x-retry-count",
    ]
    # The browser logs the failed request as a console error.
    assert any("500" in e for e in run.console_errors)
    assert run.delivery_failures == []
    assert run.pending() == []


async def test_drops_the_event_on_a_400(recorder: Recorder) -> None:
    recorder.statuses = [400]
    run = await run_analytics_js_async(
        recorder.host, WRITE_KEY, 'await analytics.track("Demo Requested");', timeout=20
    )
    assert [p.path for p in recorder.posts()] == ["/v1/t"]
    assert [r.status for r in run.requests] == [400]
    [failure] = run.delivery_failures
    assert failure["code"] == "delivery_failure"
    assert failure["messageId"] == recorder.posts()[0].json["messageId"]
    assert "Non-retryable error: 400" in failure["reason"]
    await asyncio.sleep(1.5)
    assert len(recorder.posts()) == 1


async def test_batching_posts_one_batch(recorder: Recorder) -> None:
    run = await run_analytics_js_async(
        recorder.host,
        WRITE_KEY,
        IDENTIFY_PAGE_TRACK,
        segment_io={"deliveryStrategy": {"strategy": "batching", "config": {"size": 3}}},
    )
    [post] = recorder.posts()
    assert post.path == "/v1/b"
    assert post.headers["Content-Type"] == "text/plain"
    assert post.headers["Authorization"] == _basic(WRITE_KEY)
    body = post.json
    assert body["writeKey"] == WRITE_KEY
    assert "sentAt" in body
    assert [m["type"] for m in body["batch"]] == ["identify", "page", "track"]
    assert all("sentAt" not in m for m in body["batch"])
    assert all(m["userId"] == "lead-1" for m in body["batch"])
    assert [m["messageId"] for m in run.messages()] == [m["messageId"] for m in body["batch"]]


async def test_an_endpoint_without_cors_times_out_with_the_reason() -> None:
    rec = Recorder(cors=False)
    runner = await _start(rec)
    try:
        with pytest.raises(AnalyticsJsTimeoutError) as caught:
            await run_analytics_js_async(
                rec.host, WRITE_KEY, 'await analytics.track("Demo Requested");', timeout=4
            )
    finally:
        await runner.cleanup()
    run = caught.value.run
    # Only preflights reached the endpoint; the POSTs were never sent.
    assert {r.method for r in rec.requests} == {"OPTIONS"}
    assert all(r.failure for r in run.requests)
    assert any("CORS policy" in e for e in run.console_errors)
    assert len(run.pending()) == 1
    assert "CORS policy" in str(caught.value)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


def _leftovers(profile: str) -> list[str]:
    """The Chromium profile directory if it is still there, and processes using it."""
    return ([profile] if Path(profile).exists() else []) + _processes_mentioning(profile)


def _children() -> list[str]:
    me = str(os.getpid())
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me:  # pid, name and start time: CPU counters move on their own
            found.append(f"{proc.name}: {stat.split(')')[0]}) started {fields[19]}")
    return found


async def test_sync_call_stops_every_process(recorder: Recorder) -> None:
    before = _children()
    # The blocking form, from a thread with no loop; the endpoint stays on this loop.
    run = await asyncio.to_thread(
        run_analytics_js, recorder.host, WRITE_KEY, 'await analytics.track("Demo Requested");'
    )
    assert run.paths == ["/v1/t"]
    assert _leftovers(run.user_data_dir) == []
    assert _children() == before


async def test_sync_call_refuses_a_running_loop() -> None:
    with pytest.raises(RuntimeError, match="run_analytics_js_async"):
        run_analytics_js("127.0.0.1:9", WRITE_KEY, "")


@pytest.mark.parametrize(
    "api_host",
    ["10.0.0.1:80", "example.com:80", "https://127.0.0.1:443", "127.0.0.1", "127.0.0.1:80/v1"],
)
async def test_only_loopback_http_endpoints(api_host: str) -> None:
    with pytest.raises(ValueError, match="api_"):
        await run_analytics_js_async(api_host, WRITE_KEY, "")
