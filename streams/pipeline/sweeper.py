"""The decay sweeper: finds leads that decay alone took below the recycle threshold.

Upward crossings happen at events; downward ones happen with time, so a
timer asks the due index for the leads whose next possible crossing has
passed: the cost is proportional to the due leads, not to all leads.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from leadpulse.scoring import ScoringModel, evaluate
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.pipeline.outbox import Outbox, make_commit
from leadpulse.streams.pipeline.records import Decided, Report
from leadpulse.streams.store import Commit, LeadStore, decode_state

log = logging.getLogger(__name__)


class Sweeper:
    """Evaluates due leads at a given time and publishes the recycles it decides."""

    def __init__(
        self,
        store: LeadStore,
        outbox: Outbox,
        model: ScoringModel,
        *,
        limit: int = 1000,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.model = model
        self.limit = limit

    async def sweep(self, at: float, shards: Collection[int]) -> Report:
        """Recycle leads of `shards` that decay alone took below the threshold by `at`."""
        report = Report()
        due = await self.store.due(at, self.limit, shards)
        if not due:
            return report
        report.swept = len(due)
        snaps = await self.store.snapshot(dict.fromkeys(due, ()))
        commits: list[Commit] = []
        decided: Decided = {}
        gone: dict[str, float | None] = {}
        for snap in snaps.values():
            if snap.state is None:  # expired (an anonymous visitor's TTL) or merged away
                gone[snap.subject] = None
                continue
            try:
                state = decode_state(snap.state)
            except (CorruptStateError, ValueError) as error:
                # its events are dead-lettered as they come; the sweep must not spin on it
                log.warning(
                    "not sweeping %s: stored state cannot be decoded (%s)", snap.subject, error
                )
                gone[snap.subject] = None
                continue
            # the index entry is the crossing an earlier commit computed: a hint
            state, caused = evaluate(state, at, self.model, hint=due[snap.subject])
            commits.append(make_commit(snap, state, (), caused, decided=decided, model=self.model))
        if gone:
            await self.store.index_due(gone)
        lost = await self.store.commit(commits)
        # a lost race means another worker or the lead's own partition updated it; what an
        # earlier publish left in a winner's outbox goes out with what this sweep decided
        await self.outbox.publish(
            {
                c.subject: {**snaps[c.subject].outbox, **c.outbox}
                for c in commits
                if c.subject not in lost
            },
            report,
            decided,
        )
        return report
