"""The outbox: decided messages wait in Redis until Kafka acknowledged them.

A commit writes a lead's new state and the messages it decided in one atomic
step; `Outbox.publish` sends them and forgets them only after the broker's
acks, so a crash in between republishes the same messages (same ids) later.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence

from leadpulse.schemas import DecodeError, Handoff, StageTransition, decode_transition, encode
from leadpulse.scoring import LeadState, ScoringModel, engagement, handoff_profile, next_recycle_at
from leadpulse.streams.kafka.publisher import Outgoing, Publisher, RefusedMessagesError
from leadpulse.streams.pipeline.letters import DeadLetters
from leadpulse.streams.pipeline.records import Decided, Report, Topics
from leadpulse.streams.store import Commit, LeadStore, Snapshot, encode_state

TRANSITION_PREFIX = "t:"
HANDOFF_PREFIX = "h:"
"""Outbox ids are prefix + the lead's transition sequence number, so a lead's
messages are published in the order they were decided."""


def make_commit(
    snap: Snapshot,
    state: LeadState,
    event_ids: Iterable[str],
    transitions: Sequence[StageTransition],
    *,
    decided: Decided,
    model: ScoringModel,
    at_decision: Mapping[str, LeadState] | None = None,
) -> Commit:
    """The commit of `state` with its decided messages; they are also noted in `decided`.

    A handoff carries the profile and account of the lead as of the event that
    caused it: of the state in `at_decision` (by transition id) when `state` is
    already past that event, else of `state`.
    """
    outbox: dict[str, bytes] = {}
    first_seq = state.transition_seq - len(transitions)
    for n, t in enumerate(transitions, start=first_seq + 1):
        message_id = f"{TRANSITION_PREFIX}{n:010d}"
        outbox[message_id] = encode(t)
        decided[snap.subject, message_id] = t
        if t.is_handoff:
            then = (at_decision or {}).get(t.transition_id, state)
            handoff = Handoff.from_transition(
                t, profile=handoff_profile(then, model), account_id=then.account_id
            )
            outbox[f"{HANDOFF_PREFIX}{n:010d}"] = encode(handoff)
    return Commit(
        subject=snap.subject,
        expected_version=snap.version,
        state=encode_state(state),
        event_ids=list(event_ids),
        outbox=outbox,
        due_at=next_recycle_at(state, model),
        anonymous=state.anonymous,
        # the hot-leads index holds known leads only (a visitor joins once identified)
        hot=None if state.anonymous else engagement(state, state.clock, model),
    )


class Outbox:
    """Publishes lead outboxes and clears what the broker acknowledged."""

    def __init__(
        self, store: LeadStore, publisher: Publisher, topics: Topics, letters: DeadLetters
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.topics = topics
        self.letters = letters

    async def publish(
        self,
        outboxes: Mapping[str, Mapping[str, bytes]],
        report: Report,
        decided: Decided | None = None,
    ) -> None:
        """Send, wait for the broker's acks, then forget; a failure keeps the outbox.

        Transitions this run decided come from `decided`; only ones an earlier
        run left in an outbox are decoded again. A message the broker refuses
        for what it is (too large) can never be sent: it is dead-lettered and
        leaves the outbox, so it cannot stall the lead or the partition.
        """
        known = decided or {}
        messages: list[Outgoing] = []
        origin: dict[int, tuple[str, str]] = {}
        transitions: dict[int, StageTransition] = {}
        sent: dict[str, list[str]] = {}
        for subject, box in outboxes.items():
            if not box:
                continue
            for message_id, blob in sorted(box.items(), key=_publish_order):
                if message_id.startswith(HANDOFF_PREFIX):
                    message = Outgoing(self.topics.handoffs, subject, blob)
                else:
                    message = Outgoing(self.topics.transitions, subject, blob)
                    made = known.get((subject, message_id)) or _readable(blob)
                    if made is not None:
                        transitions[id(message)] = made
                messages.append(message)
                origin[id(message)] = (subject, message_id)
                sent.setdefault(subject, []).append(message_id)
        if not messages:
            return
        refused: set[int] = set()
        try:
            await self.publisher.publish(messages)
        except RefusedMessagesError as error:
            for message, reason in error.refused:
                subject, message_id = origin[id(message)]
                self.letters.message(subject, message_id, message, reason)
                refused.add(id(message))
            report.dead_lettered += await self.letters.flush()
        await self.store.clear_outbox(sent)
        report.published += len(messages) - len(refused)
        report.transitions.extend(t for key, t in transitions.items() if key not in refused)

    async def replay(self, shards: Collection[int]) -> Report:
        """Publish what a previous run decided for leads of `shards` but did not send."""
        report = Report()
        async for subject, box in self.store.pending_outboxes(shards):
            await self.publish({subject: box}, report)
        return report


def _readable(blob: bytes) -> StageTransition | None:
    """A transition an earlier run (maybe a newer release) left, for the report only.

    It is published as stored whatever happens here: one this release cannot
    read (a stage it does not know) is just not counted.
    """
    try:
        return decode_transition(blob, lenient=True)
    except DecodeError:
        return None


def _publish_order(item: tuple[str, bytes]) -> tuple[str, bool]:
    """Decision order; a transition before the handoff it caused."""
    message_id = item[0]
    return (message_id[len(HANDOFF_PREFIX) :], message_id.startswith(HANDOFF_PREFIX))
