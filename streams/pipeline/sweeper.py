"""The decay sweeper: finds leads that decay alone took below the recycle threshold.

Upward crossings happen at events; downward ones happen with time, so a
timer asks the due index for the leads whose next possible crossing has
passed: the cost is proportional to the due leads, not to all leads.
"""

from __future__ import annotations

from collections.abc import Collection

from scoring import ScoringModel, evaluate
from streams.pipeline.outbox import Outbox, make_commit
from streams.pipeline.records import Decided, Report
from streams.store import Commit, LeadStore, decode_state


class Sweeper:
    """Evaluates due leads at a given time and publishes the recycles it decides."""

    def __init__(
        self,
        store: LeadStore,
        outbox: Outbox,
        model: ScoringModel,
        *,
        limit: int = 1000,
        shards: Collection[int] = range(12),
    ) -> None:
        self.store = store
        self.shards = shards
        self.outbox = outbox
        self.model = model
        self.limit = limit

    async def sweep(self, at: float) -> Report:
        """Recycle leads that decay alone took below the threshold by `at`."""
        report = Report()
        due = await self.store.due(at, self.limit, self.shards)
        if not due:
            return report
        snaps = await self.store.snapshot(dict.fromkeys(due, ()))
        commits: list[Commit] = []
        decided: Decided = {}
        for snap in snaps.values():
            if snap.state is None:
                continue
            # the index entry is the crossing an earlier commit computed: a hint
            state, caused = evaluate(
                decode_state(snap.state), at, self.model, hint=due[snap.subject]
            )
            commits.append(make_commit(snap, state, (), caused, decided=decided, model=self.model))
        lost = await self.store.commit(commits)
        # a lost race means another worker or the lead's own partition updated it
        await self.outbox.publish(
            {c.subject: c.outbox for c in commits if c.subject not in lost}, report, decided
        )
        return report
