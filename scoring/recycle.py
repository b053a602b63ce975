"""When does decay alone take engagement below a threshold?

Positive contributions only shrink with time and negative ones only shrink
toward zero, so the sum is not monotone. On an interval [a, b] it is bounded
below by P(b) + N(a) (positives at their smallest, negatives at their most
negative); a branch-and-bound on that bound finds the first crossing without
sampling blindly.

A window rule (`WindowTerm`) also drops in steps: each of its events stops
counting at its window end. Between two window ends nothing enters or leaves,
so each window rule is a plain decaying `Term` there (`WindowTerm.frozen`);
`first_below_stepped` searches those segments in turn, and a segment that
starts below the threshold reports its start: the window end, exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final, NamedTuple

from leadpulse.scoring.decay import (
    RuleState,
    Window,
    contribution,
    expires_at,
    window_contribution,
    window_sum,
)

TOLERANCE: Final = 0.5
"""Seconds: crossings are reported at most this late."""

HORIZON_HALF_LIVES: Final = 64
"""After 64 half-lives every value is below 6e-20 of itself."""


class Term(NamedTuple):
    """One rule's stored pair with the decay parameters needed to read it."""

    state: RuleState
    half_life: float
    cap: float | None

    def at(self, moment: float) -> float:
        return contribution(self.state, moment, self.half_life, self.cap)


class WindowTerm(NamedTuple):
    """One window rule's kept events with the parameters needed to read them."""

    events: Window
    half_life: float
    window: float
    cap: float | None

    def at(self, moment: float) -> float:
        return window_contribution(self.events, moment, self.half_life, self.window, self.cap)

    def frozen(self, moment: float) -> Term | None:
        """The rule as a plain `Term`, exact from `moment` until its next window end.

        None when no event counts at `moment` (it adds nothing until an event comes).
        """
        state = window_sum(self.events, moment, self.half_life, self.window)
        return None if state is None else Term(state, self.half_life, self.cap)

    def ends_after(self, moment: float) -> list[float]:
        """The window ends later than `moment`, ascending: where the rule steps down."""
        return [end for time, _ in self.events if (end := expires_at(time, self.window)) > moment]

    def floor(self, start: float, end: float) -> float:
        """A floor for `at` on [start, end], for `start` at or after every event.

        Positive events at their smallest (0 if they leave by `end`), negative
        ones at their most negative (at `start`); the cap is monotone, so it
        applies to the sums.
        """
        low = 0.0
        for time, points in self.events:
            if not start < expires_at(time, self.window):
                continue
            if points > 0:
                if end < expires_at(time, self.window):
                    low += contribution(RuleState(points, time), end, self.half_life, None)
            else:
                low += contribution(RuleState(points, time), start, self.half_life, None)
        if self.cap is None:
            return low
        return min(self.cap, max(-self.cap, low))


def total(terms: Sequence[Term | WindowTerm], moment: float) -> float:
    """The uncapped-at-zero sum; one function so the search and engagement agree."""
    return sum((term.at(moment) for term in terms), 0.0)


def lower_bound(terms: Sequence[Term | WindowTerm], start: float, end: float) -> float:
    """A floor for `total` on [start, end], valid for times at or after every ref."""
    bound = 0.0
    for term in terms:
        if isinstance(term, WindowTerm):
            bound += term.floor(start, end)
        else:
            bound += term.at(end) if term.state.value > 0 else term.at(start)
    return bound


def longest_life(lives: Sequence[float]) -> float:
    """The longest finite half-life (0 if none): a rule without decay never crosses."""
    return max((life for life in lives if life < math.inf), default=0.0)


def horizon(terms: Sequence[Term | WindowTerm], start: float) -> float:
    """Where the search stops: 64 half-lives after the last window end (or `start`)."""
    ends = [end for term in terms if isinstance(term, WindowTerm) for end in term.ends_after(start)]
    last = max(ends, default=start)
    return last + HORIZON_HALF_LIVES * longest_life([term.half_life for term in terms])


def first_below_stepped(
    terms: Sequence[Term],
    windows: Sequence[WindowTerm],
    threshold: float,
    start: float,
    end: float,
) -> float | None:
    """`first_below` for `terms` plus window rules, from `start` to `end`.

    The segments between window ends are searched in order, each with the
    window rules frozen at its start; the total at a segment's start is the
    true total there (the events that left are out), so a step below the
    threshold is reported at the window end itself. `terms` come first, then
    the window rules, in the order `total` sums them.
    """
    ends = sorted({moment for term in windows for moment in term.ends_after(start)})
    bounds = [start, *(moment for moment in ends if moment <= end)]
    for index, low in enumerate(bounds):
        last = index + 1 == len(bounds)
        high = end if last else bounds[index + 1]
        frozen = [*terms, *(t for term in windows if (t := term.frozen(low)) is not None)]
        found = first_below(frozen, threshold, low, high)
        if found is not None and (found < high or last):
            return found
    return None


def first_below(terms: Sequence[Term], threshold: float, start: float, end: float) -> float | None:
    """Earliest t in [start, end] with total(t) < threshold, found to `TOLERANCE`.

    A dip narrower than the tolerance that shows at no probe is not reported.
    """
    if total(terms, start) < threshold:
        return start
    candidate: float | None = None
    stack = [(start, end)]  # invariant: total(a) >= threshold for every (a, b)
    while stack:
        a, b = stack.pop()
        if (candidate is not None and a >= candidate) or lower_bound(terms, a, b) >= threshold:
            continue
        if b - a <= TOLERANCE:
            if total(terms, b) < threshold:
                return b if candidate is None else min(b, candidate)
            continue
        middle = (a + b) / 2
        if total(terms, middle) < threshold:
            candidate = middle if candidate is None else min(candidate, middle)
            stack.append((a, middle))
        else:
            stack.append((middle, b))
            stack.append((a, middle))
    return candidate
