"""When does decay alone take engagement below a threshold?

Positive contributions only shrink with time and negative ones only shrink
toward zero, so the sum is not monotone. On an interval [a, b] it is bounded
below by P(b) + N(a) (positives at their smallest, negatives at their most
negative); a branch-and-bound on that bound finds the first crossing without
sampling blindly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from leadpulse.scoring.decay import RuleState, contribution

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


def total(terms: Sequence[Term], moment: float) -> float:
    """The uncapped-at-zero sum; one function so the search and engagement agree."""
    return sum((term.at(moment) for term in terms), 0.0)


def lower_bound(terms: Sequence[Term], start: float, end: float) -> float:
    """A floor for `total` on [start, end], valid for times at or after every ref."""
    bound = 0.0
    for term in terms:
        bound += term.at(end) if term.state.value > 0 else term.at(start)
    return bound


def horizon(terms: Sequence[Term], start: float) -> float:
    return start + HORIZON_HALF_LIVES * max((term.half_life for term in terms), default=0.0)


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
