"""A lead's engagement over time, as exactly as its state allows: the data of a chart.

What the state keeps decides what can be drawn. Per rule, `LeadState.rules`
holds one ``(value, ref)`` pair (`decay.RuleState`): the sum of the rule's
matched events decayed to `ref`, and `ref` is the time of the rule's latest
matched event (`decay.add` only moves it forward, to an event time). The
individual events are folded in and gone, and so is the lead's first event
time. Hence:

- rule r's contribution is exact at every t >= ref_r: all its events are at or
  before t, so ``decay.contribution(pair, t)`` is the definition's sum, capped.
  Before ref_r it is unknown: the pair cannot tell how much of its value came
  from events before t (growing the value back in time would count later
  events as if they had already happened), so no line is drawn there;
- the total, ``max(0, sum of contributions)``, is exact from the latest of those
  times on (`RuleCurve.since` of every rule: the lead's last scoring event) and
  unknown before it;
- the only event times the state keeps are those ref_r: one marker per rule,
  its latest matched event. Earlier events, and events that matched no rule
  (an ``identify``), leave no time behind.

A window rule (`LeadState.windows`) keeps its in-window events themselves;
its line also starts at its latest kept event (`since`), where it is exact
like the others, and steps down at each window end after it.

From `LeadState.clock` on, `Curve.total` is `engine.engagement` itself (the
same terms summed in the same order, so the same floats). Between the last
scoring event and the clock (a later non-scoring event, or a decay-driven
recycle) `engagement` reads the clock's value, while the curve shows the
exact decayed value at each time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from leadpulse.scoring.engine import terms
from leadpulse.scoring.epoch import Instant, as_epoch
from leadpulse.scoring.model import ScoringModel
from leadpulse.scoring.recycle import Term, WindowTerm, total
from leadpulse.scoring.state import LeadState

SAMPLES: Final = 240
"""Evenly spaced sample times across the window, and as many again across each line's
own span (from its first point to `at`), besides the event times and `at`."""

Point = tuple[float, float]
"""(epoch seconds, points)."""


@dataclass(frozen=True, slots=True)
class RuleCurve:
    """One rule's contribution from its latest matched event (`since`) to `at`.

    `half_life` is `math.inf` for a rule without decay."""

    rule: str
    half_life: float
    cap: float | None
    since: float
    """The rule's latest matched event time (its stored ref): the first point."""
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Curve:
    """Engagement of one lead on [`start`, `at`]: what a chart can show exactly.

    `start` is the earliest event time the state keeps (the oldest of the
    rules' latest events), `at` if it keeps none. `exact_from` is where the
    total becomes known (the lead's last scoring event), None without any
    scoring rule state; `total` runs from there to `at`. `rules` are in model
    order, only rules the model has and the lead has state for.
    """

    start: float
    at: float
    exact_from: float | None
    total: tuple[Point, ...]
    rules: tuple[RuleCurve, ...]

    @property
    def markers(self) -> tuple[tuple[str, float], ...]:
        """(rule, time of its latest matched event): every event time the state keeps."""
        return tuple((rule.rule, rule.since) for rule in self.rules)


def sample_times(start: float, end: float, marks: tuple[float, ...], count: int) -> list[float]:
    """`count` + 1 evenly spaced times on [start, end], every mark in it, sorted, distinct."""
    times = {start, end, *(mark for mark in marks if start <= mark <= end)}
    if end > start:
        step = (end - start) / count
        times.update(start + index * step for index in range(1, count))
    return sorted(times)


def curve(state: LeadState, at: Instant, model: ScoringModel, samples: int = SAMPLES) -> Curve:
    """Sample the lead's exact engagement from the first kept event time to `at`.

    `at` before the lead's clock reads as the clock, as in `engine.engagement`
    and `explain.explain`. Every rule's line starts exactly at its latest event
    and the total exactly at the last scoring event, so each begins at its true
    value there, not somewhere in between two samples; each line has at least
    `samples` + 1 points, however late it starts.
    """
    if samples < 1:
        raise ValueError(f"samples must be at least 1, got {samples}")
    moment = max(as_epoch(at), state.clock)
    found = terms(state, model)
    names = [
        rule.name
        for rule in model.engagement_rules
        if rule.window is None and rule.name in state.rules
    ] + [
        rule.name
        for rule in model.engagement_rules
        if rule.window is not None and state.windows.get(rule.name)
    ]
    refs = tuple(_latest(term) for term in found)
    start = min(refs, default=moment)
    marks = (*refs, *_window_ends(found, start, moment))
    times = sample_times(start, moment, marks, samples)
    rules = tuple(
        _rule_curve(name, ref, term, _from(ref, moment, times, samples))
        for name, ref, term in zip(names, refs, found, strict=True)
    )
    if not found:
        return Curve(start=start, at=moment, exact_from=None, total=(), rules=rules)
    exact_from = max(refs)
    line = tuple((t, max(0.0, total(found, t))) for t in _from(exact_from, moment, times, samples))
    return Curve(start=start, at=moment, exact_from=exact_from, total=line, rules=rules)


def _from(since: float, end: float, window: list[float], samples: int) -> list[float]:
    """The window's times from `since` on, plus `samples` of its own: a late line is dense too."""
    own = sample_times(since, end, (), samples)
    return sorted({*own, *(t for t in window if t >= since)})


def _latest(term: Term | WindowTerm) -> float:
    """The rule's latest matched event time the state keeps."""
    return term.events[-1][0] if isinstance(term, WindowTerm) else term.state.ref


def _window_ends(found: list[Term | WindowTerm], start: float, end: float) -> list[float]:
    """Window ends on [start, end] and the moment before each: the steps are drawn sharp."""
    ends = [
        moment
        for term in found
        if isinstance(term, WindowTerm)
        for moment in term.ends_after(start)
        if moment <= end
    ]
    return [*ends, *(moment - 1e-3 for moment in ends)]


def _rule_curve(name: str, since: float, term: Term | WindowTerm, times: list[float]) -> RuleCurve:
    return RuleCurve(
        rule=name,
        half_life=term.half_life,
        cap=term.cap,
        since=since,
        points=tuple((t, term.at(t)) for t in times),
    )
