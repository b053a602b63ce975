"""Speed-tuned twins of the plain definitions in `decay` and `recycle`.

The engine runs these on every event and every sweep; each one computes the
same floats as its plain twin, to the bit (tests/unit/test_fastpath.py checks
them against each other), so the plain modules stay the specification:

- `parts`, `total`: `decay.contribution` per rule and `recycle.total`;
- `contributions`: `decay.contribution`, capped and not, by rule name;
- `lower_bound`: `recycle.lower_bound`;
- `first_below`: `recycle.first_below`, with a faster path when every value
  is positive (engagement then only falls).

A lead's rules are read into flat `Row` tuples once per call, using the
model's precomputed `decay_specs`, so the loops do no attribute lookups.

Window rules (a model's `window_specs`, usually none) are read as
`recycle.WindowTerm`s with the plain functions themselves: a model without
window rules runs exactly the code it ran before they existed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from leadpulse.scoring.decay import RuleState, Window
from leadpulse.scoring.model import DecaySpec, WindowSpec
from leadpulse.scoring.recycle import (
    HORIZON_HALF_LIVES,
    TOLERANCE,
    Term,
    WindowTerm,
    longest_life,
)
from leadpulse.scoring.recycle import first_below as reference_first_below

LN2: Final = math.log(2.0)
NEWTON_STEPS: Final = 40

Row = tuple[float, float, float, float | None]
"""One rule a lead has state for: value, ref, half-life, cap (a `recycle.Term`, flat)."""


def rows(rules: Mapping[str, RuleState], specs: Sequence[DecaySpec]) -> list[Row]:
    """The rules a lead has state for, in model order (a fixed summation order)."""
    found = []
    for name, life, cap in specs:
        pair = rules.get(name)
        if pair is not None:
            found.append((pair[0], pair[1], life, cap))
    return found


def window_terms(windows: Mapping[str, Window], specs: Sequence[WindowSpec]) -> list[WindowTerm]:
    """The window rules a lead has events for, in model order."""
    found = []
    for name, life, window, cap in specs:
        events = windows.get(name)
        if events:
            found.append(WindowTerm(events, life, window, cap))
    return found


def total_with(rows: Sequence[Row], windows: Sequence[WindowTerm], moment: float) -> float:
    """`recycle.total` of the rows then the window rules, in that order, to the bit."""
    if not windows:
        return total(rows, moment)
    return sum([*parts(rows, moment), *(term.at(moment) for term in windows)], 0.0)


def window_contributions(
    windows: Mapping[str, Window], moment: float, specs: Sequence[WindowSpec]
) -> list[tuple[str, float, float]]:
    """(rule, capped, uncapped) per window rule with events, as `contributions`."""
    result = []
    for name, life, window, cap in specs:
        events = windows.get(name)
        if events:
            term = WindowTerm(events, life, window, None)
            raw = term.at(moment)
            result.append((name, raw if cap is None else min(cap, max(-cap, raw)), raw))
    return result


def parts(rows: Sequence[Row], moment: float) -> list[float]:
    """Each row's contribution at `moment`, computed exactly as `decay.contribution`."""
    out = []
    for value, ref, life, cap in rows:
        elapsed = moment - ref
        x = value if elapsed == 0 or value == 0 else value * math.exp2(-elapsed / life)
        if cap is not None:
            x = min(cap, max(-cap, x))
        out.append(x)
    return out


def total(rows: Sequence[Row], moment: float) -> float:
    """`recycle.total`, to the bit: the same parts summed by the same `sum`."""
    return sum(parts(rows, moment), 0.0)


def _plain(xs: Sequence[float]) -> float:
    """A running sum, as `recycle.lower_bound` adds."""
    bound = 0.0
    for x in xs:
        bound += x
    return bound


def lower_bound(rows: Sequence[Row], start: float, end: float) -> float:
    """`recycle.lower_bound`, to the bit: positives read at `end`, the rest at `start`."""
    bound = 0.0
    for value, ref, life, cap in rows:
        elapsed = (end if value > 0 else start) - ref
        x = value if elapsed == 0 or value == 0 else value * math.exp2(-elapsed / life)
        if cap is not None:
            x = min(cap, max(-cap, x))
        bound += x
    return bound


