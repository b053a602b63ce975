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


WindowEvent = tuple[float, float]
"""(event time, points) of one matched event a window rule keeps."""
Window = tuple[WindowEvent, ...]
"""A window rule's kept events: sorted by time, one entry per instant."""


def in_window(time: float, at: float, window: float) -> bool:
    """Whether an event at `time` counts at `at`: ``at - window < time <= at``.

    Computed as ``at < time + window`` so that `expires_at` is exactly the first
    moment the event no longer counts.
    """
    return time <= at < time + window


def expires_at(time: float, window: float) -> float:
    """The first moment an event at `time` is out of the window: its window end."""
    return time + window


def window_sum(events: Window, at: float, half_life: float, window: float) -> RuleState | None:
    """The events counting at `at`, folded with `add` in time order; None if there are none.

    `events` is sorted by time, so the ones in the window are one slice of it.
    """
    state: RuleState | None = None
    for time, points in events:
        if time > at:
            break
        if at < time + window:
            state = add(state, points, time, half_life)
    return state


def window_contribution(
    events: Window, at: float, half_life: float, window: float, cap: float | None
) -> float:
    """A window rule's contribution at `at`: its in-window events, decayed, capped."""
    state = window_sum(events, at, half_life, window)
    if state is None:
        return 0.0
    return contribution(state, at, half_life, cap)


def window_prune(events: Window, clock: float, window: float) -> Window:
    """Drop the events that are out of the window at `clock` (and so at any later time)."""
    for index, (time, _) in enumerate(events):
        if clock < time + window:
            return events[index:] if index else events
    return ()


def window_union(
    left: Window, right: Window, *, clock: float, window: float, limit: int
) -> tuple[Window, int]:
    """Both event lists as one: same instants summed, pruned at `clock`, the `limit` latest.

    Returns the events and how many in-window entries were dropped for room
    (the oldest). The result depends only on the two sets, not on their order.
    """
    merged: dict[float, float] = {}
    for time, points in (*left, *right):
        merged[time] = merged[time] + points if time in merged else points
    events = window_prune(tuple(sorted(merged.items())), clock, window)
    if len(events) <= limit:
        return events, 0
    return events[len(events) - limit :], len(events) - limit


def window_add(
    events: Window, points: float, at: float, *, clock: float, window: float, limit: int
) -> tuple[Window, int]:
    """Fold one event in (see `window_union`); `clock` is the lead's clock after it."""
    return window_union(events, ((at, points),), clock=clock, window=window, limit=limit)
