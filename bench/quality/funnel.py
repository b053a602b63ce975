"""A simulated B2B funnel whose leads have a known latent buying intent over time.

Pure Python and seeded: `generate(leads, days, seed)` gives the same leads,
events and ground truth for the same arguments, on any machine (each lead
draws from its own `random.Random(f"{seed}:{n}")`).

Each lead has a persona, a fit profile (traits sent once, by an ``identify``
at its first touch), and two piecewise-linear curves over the simulated
period: its buying **intent** (0..1) and its **activity** (events per day).
Its behavioural events are a Poisson process at the activity rate (sampled by
thinning), and each event's type is drawn from weights that depend on the
intent at that moment: a lead close to buying looks at pricing, starts
trials, uses the product and requests demos; a lead at low intent reads the
blog and opens emails. Only the default model's event types and properties
are emitted (page_view with ``url``, email_open, email_click,
email_unsubscribe, form_submit, content_download, webinar_registered,
webinar_attended, trial_signup, product_usage, demo_request).

The ground truth is the intent curve: a lead is **sales-ready** while its
intent is at least READY (0.7), and has **gone cold** once it falls below
COLD (0.3). Both are intervals computed exactly from the curve's knots.

Personas (shares of the leads, and their curves; ``U(a, b)`` is uniform, days):

- **buyer** (12 %): arrives at ``U(0, 0.8 * days)`` with intent 0.15, which
  rises over ``U(10, 35)`` days to a peak ``U(0.8, 1.0)``, holds ``U(7, 25)``
  days (the buying window: sales-ready) and falls to 0.05 over ``U(3, 10)``
  days (bought, or chose someone else). Activity follows intent:
  ``0.1 + 2.0 * intent`` events per day.
- **evaluator** (13 %): arrives at ``U(0, 0.5 * days)``; intent rises over
  ``U(7, 25)`` days to ``U(0.75, 0.95)``, holds ``U(4, 12)`` days, fades to
  0.15 over ``U(5, 15)`` days and stays cold ``U(25, 60)`` days (the project
  was shelved), then rises again over ``U(5, 15)`` days to ``U(0.8, 1.0)``,
  holds ``U(5, 20)`` days and falls to 0.05 over 5 days. Two sales-ready
  episodes. Activity as the buyer's.
- **researcher** (35 %): arrives at ``U(0, 0.8 * days)``; intent rises over
  ``U(10, 30)`` days to ``U(0.3, 0.6)`` (never sales-ready), holds
  ``U(30, 120)`` days and fades to 0.1 over ``U(10, 30)`` days. Reads a lot:
  activity ``0.2 + 1.0 * intent``, content downloads and webinars weigh more.
- **student** (20 %): intent 0.05 throughout; active for a project of
  ``U(20, 60)`` days at 1.2 events per day (downloads, webinars, an
  occasional trial), 0.03 per day otherwise. Poor fit (grade D).
- **job seeker** (20 %): intent 0.05 throughout; active for ``U(14, 45)`` days
  at 0.8 events per day (careers pages above all), 0.02 per day otherwise.

Fit profiles: buyers and evaluators are always a fit sales works (grade A or
B under the default model), so the comparison is about engagement, not fit;
researchers and job seekers are half B (the dangerous ones: busy and
well-placed but not buying), half C; students are D.

Event-type weights at intent ``i`` (intent-driven personas; students and job
seekers have their own, fixed mixes in `_student_kind` and `_job_seeker_kind`):
blog/product page 3.0, pricing page ``0.2 + 3 i^2``, email open 2.0, email
click ``0.3 + i``, content download 0.4 (researchers 0.9), webinar
registration 0.2 (researchers 0.4; attended ``U(1, 7)`` days later with
probability ``0.3 + 0.6 i``), form ``0.1 + 0.3 i``, trial signup ``0.5 i^3``
(once), product usage ``3 i`` for 30 days after the trial, demo request
``1.5 * max(0, i - 0.55)`` (at most one per 30 days), unsubscribe 0.05 while
``i < 0.2`` (once; no email opens or clicks after it).

Not simulated: anonymous traffic and identity merges (every event carries
the lead id), sales feedback, malformed events. They are the same for every
scorer, so they would add noise, not change the comparison.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

from pydantic import JsonValue

from leadpulse.schemas import BehaviorEvent

START = datetime(2026, 1, 5, tzinfo=UTC)
"""Day 0 of the simulated period (a Monday)."""
DAY = 86_400.0
READY = 0.7
"""Intent at or above which a lead is truly sales-ready."""
COLD = 0.3
"""Intent below which a lead has gone cold."""
SITE = "https://example.com"

PERSONAS: tuple[tuple[str, float], ...] = (
    ("buyer", 0.12),
    ("evaluator", 0.13),
    ("researcher", 0.35),
    ("student", 0.20),
    ("job_seeker", 0.20),
)

Interval = tuple[float, float]
"""Closed interval [start, end] of epoch seconds."""

GOOD_FIT: dict[str, JsonValue] = {
    "company_size": 800,
    "industry": "software",
    "seniority": "vp",
    "country": "DE",
}
"""20 + 15 + 20 + 5 = 60: grade A."""
OK_FIT: dict[str, JsonValue] = {
    "company_size": 120,
    "industry": "financial-services",
    "seniority": "manager",
}
"""20 + 15 + 10 = 45: grade B."""
ENTERPRISE_FIT: dict[str, JsonValue] = {
    "company_size": 5000,
    "industry": "manufacturing",
    "seniority": "manager",
}
"""25 + 10 = 35: grade B."""
ANALYST_FIT: dict[str, JsonValue] = {
    "company_size": 300,
    "industry": "saas",
    "seniority": "analyst",
    "country": "US",
}
"""20 + 15 + 5 = 40: grade B (a well-placed researcher)."""
SMALL_FIT: dict[str, JsonValue] = {
    "company_size": 20,
    "industry": "retail",
    "seniority": "analyst",
    "country": "FR",
}
"""5 + 5 = 10: grade C."""
STUDENT_FIT: dict[str, JsonValue] = {
    "company_size": 5000,
    "industry": "education",
    "seniority": "student",
}
"""25 - 30 = -5: grade D."""


@dataclass(frozen=True)
class Curve:
    """Piecewise linear through (day, value) knots; flat before the first and after the last."""

    knots: tuple[tuple[float, float], ...]

    def at(self, day: float) -> float:
        knots = self.knots
        if day <= knots[0][0]:
            return knots[0][1]
        for (x0, y0), (x1, y1) in pairwise(knots):
            if day <= x1:
                return y0 if x1 == x0 else y0 + (y1 - y0) * (day - x0) / (x1 - x0)
        return knots[-1][1]

    def peak(self) -> float:
        return max(value for _, value in self.knots)

    def above(self, level: float, start: float, end: float) -> list[tuple[float, float]]:
        """Maximal intervals of [start, end] (days) where the value is >= level, exact."""
        xs = [start, *(x for x, _ in self.knots if start < x < end), end]
        found: list[tuple[float, float]] = []
        for x0, x1 in pairwise(xs):
            v0, v1 = self.at(x0), self.at(x1)
            if v0 >= level and v1 >= level:
                piece = (x0, x1)
            elif v0 >= level:
                piece = (x0, x0 + (x1 - x0) * (v0 - level) / (v0 - v1))
            elif v1 >= level:
                piece = (x0 + (x1 - x0) * (level - v0) / (v1 - v0), x1)
            else:
                continue
            if found and found[-1][1] >= piece[0]:
                found[-1] = (found[-1][0], piece[1])
            else:
                found.append(piece)
        return [(a, b) for a, b in found if b > a]


@dataclass(frozen=True)
class LeadTruth:
    """What the scorers try to guess about one lead, in epoch seconds."""

    persona: str
    ready: tuple[Interval, ...]
    """When the lead is truly sales-ready (intent >= READY)."""
    warm: tuple[Interval, ...]
    """When its intent is at least COLD; outside these it has gone cold."""
    end: float = math.inf
    """The end of the simulated period: what happens after it is unknown."""

    def ready_at(self, moment: float) -> bool:
        return any(start <= moment <= end for start, end in self.ready)

    def cold_from(self, moment: float) -> float | None:
        """The first time at or after `moment` the lead is cold; None if not in the period."""
        for start, end in self.warm:
            if start <= moment <= end:
                return None if end >= self.end else end
        return moment if moment < self.end else None


@dataclass(frozen=True)
class Funnel:
    """Generated leads: their events (event-time order), truth, and the period."""

    events: dict[str, list[BehaviorEvent]]
    truth: dict[str, LeadTruth]
    start: float
    end: float
    seed: int

    @property
    def leads(self) -> int:
        return len(self.events)

    def event_count(self) -> int:
        return sum(len(events) for events in self.events.values())

    def personas(self) -> Counter[str]:
        return Counter(truth.persona for truth in self.truth.values())

    def type_counts(self) -> Counter[str]:
        return Counter(event.type for events in self.events.values() for event in events)

    def ready_episodes(self) -> int:
        return sum(len(truth.ready) for truth in self.truth.values())


def generate(leads: int, days: float = 180.0, seed: int = 7) -> Funnel:
    """`leads` simulated leads over `days` days; deterministic per arguments."""
    if leads < 1:
        raise ValueError(f"leads must be at least 1, got {leads}")
    if days < 30:
        raise ValueError(f"days must be at least 30 (a lead's journey takes weeks), got {days}")
    kinds = [kind for kind, _ in PERSONAS]
    weights = [share for _, share in PERSONAS]
    start = START.timestamp()
    end = start + days * DAY
    events: dict[str, list[BehaviorEvent]] = {}
    truth: dict[str, LeadTruth] = {}
    for n in range(leads):
        rng = random.Random(f"{seed}:{n}")
        kind = rng.choices(kinds, weights)[0]
        lead_id = f"lead-{n:05d}"
        lead = _Lead(lead_id, kind, rng, days)
        events[lead_id] = lead.events()
        truth[lead_id] = LeadTruth(
            persona=kind,
            ready=_epochs(lead.intent.above(READY, 0.0, days)),
            warm=_epochs(lead.intent.above(COLD, 0.0, days)),
            end=end,
        )
    return Funnel(events=events, truth=truth, start=start, end=end, seed=seed)


def _epochs(intervals: list[tuple[float, float]]) -> tuple[Interval, ...]:
    start = START.timestamp()
    return tuple((start + a * DAY, start + b * DAY) for a, b in intervals)


class _Lead:
    """One simulated lead: its curves, then its events drawn along them."""

    def __init__(self, lead_id: str, kind: str, rng: random.Random, days: float) -> None:
        self.lead_id = lead_id
        self.kind = kind
        self.rng = rng
        self.days = days
        u = rng.uniform
        if kind == "buyer":
            a = u(0, 0.8 * days)
            rise, peak, hold, drop = u(10, 35), u(0.8, 1.0), u(7, 25), u(3, 10)
            top = a + rise + hold
            self.intent = Curve(((a, 0.15), (a + rise, peak), (top, peak), (top + drop, 0.05)))
            self.fit = rng.choice([GOOD_FIT, OK_FIT, ENTERPRISE_FIT])
        elif kind == "evaluator":
            a = u(0, 0.5 * days)
            r1, p1, h1, f1, cold = u(7, 25), u(0.75, 0.95), u(4, 12), u(5, 15), u(25, 60)
            r2, p2, h2 = u(5, 15), u(0.8, 1.0), u(5, 20)
            t1 = a + r1
            t2 = t1 + h1
            t3 = t2 + f1
            t4 = t3 + cold
            t5 = t4 + r2
            t6 = t5 + h2
            self.intent = Curve(
                (
                    (a, 0.15),
                    (t1, p1),
                    (t2, p1),
                    (t3, 0.15),
                    (t4, 0.15),
                    (t5, p2),
                    (t6, p2),
                    (t6 + 5, 0.05),
                )
            )
            self.fit = rng.choice([GOOD_FIT, OK_FIT, ENTERPRISE_FIT])
        elif kind == "researcher":
            a = u(0, 0.8 * days)
            rise, peak, hold, fade = u(10, 30), u(0.3, 0.6), u(30, 120), u(10, 30)
            self.intent = Curve(
                ((a, 0.1), (a + rise, peak), (a + rise + hold, peak), (a + rise + hold + fade, 0.1))
            )
            self.fit = rng.choice([ANALYST_FIT, SMALL_FIT])
        else:  # student, job_seeker: busy, not buying
            a = u(0, 0.8 * days)
            length = u(20, 60) if kind == "student" else u(14, 45)
            busy, idle = (1.2, 0.03) if kind == "student" else (0.8, 0.02)
            self.intent = Curve(((a, 0.05),))
            self.busy = Curve(((a, busy), (a + length, busy), (a + length + 0.001, idle)))
            self.fit = STUDENT_FIT if kind == "student" else rng.choice([OK_FIT, SMALL_FIT])
        self.arrival = a
        self.trial_at: float | None = None
        self.demo_at: float | None = None
        self.unsubscribed = False

    def activity(self, day: float) -> float:
        if day < self.arrival:
            return 0.0
        if self.kind in ("student", "job_seeker"):
            return self.busy.at(day)
        base, slope = (0.2, 1.0) if self.kind == "researcher" else (0.1, 2.0)
        return base + slope * self.intent.at(day)

    def max_activity(self) -> float:
        if self.kind in ("student", "job_seeker"):
            return self.busy.peak()
        base, slope = (0.2, 1.0) if self.kind == "researcher" else (0.1, 2.0)
        return base + slope * self.intent.peak()

    def events(self) -> list[BehaviorEvent]:
        rng = self.rng
        made: list[tuple[float, int, str, dict[str, Any]]] = []
        seq = 0

        def emit(day: float, kind: str, properties: dict[str, Any] | None = None) -> None:
            nonlocal seq
            made.append((day, seq, kind, properties or {}))
            seq += 1

        emit(self.arrival, "identify")
        rate = self.max_activity()
        day = self.arrival
        while True:  # thinning: candidates at the peak rate, kept at activity / peak
            day += rng.expovariate(rate)
            if day >= self.days:
                break
            if rng.random() * rate > self.activity(day):
                continue
            intent = self.intent.at(day)
            if self.kind == "student":
                kind, properties = self._student_kind(day)
            elif self.kind == "job_seeker":
                kind, properties = self._job_seeker_kind()
            else:
                kind, properties = self._intent_kind(day, intent)
            if kind == "":
                continue
            emit(day, kind, properties)
            if kind == "webinar_registered" and rng.random() < 0.3 + 0.6 * intent:
                later = day + rng.uniform(1, 7)
                if later < self.days:
                    emit(later, "webinar_attended")
        made.sort(key=lambda item: (item[0], item[1]))
        return [self._event(n, *item) for n, item in enumerate(made)]

    def _event(
        self, n: int, day: float, _seq: int, kind: str, properties: dict[str, Any]
    ) -> BehaviorEvent:
        return BehaviorEvent(
            event_id=f"{self.lead_id}-{n:04d}",
            type=kind,
            lead_id=self.lead_id,
            occurred_at=START + timedelta(days=day),
            properties=properties,
            traits=dict(self.fit) if kind == "identify" else {},
        )

    def _page(self, paths: list[str]) -> tuple[str, dict[str, Any]]:
        return "page_view", {"url": SITE + self.rng.choice(paths)}

    def _intent_kind(self, day: float, i: float) -> tuple[str, dict[str, Any]]:
        researcher = self.kind == "researcher"
        trial_on = self.trial_at is not None and day - self.trial_at <= 30
        demo_ok = self.demo_at is None or day - self.demo_at >= 30
        options: list[tuple[float, Callable[[], tuple[str, dict[str, Any]]]]] = [
            (3.0, lambda: self._page(["/", "/blog/lead-scoring", "/blog/decay", "/product"])),
            (0.2 + 3 * i * i, lambda: self._page(["/pricing", "/pricing#enterprise"])),
            (0.0 if self.unsubscribed else 2.0, lambda: ("email_open", {"campaign": "news"})),
            (0.0 if self.unsubscribed else 0.3 + i, lambda: ("email_click", {"campaign": "news"})),
            (0.9 if researcher else 0.4, lambda: ("content_download", {"asset": "guide"})),
            (0.4 if researcher else 0.2, lambda: ("webinar_registered", {})),
            (0.1 + 0.3 * i, lambda: ("form_submit", {"form": "contact"})),
            (0.5 * i**3 if self.trial_at is None else 0.0, lambda: self._mark("trial", day)),
            (3 * i if trial_on else 0.0, lambda: ("product_usage", {"feature": "scoring"})),
            (1.5 * max(0.0, i - 0.55) if demo_ok else 0.0, lambda: self._mark("demo", day)),
            (
                0.05 if i < 0.2 and not self.unsubscribed else 0.0,
                lambda: self._mark("unsubscribe", day),
            ),
        ]
        return self._draw(options)

    def _mark(self, what: str, day: float) -> tuple[str, dict[str, Any]]:
        if what == "trial":
            self.trial_at = day
            return "trial_signup", {"plan": "pro"}
        if what == "demo":
            self.demo_at = day
            return "demo_request", {}
        self.unsubscribed = True
        return "email_unsubscribe", {}

    def _student_kind(self, day: float) -> tuple[str, dict[str, Any]]:
        trial_on = self.trial_at is not None and day - self.trial_at <= 30
        return self._draw(
            [
                (2.0, lambda: self._page(["/", "/blog/lead-scoring", "/blog/decay"])),
                (1.5, lambda: ("content_download", {"asset": "guide"})),
                (0.5, lambda: ("webinar_registered", {})),
                (1.0, lambda: ("email_open", {"campaign": "news"})),
                (0.2, lambda: self._page(["/pricing"])),
                (0.1 if self.trial_at is None else 0.0, lambda: self._mark("trial", day)),
                (1.0 if trial_on else 0.0, lambda: ("product_usage", {"feature": "scoring"})),
            ]
        )

    def _job_seeker_kind(self) -> tuple[str, dict[str, Any]]:
        return self._draw(
            [
                (3.0, lambda: self._page(["/careers", "/careers/sdr", "/careers/engineer"])),
                (1.5, lambda: self._page(["/", "/about", "/blog/culture"])),
                (0.3, lambda: self._page(["/pricing"])),
                (0.5, lambda: ("email_open", {"campaign": "news"})),
                (0.1, lambda: ("content_download", {"asset": "guide"})),
            ]
        )

    def _draw(
        self, options: list[tuple[float, Callable[[], tuple[str, dict[str, Any]]]]]
    ) -> tuple[str, dict[str, Any]]:
        total = sum(weight for weight, _ in options)
        pick = self.rng.random() * total
        for weight, make in options:
            if weight <= 0:
                continue
            pick -= weight
            if pick < 0:
                return make()
        return options[0][1]()