def contributions(
    rules: Mapping[str, RuleState], moment: float, specs: Sequence[DecaySpec]
) -> list[tuple[str, float, float]]:
    """(rule, capped, uncapped) per rule with state: `decay.contribution` both ways."""
    result = []
    for name, life, cap in specs:
        pair = rules.get(name)
        if pair is not None:
            value, ref = pair
            elapsed = moment - ref
            raw = value if elapsed == 0 or value == 0 else value * math.exp2(-elapsed / life)
            result.append((name, raw if cap is None else min(cap, max(-cap, raw)), raw))
    return result


def first_dip(
    rows: list[Row],
    threshold: float,
    start: float,
    until: float | None,
    hint: float | None = None,
    *,
    windows: Sequence[WindowTerm] = (),
) -> float | None:
    """`recycle.first_below` from `start` to the horizon, or None if not by `until`.

    With `windows`: `recycle.first_below_stepped` (window ends exactly), the
    horizon counted from the last window end.
    """
    if windows:
        return _first_dip_stepped(
            rows, windows, threshold=threshold, start=start, until=until, hint=hint
        )
    if until is not None and lower_bound(rows, start, until) >= threshold:
        return None  # cheap common case: no dip possible before the next event
    end = start + HORIZON_HALF_LIVES * longest_life([life for _, _, life, _ in rows])
    dip = first_below(rows, threshold, start, end, hint)
    if dip is None or (until is not None and dip > until):
        return None
    return dip


def _first_dip_stepped(
    rows: list[Row],
    windows: Sequence[WindowTerm],
    *,
    threshold: float,
    start: float,
    until: float | None,
    hint: float | None,
) -> float | None:
    """`recycle.first_below_stepped`, each segment searched by the fast `first_below`.

    Same result, to the bit. When every value and every kept event's points
    are positive, engagement never rises (decay and window ends only take
    away), so the segment holding the first crossing is found by bisecting the
    window ends instead of searching every segment: the segments before it
    never fall below (the plain scan's `first_below` finds nothing there), and
    the plain scan's answer is this segment's crossing, or its end.
    """
    if until is not None:
        floor = lower_bound(rows, start, until) + sum(
            (term.floor(start, until) for term in windows), 0.0
        )
        if floor >= threshold:
            return None
    ends = sorted({moment for term in windows for moment in term.ends_after(start)})
    lives = [life for _, _, life, _ in rows] + [term.half_life for term in windows]
    end = max(ends, default=start) + HORIZON_HALF_LIVES * longest_life(lives)
    bounds = [start, *(moment for moment in ends if moment <= end)]
    if all(value > 0 for value, _, _, _ in rows) and all(
        points > 0 for term in windows for _, points in term.events
    ):
        found = _monotone_stepped(rows, windows, bounds, threshold=threshold, end=end, hint=hint)
        return None if found is None or (until is not None and found > until) else found
    for index, low in enumerate(bounds):
        if until is not None and low > until:
            return None
        last = index + 1 == len(bounds)
        high = end if last else bounds[index + 1]
        found = first_below(_frozen(rows, windows, low), threshold, low, high, hint)
        if found is not None and (found < high or last):
            return None if until is not None and found > until else found
    return None


def _frozen(rows: list[Row], windows: Sequence[WindowTerm], moment: float) -> list[Row]:
    """The rows, then each window rule as a row exact from `moment` to its next window end."""
    frozen = list(rows)
    for term in windows:
        part = term.frozen(moment)
        if part is not None:
            frozen.append((part.state.value, part.state.ref, part.half_life, part.cap))
    return frozen


def _monotone_stepped(
    rows: list[Row],
    windows: Sequence[WindowTerm],
    bounds: list[float],
    *,
    threshold: float,
    end: float,
    hint: float | None,
) -> float | None:
    """The first crossing of a never-rising engagement: bisect the window ends, then search.

    `total_with` at a window end is the total the plain scan's segment search
    checks first there (the same parts summed in the same order).
    """
    if total_with(rows, windows, bounds[0]) < threshold:
        return bounds[0]
    above, below = 0, len(bounds)  # bounds[above] is not below; bounds[below] is (or past them)
    while below - above > 1:
        middle = (above + below) // 2
        if total_with(rows, windows, bounds[middle]) < threshold:
            below = middle
        else:
            above = middle
    low = bounds[above]
    last = above + 1 == len(bounds)
    high = end if last else bounds[above + 1]
    found = first_below(_frozen(rows, windows, low), threshold, low, high, hint)
    if found is not None and (found < high or last):
        return found
    return None if last else high


