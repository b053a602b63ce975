"""Event-time watermarks: how far in time the sweeper may evaluate leads.

A partition that is caught up (its processed position reached the broker's
high watermark) has watermark = now. One that lags has watermark = the
latest event time it has processed: its backlog may still hold events that
occurred before a crossing the wall clock would already see. Workers share
their partitions' watermarks through the store, and a sweep evaluates due
leads at the lowest watermark of all partitions, so a lead that also gets
events through aliases from other partitions is never evaluated past any of
them. A backlog after an outage therefore yields the same transitions as a
run without lag.

A watermark must not freeze the world, though: a partition that is stalled
(lagging and not moving), owned by a dead worker, or no longer exists would
hold every worker's sweeps back forever. Each shared watermark therefore
carries the wall-clock time it was last live (its partition caught up, or its
position moved); one not live for `stale_after` is left out of the minimum and
reported. Leads of that partition may then be swept past events it has not
processed yet: the price of recycling going on everywhere else.

Tansu reports a partition's high watermark low (the first offset of its last
batch + 1), so there a partition counts as caught up up to one producer
batch early.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from leadpulse.streams.store import Watermark

Highwater = Callable[[int], int | None]
"""A partition's high watermark as the consumer last saw it (None: not known yet)."""


@dataclass
class Watermarks:
    """One worker's view of its assigned partitions' progress in event time."""

    highwater: Highwater
    clock: Callable[[], float] = time.time
    positions: dict[int, int | None] = field(default_factory=dict)
    """Next offset to process per assigned partition (None: not known yet)."""
    event_times: dict[int, float] = field(default_factory=dict)
    """Latest event time processed per assigned partition (epoch seconds)."""
    moved_at: dict[int, float] = field(default_factory=dict)
    """Wall-clock time each assigned partition was assigned or its position last moved."""

    def assigned(self, partitions: Mapping[int, int | None]) -> None:
        """Partitions this worker now owns, with the offset each resumes from."""
        for partition in list(self.positions):
            if partition not in partitions:
                self.positions.pop(partition, None)
                self.event_times.pop(partition, None)
                self.moved_at.pop(partition, None)
        now = self.clock()
        for partition, offset in partitions.items():
            if offset is not None or partition not in self.positions:
                self.positions[partition] = offset
            self.moved_at.setdefault(partition, now)

    def processed(self, offsets: Mapping[int, int], event_times: Mapping[int, float]) -> None:
        """A batch is done: its partitions' next offsets and latest event times."""
        now = self.clock()
        for partition, offset in offsets.items():
            known = self.positions.get(partition)
            if known is None or offset > known:
                self.positions[partition] = offset
                self.moved_at[partition] = now
        for partition, at in event_times.items():
            self.event_times[partition] = max(self.event_times.get(partition, at), at)

    def caught_up(self, partition: int) -> bool:
        high = self.highwater(partition)
        if high is None:
            return False
        position = self.positions.get(partition)
        return high == 0 if position is None else position >= high

    def local(self, now: float) -> dict[int, float]:
        """The watermark of each assigned partition at wall-clock `now`.

        A lagging partition that has processed nothing yet has no event time
        to offer: it holds sweeps back (watermark 0) until its first batch.
        """
        return {
            partition: now
            if self.caught_up(partition)
            else min(now, self.event_times.get(partition, 0.0))
            for partition in self.positions
        }

    def shared(self, now: float) -> dict[int, Watermark]:
        """What this worker publishes: each assigned partition's watermark and live time.

        Caught up is live now; a lagging partition was live when it last moved.
        """
        return {
            partition: Watermark(at, now if at >= now else self.moved_at.get(partition, now))
            for partition, at in self.local(now).items()
        }


@dataclass(frozen=True)
class SweepBound:
    """The time a sweep may evaluate leads at, and the partitions left out of it."""

    at: float
    stale: tuple[int, ...] = ()
    """Partitions whose watermark was not live for `stale_after` (or that no longer exist)."""


def sweep_bound(
    now: float,
    local: Mapping[int, Watermark],
    shared: Mapping[int, Watermark],
    *,
    stale_after: float,
    partitions: int | None = None,
) -> SweepBound:
    """The lowest watermark of every live partition, at most `now`.

    `shared` holds what all workers published (this one's may be stale), so
    this worker's fresh values replace its own partitions' entries. A mark
    without a live time (an older release wrote it) counts as live.
    """
    marks = {**shared, **local}
    stale = tuple(
        sorted(
            p
            for p, mark in marks.items()
            if (partitions is not None and p >= partitions)
            or (mark.live_at is not None and now - mark.live_at > stale_after)
        )
    )
    return SweepBound(min([now, *(mark.at for p, mark in marks.items() if p not in stale)]), stale)
