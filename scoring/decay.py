"""Exponential decay, stored lazily: one (value, ref) pair per rule.

Because ``2^(-a/h) * 2^(-b/h) == 2^(-(a+b)/h)``, moving every event to a common
reference time and summing gives the same number whatever the arrival order,
so replays, late events and anonymous-to-known merges all agree.
"""

from __future__ import annotations

import math
from typing import NamedTuple


class RuleState(NamedTuple):
    """A rule's summed, uncapped contribution as of time `ref` (epoch seconds).

    A pair, so it serialises as ``[value, ref]``: state is stored per lead in
    Redis and should stay small.
    """

    value: float
    ref: float


def decayed(value: float, elapsed: float, half_life: float) -> float:
    """`value` after `elapsed` seconds; elapsed < 0 grows it (reading the past)."""
    if elapsed == 0 or value == 0:
        return value
    return value * math.exp2(-elapsed / half_life)


def add(state: RuleState | None, points: float, at: float, half_life: float) -> RuleState:
    """Fold one event in; the reference only moves forward, so no value ever grows."""
    if state is None:
        return RuleState(points, at)
    ref = max(state.ref, at)
    value = decayed(state.value, ref - state.ref, half_life) + decayed(points, ref - at, half_life)
    return RuleState(value, ref)


def combine(left: RuleState, right: RuleState, half_life: float) -> RuleState:
    """Two partial sums of one rule, exactly as if one lead had seen all events."""
    return add(left, right.value, right.ref, half_life)


def contribution(state: RuleState, at: float, half_life: float, cap: float | None) -> float:
    """What the rule adds to engagement at `at`; the cap applies on read only."""
    value = decayed(state.value, at - state.ref, half_life)
    if cap is None:
        return value
    return min(cap, max(-cap, value))
