"""Redis is the source of truth for how far each partition was processed.

After a batch's states are committed and its messages published, the next
offset of each of its partitions is recorded in the store. Kafka's committed
offsets lag behind (Faust commits every few seconds), and Redis with AOF
``everysec`` can lose its last second on a crash; so a worker resumes every
partition it is assigned from what the store recorded, and a worker that
finds the store's record behind what it wrote itself knows the store lost
data: it must read those events again, which it does by restarting (see
`RollbackError`). The check runs before every attempt of a batch, so newer
events are never applied on top of a state that lost older ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Mapping

from leadpulse.streams.errors import FatalError
from leadpulse.streams.store import LeadStore
from leadpulse.streams.store.models import FencedError

log = logging.getLogger("leadpulse")


class RollbackError(FatalError):
    """The store's recorded progress went backwards: it lost committed updates."""

    def __init__(self, lost: Mapping[int, tuple[int, int]]) -> None:
        self.lost = dict(lost)
        detail = ", ".join(
            f"partition {p}: recorded {ours}, store has {theirs}"
            for p, (ours, theirs) in sorted(self.lost.items())
        )
        super().__init__(f"the store lost processed progress ({detail})")


class NamespaceSwitchedError(FatalError):
    """`leadpulse model apply` is switching the workers to another namespace.

    The worker stops taking batches and exits for its supervisor to start it
    again: the new process scores in the namespace the apply switched to,
    from the offsets the switch recorded (docs/architecture.md#model-apply).
    """

    def __init__(self, to: str) -> None:
        self.to = to
        super().__init__(f"leadpulse model apply is switching the workers to namespace {to}")


class Progress:
    """Records processed offsets in the store and notices when the store loses them."""

    def __init__(self, store: LeadStore, topic: str) -> None:
        self.store = store
        self.topic = topic
        self.recorded: dict[int, int] = {}
        """What this worker recorded per partition since it was assigned it."""

    async def resume_points(self, partitions: Collection[int]) -> dict[int, int]:
        """The recorded next offsets of `partitions` (those the store knows)."""
        known = await self.store.progress(self.topic)
        return {p: known[p] for p in partitions if p in known}

    async def check(self, partitions: Collection[int]) -> None:
        """Before a batch touches the store: raise `RollbackError` if it went back.

        Checked at the start of every attempt of a batch, so a store that
        restarted with less than this worker recorded is noticed before any
        newer event is applied on top of the older state. A namespace that
        `leadpulse model apply` fences raises `NamespaceSwitchedError`: no new
        batch is scored in it.
        """
        # what was recorded before the read: a batch of this worker may record more
        # while the read is in flight (the sweeper checks beside the agent)
        expected = {p: self.recorded[p] for p in partitions if p in self.recorded}
        if not expected:
            fence = await self.store.fence(self.topic)
            if fence is not None:
                raise NamespaceSwitchedError(fence.to)
            return
        # one round trip's wait for both
        fence, stored = await asyncio.gather(
            self.store.fence(self.topic), self.store.progress(self.topic)
        )
        if fence is not None:
            raise NamespaceSwitchedError(fence.to)
        lost = {
            p: (ours, stored.get(p, -1)) for p, ours in expected.items() if stored.get(p, -1) < ours
        }
        if lost:
            raise RollbackError(lost)

    async def record(self, offsets: Mapping[int, int]) -> None:
        """Record a finished batch: its partitions' next offsets."""
        if offsets:
            try:
                await self.store.record_progress(self.topic, offsets)
            except FencedError:
                fence = await self.store.fence(self.topic)
                raise NamespaceSwitchedError("?" if fence is None else fence.to) from None
            self.recorded.update(offsets)

    def revoked(self, partitions: Collection[int]) -> None:
        for partition in partitions:
            self.recorded.pop(partition, None)