class _UnsureError(Exception):
    """The fast search cannot vouch for its answer: use the reference search."""


def first_below(
    rows: list[Row], threshold: float, start: float, end: float, hint: float | None = None
) -> float | None:
    """`recycle.first_below`, faster when every rule's value is positive.

    Same result, to the bit: for positive values engagement only falls, so
    the reference branch-and-bound walks a single path down its tree of
    midpoints; `_descend` walks the same path, computing the same midpoints,
    and skips evaluating engagement where its sign is already certain.
    """
    if rows and all(value > 0 for value, _, _, _ in rows):
        try:
            return _descend(rows, threshold, start, end, hint)
        except _UnsureError:
            pass
    found = [Term(RuleState(v, r), life, cap) for v, r, life, cap in rows]
    return reference_first_below(found, threshold, start, end)


def _descend(
    rows: list[Row], threshold: float, start: float, end: float, hint: float | None = None
) -> float | None:
    """The reference search's path for positive, hence non-increasing, engagement.

    `parts(t)` are the terms' contributions exactly as `Term.at` computes
    them; `sum(parts, 0.0)` is `recycle.total`, the plain running sum is
    `recycle.lower_bound` (which reads positive terms at the interval's end).
    A bracket [lo, hi] found by Newton steps tells the side of the threshold
    without evaluating: anything at or before `lo` is above it, at or after
    `hi` below, with a margin far beyond rounding error. Between them every
    midpoint is evaluated exactly as the reference does; if the two sums ever
    disagree the answer is left to the reference.
    """
    first = parts(rows, start)
    if sum(first, 0.0) < threshold:
        return start
    if _plain(parts(rows, end)) >= threshold:
        return None  # the root is pruned: no dip before the horizon
    lo, hi = _bracket(
        rows, threshold=threshold, start=start, end=end, level=_plain(first), hint=hint
    )
    a, b = start, end
    b_below = False  # known: the reference's total(b) < threshold
    while True:
        if b - a <= TOLERANCE:
            if b_below or total(rows, b) < threshold:
                return b
            raise _UnsureError
        middle = (a + b) / 2
        if middle <= lo:
            below = False
        elif middle >= hi:
            below = True
        else:
            xs = parts(rows, middle)
            below = sum(xs, 0.0) < threshold
            if below != (_plain(xs) < threshold):
                raise _UnsureError
        if below:
            b, b_below = middle, True
        else:
            a = middle


