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

Tansu reports a partition's high watermark low (the first offset of its last
batch + 1), so there a partition counts as caught up up to one producer
batch early.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Highwater = Callable[[int], int | None]
"""A partition's high watermark as the consumer last saw it (None: not known yet)."""


@dataclass
class Watermarks:
    """One worker's view of its assigned partitions' progress in event time."""

    highwater: Highwater
    positions: dict[int, int | None] = field(default_factory=dict)
    """Next offset to process per assigned partition (None: not known yet)."""
    event_times: dict[int, float] = field(default_factory=dict)
    """Latest event time processed per assigned partition (epoch seconds)."""

    def assigned(self, partitions: Mapping[int, int | None]) -> None:
        """Partitions this worker now owns, with the offset each resumes from."""
        for partition in list(self.positions):
            if partition not in partitions:
                self.positions.pop(partition, None)
                self.event_times.pop(partition, None)
        for partition, offset in partitions.items():
            if offset is not None or partition not in self.positions:
                self.positions[partition] = offset

    def processed(self, offsets: Mapping[int, int], event_times: Mapping[int, float]) -> None:
        """A batch is done: its partitions' next offsets and latest event times."""
        for partition, offset in offsets.items():
            known = self.positions.get(partition)
            self.positions[partition] = offset if known is None else max(known, offset)
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


def sweep_bound(now: float, local: Mapping[int, float], shared: Mapping[int, float]) -> float:
    """The time a sweep may evaluate leads at: the lowest watermark of every partition.

    `shared` holds what all workers published (this one's may be stale), so
    this worker's fresh values replace its own partitions' entries.
    """
    marks = {**shared, **local}
    return min([now, *marks.values()])
