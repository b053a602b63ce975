"""Shared pieces for component tests: a small model, event builders, fakes."""

from __future__ import annotations

import itertools
from collections import namedtuple
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadpulse.scoring import ScoringModel, parse_model
from leadpulse.streams.kafka.publisher import Outgoing, RefusedMessagesError

MODEL_YAML = """
version: "test-1"
engagement:
  rules:
    - {name: pricing-page, event: page_view, when: {url_contains: /pricing}, points: 20,
       half_life: 10s, cap: 40}
    - {name: page-view, event: page_view, points: 1, half_life: 10s, cap: 5}
    - {name: demo-request, event: demo_request, points: 60, half_life: 20s}
    - {name: unsubscribe, event: email_unsubscribe, points: -80, half_life: 60s}
fit:
  rules:
    - {name: mid-market, trait: company_size, between: [50, 5000], points: 40}
  grades: {A: 40, B: 20, C: 10}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
"""

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

TP = namedtuple("TP", "topic partition")
"""Faust's TopicPartition, as far as the runtime reads it."""


class Clock:
    """A settable epoch-seconds clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeConsumer:
    """What `Runtime.after_seek` uses of Faust's consumer; records the seeks."""

    def __init__(self, committed: dict[Any, int | None]) -> None:
        self._committed_offset = committed
        self.sought: dict[Any, int] = {}

    def assignment(self) -> set[Any]:
        return set(self._committed_offset)

    async def seek(self, tp: Any, offset: int) -> None:
        self.sought[tp] = offset


@pytest.fixture(scope="session")
def model() -> ScoringModel:
    return parse_model(MODEL_YAML, "test-model.yaml")


_ids = itertools.count()


def event(
    kind: str,
    lead: str | None = "lead-1",
    *,
    at: float = 0.0,
    anon: str | None = None,
    event_id: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id or f"e-{next(_ids)}",
        "type": kind,
        "occurred_at": (T0 + timedelta(seconds=at)).isoformat(),
    }
    if lead is not None:
        body["lead_id"] = lead
    if anon is not None:
        body["anonymous_id"] = anon
    body.update(extra)
    return body


def page(url: str, lead: str | None = "lead-1", **kw: Any) -> dict[str, Any]:
    return event("page_view", lead, properties={"url": url}, **kw)


class FakePublisher:
    """Collects published messages; can fail the next N publishes, or refuse big messages.

    Like the real broker, a message above `max_size` bytes is refused for
    good (`RefusedMessagesError`) while the others of the same publish land.
    """

    def __init__(self, max_size: int | None = None) -> None:
        self.sent: list[Outgoing] = []
        self.fail_next = 0
        self.max_size = max_size
        self.calls = 0

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        self.calls += 1
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker unavailable (fake)")
        limit = self.max_size
        refused = [
            (m, "MessageSizeTooLargeError (fake)")
            for m in messages
            if limit and len(m.value) > limit
        ]
        self.sent.extend(m for m in messages if not (limit and len(m.value) > limit))
        if refused:
            raise RefusedMessagesError(refused)

    def on(self, topic: str) -> list[Outgoing]:
        return [m for m in self.sent if m.topic == topic]
