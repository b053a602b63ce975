"""The scoring pipeline without Kafka: decode, apply, persist, publish.

The Faust agent hands batches of raw records to `Processor.process`; tests
hand them over directly. Every step that can fail half-way is safe to redo:
commits are compare-and-set and idempotent per event id, decided messages
sit in a per-lead outbox until Kafka acknowledged them (`outbox`), and the
transition ids are deterministic, so a redo republishes the same ids.
Identity links are merged by `identity`, decay-only moves found by `sweeper`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from schemas import BehaviorEvent, DecodeError, dead_letter, decode_event, encode
from scoring import LeadState, ScoringModel, apply_many, new_lead, next_recycle_at
from streams.kafka.publisher import Outgoing, Publisher
from streams.pipeline.identity import MAX_COMMIT_ATTEMPTS, Identity, rounds
from streams.pipeline.outbox import Outbox, make_commit
from streams.pipeline.records import Decided, Record, Report, Topics
from streams.pipeline.sweeper import Sweeper
from streams.store import Commit, LeadStore, Snapshot, decode_state

log = logging.getLogger(__name__)


class Processor:
    """Applies batches of events to lead states held in a LeadStore."""

    def __init__(
        self,
        store: LeadStore,
        publisher: Publisher,
        model: ScoringModel,
        *,
        topics: Topics | None = None,
        clock: Callable[[], float],
        sweep_limit: int = 1000,
        partitions: int = 12,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.model = model
        self.topics = topics or Topics()
        self.clock = clock
        self.outbox = Outbox(store, publisher, self.topics)
        self.identity = Identity(store, self.outbox, model, self._apply, self._load)
        self.partitions = partitions
        self.sweeper = Sweeper(
            store, self.outbox, model, limit=sweep_limit, shards=range(partitions)
        )

    # -- events ---------------------------------------------------------------------

    async def process(self, records: Sequence[Record]) -> Report:
        """Score a batch; bad records go to the DLQ; returns after all is published."""
        report = Report()
        now = datetime.fromtimestamp(self.clock(), UTC)
        events: list[BehaviorEvent] = []
        letters: list[Outgoing] = []
        for record in records:
            try:
                events.append(decode_event(record.value or b"", now=now))
            except DecodeError as error:
                letter = dead_letter(
                    record.value,
                    error,
                    key=record.key,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    failed_at=now,
                )
                key = letter.key or ""
                letters.append(Outgoing(self.topics.dlq, key, encode(letter)))
        if letters:
            await self.publisher.publish(letters)
            report.dead_lettered = len(letters)
        for segment, links in rounds(events):
            report.add(await self._apply(segment))
            if links:
                report.add(await self.identity.link(links))
        return report

    async def _apply(self, events: Sequence[BehaviorEvent]) -> Report:
        report = Report()
        pending, repeated = _group(events)
        report.duplicates += repeated
        arrival = {id(e): i for i, e in enumerate(events)}
        for _ in range(MAX_COMMIT_ATTEMPTS):
            if not pending:
                return report
            snaps = await self.store.snapshot(_ids(pending))
            pending, targets = self._follow_aliases(pending, snaps, report, arrival)
            if targets:
                # the targets' seen sets must be asked about the redirected ids too
                asked = _ids(pending)
                snaps.update(await self.store.snapshot({s: asked[s] for s in targets}))
            commits: list[Commit] = []
            decided: Decided = {}
            replayed: dict[str, LeadState] = {}
            for subject, subject_events in pending.items():
                snap = snaps[subject]
                fresh = [e for e in subject_events if e.event_id not in snap.seen]
                report.duplicates += len(subject_events) - len(fresh)
                if not fresh:
                    if snap.state is not None:
                        replayed[subject] = decode_state(snap.state)
                    continue
                state = self._load(snap, any(e.lead_id is not None for e in fresh))
                state, caused = apply_many(state, fresh, self.model)
                ids = [e.event_id for e in fresh]
                commits.append(
                    make_commit(snap, state, ids, caused, decided=decided, model=self.model)
                )
            if replayed:
                # only re-delivered events: a crash may have come between the commit and
                # the due-index write (separate steps, other cluster slots), so restore it
                await self.store.index_due(
                    {s: next_recycle_at(state, self.model) for s, state in replayed.items()}
                )
            lost = await self.store.commit(commits)
            # publish what this round decided plus anything an earlier run left pending
            outboxes = {
                s: dict(snap.outbox) for s, snap in snaps.items() if snap.outbox and s not in lost
            }
            for c in commits:
                if c.subject not in lost:
                    report.scored += len(c.event_ids)
                    if c.outbox:
                        outboxes.setdefault(c.subject, {}).update(c.outbox)
            await self.outbox.publish(outboxes, report, decided)
            pending = {s: evs for s, evs in pending.items() if s in lost}
        raise RuntimeError(f"gave up after {MAX_COMMIT_ATTEMPTS} lost races on {sorted(pending)}")

    @staticmethod
    def _follow_aliases(
        pending: dict[str, list[BehaviorEvent]],
        snaps: Mapping[str, Snapshot],
        report: Report,
        arrival: dict[int, int],
    ) -> tuple[dict[str, list[BehaviorEvent]], set[str]]:
        """Credit events of merged anonymous ids to their lead, once.

        A lead then gets its own and its aliases' events in arrival order
        (`arrival` maps an event's id() to its place in the batch; credited
        copies are added to it).
        """
        result: dict[str, list[BehaviorEvent]] = {}
        targets: set[str] = set()
        for subject, subject_events in pending.items():
            alias = snaps[subject].alias
            if alias is None:
                result.setdefault(subject, []).extend(subject_events)
                continue
            fresh = [e for e in subject_events if e.event_id not in snaps[subject].seen]
            report.duplicates += len(subject_events) - len(fresh)
            if fresh:
                for e in fresh:
                    copy = e.model_copy(update={"lead_id": alias})
                    arrival[id(copy)] = arrival[id(e)]
                    result.setdefault(alias, []).append(copy)
                targets.add(alias)
        for target in targets:
            result[target].sort(key=lambda e: arrival[id(e)])
        return result, targets

    async def dead_letter_records(self, records: Sequence[Record], reason: str) -> Report:
        """Send whole records to the DLQ with one reason (a batch that can never be scored)."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        letters = [
            Outgoing(self.topics.dlq, (r.key or b"").decode("utf-8", "replace"), encode(letter))
            for r in records
            for letter in [
                dead_letter(
                    r.value,
                    reason,
                    key=r.key,
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    failed_at=now,
                )
            ]
        ]
        if letters:
            await self.publisher.publish(letters)
        return Report(dead_lettered=len(letters))

    # -- time and restarts ------------------------------------------------------------

    async def sweep(self, now: float | None = None) -> Report:
        """Recycle leads that decay alone took below the threshold by `now`."""
        return await self.sweeper.sweep(self.clock() if now is None else now)

    async def replay_outboxes(self) -> Report:
        """Publish what a previous run decided but could not confirm as sent."""
        return await self.outbox.replay(range(self.partitions))

    # -- helpers --------------------------------------------------------------------

    def _load(self, snap: Snapshot, known: bool) -> LeadState:
        if snap.state is None:
            return new_lead(snap.subject, anonymous=not known)
        state = decode_state(snap.state)
        if known and state.anonymous:
            state = state.model_copy(update={"anonymous": False})
        return state


def _group(events: Iterable[BehaviorEvent]) -> tuple[dict[str, list[BehaviorEvent]], int]:
    """Events per subject in arrival order, each event id once; and how many repeats."""
    grouped: dict[str, list[BehaviorEvent]] = {}
    seen: set[tuple[str, str]] = set()
    repeated = 0
    for event in events:
        marker = (event.subject, event.event_id)
        if marker in seen:
            repeated += 1
            continue
        seen.add(marker)
        grouped.setdefault(event.subject, []).append(event)
    return grouped, repeated


def _ids(pending: Mapping[str, Sequence[BehaviorEvent]]) -> dict[str, list[str]]:
    return {subject: [e.event_id for e in evs] for subject, evs in pending.items()}
