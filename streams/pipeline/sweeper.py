"""The decay sweeper: finds leads that decay alone took below the recycle threshold.

Upward crossings happen at events; downward ones happen with time, so a
timer asks the due index for the leads whose next possible crossing has
passed: the cost is proportional to the due leads, not to all leads.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from leadpulse.scoring import ScoringModel, evaluate
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.pipeline.outbox import make_commit
from leadpulse.streams.pipeline.plan import Plan
from leadpulse.streams.pipeline.states import load_state
from leadpulse.streams.store import LeadStore, Snapshot

log = logging.getLogger(__name__)


class Sweeper:
    """Finds due leads and decides, at a given time, the recycles decay brought them.

    It reads the store and decides; the processor commits and publishes.
    """

    def __init__(self, store: LeadStore, model: ScoringModel, *, limit: int = 1000) -> None:
        self.store = store
        self.model = model
        self.limit = limit

    async def plan(self, at: float, shards: Collection[int]) -> tuple[int, Plan]:
        """(how many leads of `shards` were due by `at`, what sweeping them decides)."""
        due = await self.store.due(at, self.limit, shards)
        if not due:
            return 0, Plan()
        snaps = await self.store.snapshot(dict.fromkeys(due, ()))
        return len(due), self.decide(snaps, due, at)

    def decide(self, snaps: Mapping[str, Snapshot], due: Mapping[str, float], at: float) -> Plan:
        """Evaluate each due lead at `at`; leads gone or unreadable leave the due index."""
        plan = Plan()
        for snap in snaps.values():
            if snap.state is None:  # expired (an anonymous visitor's TTL) or merged away
                plan.due[snap.subject] = None
                continue
            try:
                state = load_state(snap, known=False)
            except CorruptStateError as error:
                # its events are dead-lettered as they come; the sweep must not spin on it
                log.warning("not sweeping %s: %s", snap.subject, error.reason)
                plan.due[snap.subject] = None
                continue
            # the index entry is the crossing an earlier commit computed: a hint
            state, caused = evaluate(state, at, self.model, hint=due[snap.subject])
            plan.add(make_commit(snap, state, (), caused, decided=plan.decided, model=self.model))
            # a lost race means another worker or the lead's own partition updated it; what an
            # earlier publish left in a winner's outbox goes out with what this sweep decided
            plan.carried[snap.subject] = snap.outbox
        return plan