def _bracket(
    rows: list[Row],
    *,
    threshold: float,
    start: float,
    end: float,
    level: float,
    hint: float | None = None,
) -> tuple[float, float]:
    """(lo, hi): engagement is certainly >= threshold up to lo, < threshold from hi.

    Only speed depends on how tight it is, never the answer: every point is
    classified with the exact sum and a margin `delta`, thousands of times
    the rounding error of the sums (a few ulps per term, growing with the
    number of half-lives the horizon spans); what is too close to call is
    left unclassified. Newton's method on log(engagement) from the left finds
    the crossing (between cap kinks the log of a sum of exponentials is
    convex, so steps land before it; steps stop at kinks); if a step lands
    past it, a safeguarded secant narrows the bracket; last, probes either
    side of the estimate. `level` is the running sum at `start`. A `hint`
    (an earlier answer for these terms) is tried first: when the points just
    before and at it classify as above and below, that is the bracket.
    """
    total_value = sum(value for value, _, _, _ in rows)
    lives = (end - min(ref for _, ref, _, _ in rows)) / min(life for _, _, life, _ in rows)
    search = _Search(
        level_at=lambda moment: _plain(parts(rows, moment)),
        threshold=threshold,
        delta=1e-12 * total_value * (1.0 + lives + len(rows)),
    )
    if hint is not None and start < hint - TOLERANCE and hint < end:
        after = search.classify(hint)
        before = search.classify(hint - TOLERANCE)
        if after is not None and before is not None and after < threshold <= before:
            return search.lo, search.hi
    target = math.log(threshold)
    moment = start
    slope, kink = _slope(rows, start)
    for _ in range(NEWTON_STEPS):
        if not search.record(moment, level) or level < threshold:
            break
        if slope > 0:
            following = min(moment + (math.log(level) - target) * level / slope, kink)
        elif kink < math.inf:
            following = kink
        else:
            break
        if not moment < following < end:
            break
        converged = following - moment < TOLERANCE / 16
        moment = following
        level, slope, kink = _probe(rows, moment)
        if converged:
            search.record(moment, level)
            break
    for _ in range(NEWTON_STEPS):
        if not (search.bounded and search.hi - search.lo > TOLERANCE / 4):
            break
        lo, hi = search.lo, search.hi
        low, high = math.log(search.lo_level), math.log(search.hi_level)
        guess = lo + (hi - lo) * (low - target) / (low - high)
        moment = min(max(guess, lo + (hi - lo) / 16), hi - (hi - lo) / 16)
        if search.classify(moment) is None:
            break
    search.probe(moment, -1, floor=start)
    search.probe(moment, +1, ceiling=end)
    return search.lo, search.hi


def _probe(rows: list[Row], moment: float) -> tuple[float, float, float]:
    """The running sum at `moment` (as `_plain(parts(...))`), and `_slope` there."""
    level = 0.0
    slope = 0.0
    kink = math.inf
    for value, ref, life, cap in rows:
        elapsed = moment - ref
        raw = value if elapsed == 0 or value == 0 else value * math.exp2(-elapsed / life)
        if cap is None:
            level += raw
            slope += LN2 / life * raw
            continue
        x = min(cap, max(-cap, raw))
        level += x
        if raw <= cap * (1 + 1e-9):
            slope += LN2 / life * x
        else:
            kink = min(kink, ref + life * math.log2(value / cap))
    return level, slope, kink


def _slope(rows: list[Row], moment: float) -> tuple[float, float]:
    """-d/dt engagement at `moment`, and the next time a capped term starts to fall.

    A term still at its cap (or within a hair of it) counts in the slope,
    which only shortens a Newton step, never lets it pass the crossing.
    """
    _, slope, kink = _probe(rows, moment)
    return slope, kink


class _Search:
    """Points classified so far: the latest certainly above, the earliest certainly below."""

    __slots__ = ("delta", "hi", "hi_level", "level_at", "lo", "lo_level", "threshold")

    def __init__(
        self, *, level_at: Callable[[float], float], threshold: float, delta: float
    ) -> None:
        self.level_at = level_at
        self.threshold = threshold
        self.delta = delta
        self.lo, self.hi = -math.inf, math.inf
        self.lo_level = self.hi_level = threshold

    @property
    def bounded(self) -> bool:
        return -math.inf < self.lo and self.hi < math.inf

    def classify(self, moment: float) -> float | None:
        """The level at `moment`, recorded if certain; None when too close to call."""
        level = self.level_at(moment)
        return level if self.record(moment, level) else None

    def record(self, moment: float, level: float) -> bool:
        """Note a point whose side is certain; False when too close to call."""
        if level >= self.threshold + self.delta:
            if moment > self.lo:
                self.lo, self.lo_level = moment, level
            return True
        if level <= self.threshold - self.delta:
            if moment < self.hi:
                self.hi, self.hi_level = moment, level
            return True
        return False

    def probe(
        self, moment: float, direction: int, *, floor: float = -math.inf, ceiling: float = math.inf
    ) -> None:
        """Look for a certain point a little before (-1) or after (+1) `moment`."""
        step = TOLERANCE / 8
        for _ in range(NEWTON_STEPS):
            if self.hi - self.lo <= TOLERANCE / 2:
                return
            probe = moment + direction * step
            if not max(self.lo, floor) < probe < min(self.hi, ceiling):
                return
            level = self.classify(probe)
            if level is not None and (level < self.threshold) == (direction > 0):
                return
            step *= 4
