"""What one read-and-decide round settled on, before the store and the broker see it.

Scoring a batch's events, merging identity links and sweeping decay all go
snapshot -> decide -> commit -> publish. The deciding part returns a `Plan`,
so the writing part (the processor's commit and publish steps) is one code
path for the three, and a part that decides needs neither the outbox nor the
dead letters: what it cannot apply comes back as `Reject`s.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from leadpulse.schemas import BehaviorEvent
from leadpulse.streams.pipeline.records import Decided
from leadpulse.streams.store import Commit

MAX_COMMIT_ATTEMPTS = 50
"""Version races only happen between a partition's owner, the sweeper and
identity redirects; fifty lost races in a row means something is broken."""


class Reject(NamedTuple):
    """An event that can never be applied (its lead's stored state cannot be read)."""

    event: BehaviorEvent
    reason: str
    lead: str


@dataclass(slots=True)
class Plan:
    """The commits of one round and what goes with them."""

    commits: list[Commit] = field(default_factory=list)
    decided: Decided = field(default_factory=dict)
    """The transitions the commits put in their outboxes (published without decoding)."""
    carried: dict[str, Mapping[str, bytes]] = field(default_factory=dict)
    """Outboxes an earlier run left, by lead: published with this round's unless it lost."""
    due: dict[str, float | None] = field(default_factory=dict)
    """Due-index entries written before the commit (restored, or dropped for gone leads)."""
    rejects: list[Reject] = field(default_factory=list)
    scored: dict[str, int] = field(default_factory=dict)
    """Events each lead's commit scores, counted once it won."""
    duplicates: int = 0
    """Events found already applied."""

    def add(self, commit: Commit, *, scored: int = 0) -> None:
        self.commits.append(commit)
        if scored:
            self.scored[commit.subject] = scored

    def outboxes(self, lost: Collection[str]) -> dict[str, dict[str, bytes]]:
        """What to publish once committed: the carried outboxes and the new messages.

        A lead whose commit lost a race is redone, and publishes then.
        """
        boxes = {s: dict(box) for s, box in self.carried.items() if s not in lost}
        for c in self.commits:
            if c.outbox and c.subject not in lost:
                boxes.setdefault(c.subject, {}).update(c.outbox)
        return boxes
