"""The worker's live handoff stream (server-sent events) on the embedded stack.

A client of ``/ui/handoffs/stream`` gets ``ready``, then the handoff a lead's
events cause; stopping the worker ends open streams instead of holding the
web server's shutdown (aiohttp waits up to a minute for open requests).
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadpulse.streams.dev.devstack import DevStack
from tests.integration.harness import READ_TOKEN, produce, start_worker, wait_for, worker_settings

pytestmark = pytest.mark.integration


class Listener(threading.Thread):
    """Reads one event stream into `events` (name, data) until it closes."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.events: list[tuple[str, Any]] = []
        self.comments = 0
        self.closed = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        request = urllib.request.Request(
            self.url, headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        name = ""
        try:
            with urllib.request.urlopen(request, timeout=60) as reply:
                assert reply.headers["Content-Type"] == "text/event-stream"
                for raw in reply:
                    line = raw.decode().rstrip("\n")
                    if line.startswith("event: "):
                        name = line[len("event: ") :]
                    elif line.startswith("data: "):
                        self.events.append((name, json.loads(line[len("data: ") :])))
                    elif line.startswith(":"):
                        self.comments += 1
        except Exception as error:  # reported by the test
            self.error = f"{type(error).__name__}: {error}"
        finally:
            self.closed.set()


def tipping(lead: str) -> list[dict[str, Any]]:
    now = datetime.now(UTC)

    def body(index: int, kind: str, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": f"{lead}-{index}",
            "type": kind,
            "lead_id": lead,
            "occurred_at": (now - timedelta(seconds=10 - index)).isoformat(),
            **fields,
        }

    return [
        body(0, "identify", traits={"company_size": 300}),
        body(1, "page_view", properties={"url": "https://example.com/pricing"}),
        body(2, "demo_request"),
    ]


def test_a_stream_sees_the_handoff_and_ends_when_the_worker_stops(
    stack: DevStack, tmp_path: Path
) -> None:
    workdir = tmp_path
    settings = worker_settings(stack, workdir, partitions=2)
    worker = start_worker(settings, workdir / "worker.log")
    try:
        listener = Listener(f"http://127.0.0.1:{settings.web_port}/ui/handoffs/stream")
        listener.start()
        wait_for(lambda: bool(listener.events), timeout=20, what="the stream's ready event")
        assert listener.events[0] == ("ready", {"recent": []})
        lead = f"stream-{uuid.uuid4().hex[:8]}"
        produce(settings, tipping(lead))
        wait_for(
            lambda: any(name == "handoff" for name, _ in listener.events),
            timeout=30,
            what="a handoff on the stream",
        )
        (handoff,) = [data for name, data in listener.events if name == "handoff"]
        assert handoff["lead_id"] == lead
        assert handoff["grade"] == "A"
        assert handoff["engagement"] >= 70
        with urllib.request.urlopen(
            urllib.request.Request(
                f"http://127.0.0.1:{settings.web_port}/handoffs/recent",
                headers={"Authorization": f"Bearer {READ_TOKEN}"},
            ),
            timeout=5,
        ) as reply:
            recent = json.load(reply)
        assert recent["feed_running"] is True
        assert [h["lead_id"] for h in recent["handoffs"]] == [lead]
    finally:
        worker.stop()
    # stopped by SIGTERM in time, not killed after stop_process' 15 s
    assert worker.process is not None
    assert worker.process.returncode == 0, worker.log_tail()
    assert listener.closed.wait(10), "the stream stayed open after the worker stopped"
