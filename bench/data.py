"""Benchmark traffic: the demo's persona mix (streams/demo.py), scaled up.

Each simulated lead gets one persona journey from `streams.dev.demo.persona_events`
(buyer, evaluator, browser, student, job seeker, unsubscriber, in the demo's
proportions), then "return visits": repeats of its own non-identify events,
with fresh event ids, until the wanted total is reached. So the mix of event
types, anonymous vs known events and identity merges is the demo's, and the
number of events per lead is `events / leads` on average. A few malformed
events (as the demo's trackers with bugs send) go to the dead-letter topic.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leadpulse.streams.dev.demo import PERSONAS, persona_events


@dataclass(frozen=True)
class Planned:
    offset: float
    """Seconds from the start of the simulated period."""
    body: dict[str, Any]

    @property
    def key(self) -> bytes:
        return str(self.body.get("lead_id") or self.body.get("anonymous_id") or "").encode()


@dataclass(frozen=True)
class Traffic:
    events: list[Planned]
    """In arrival order (by offset)."""
    personas: Counter[str]
    span: float

    def type_counts(self) -> Counter[str]:
        return Counter(str(p.body["type"]) for p in self.events)


def plan(events: int, leads: int, *, seed: int = 7, span: float = 3600.0) -> Traffic:
    """`events` events over `leads` leads spread over `span` seconds, in arrival order."""
    rng = random.Random(seed)
    kinds, weights = zip(*PERSONAS, strict=True)
    journeys: list[list[dict[str, Any]]] = []
    personas: Counter[str] = Counter()
    for n in range(leads):
        kind = rng.choices(kinds, weights)[0]
        personas[kind] += 1
        journeys.append(persona_events(kind, n, rng))
    bad = max(1, leads // 50)  # as in streams.dev.demo.plan_traffic: trackers have bugs too
    extra = events - bad - sum(len(j) for j in journeys)
    repeatable = [[e for e in j if e["type"] != "identify"] for j in journeys]
    for _ in range(max(0, extra)):
        n = rng.randrange(leads)
        if repeatable[n]:
            again = dict(rng.choice(repeatable[n]))
            again["event_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            journeys[n].append(again)
    planned: list[Planned] = []
    for journey in journeys:
        start = rng.uniform(0, span * 0.7)
        length = rng.uniform(span * 0.05, span * 0.3)
        step = length / max(len(journey) - 1, 1)
        planned.extend(Planned(start + i * step, body) for i, body in enumerate(journey))
    for i in range(bad):
        body = {"event_id": f"bad-{i}", "type": "Page View", "lead_id": "x"}
        planned.append(Planned(rng.uniform(0, span), body))
    planned.sort(key=lambda p: p.offset)
    return Traffic(events=planned[:events], personas=personas, span=span)


def is_bad(body: dict[str, Any]) -> bool:
    return str(body["event_id"]).startswith("bad-")


def encode(traffic: Traffic, *, end: float) -> list[tuple[bytes, bytes]]:
    """(key, value) records; event times end at `end` (epoch seconds, in the past)."""
    first = end - traffic.span
    records = []
    for p in traffic.events:
        body = p.body
        if not is_bad(body):
            at = datetime.fromtimestamp(first + p.offset, UTC)
            body = {**body, "occurred_at": at.isoformat()}
        records.append((p.key, json.dumps(body).encode()))
    return records
