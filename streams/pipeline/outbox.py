"""The outbox: decided messages wait in Redis until Kafka acknowledged them.

A commit writes a lead's new state and the messages it decided in one atomic
step (`make_commit` builds it); `Outbox.send` sends them and `Outbox.clear`
forgets them only after the broker's acks, so a crash in between republishes
the same messages (same ids) later. The outbox holds no dead letters: what
the broker refuses for good is handed back for the caller to letter first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from leadpulse.schemas import DecodeError, Handoff, StageTransition, decode_transition, encode
from leadpulse.scoring import LeadState, ScoringModel, engagement, handoff_profile, next_recycle_at
from leadpulse.streams.kafka.publisher import Outgoing, Publisher, RefusedMessagesError
from leadpulse.streams.pipeline.records import Decided, Topics
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


class Refused(NamedTuple):
    """A decided message the broker refuses for what it is (too large): never sendable."""

    subject: str
    message_id: str
    message: Outgoing
    reason: str


@dataclass(slots=True)
class Sent:
    """What one send of outboxes did, for the caller to letter, clear and count."""

    ids: dict[str, list[str]]
    """Message ids per lead that leave their outbox once `Outbox.clear` runs."""
    published: int
    transitions: list[StageTransition]
    """The acknowledged transitions (including ones an earlier run decided)."""
    refused: list[Refused]


class Outbox:
    """Sends lead outboxes to Kafka and clears what the broker acknowledged."""

    def __init__(self, store: LeadStore, publisher: Publisher, topics: Topics) -> None:
        self.store = store
        self.publisher = publisher
        self.topics = topics

    async def send(
        self, outboxes: Mapping[str, Mapping[str, bytes]], decided: Decided | None = None
    ) -> Sent | None:
        """Send every message and wait for the broker's acks; None if there was none.

        Transitions this run decided come from `decided`; only ones an earlier
        run left in an outbox are decoded again. A message the broker refuses
        for what it is comes back in `refused`: the caller dead-letters it
        before `clear` lets it leave the outbox, so it cannot stall the lead
        or the partition. Any other failure raises and keeps every outbox.
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
            return None
        refused: list[Refused] = []
        refused_ids: set[int] = set()
        try:
            await self.publisher.publish(messages)
        except RefusedMessagesError as error:
            for message, reason in error.refused:
                subject, message_id = origin[id(message)]
                refused.append(Refused(subject, message_id, message, reason))
                refused_ids.add(id(message))
        return Sent(
            ids=sent,
            published=len(messages) - len(refused),
            transitions=[t for key, t in transitions.items() if key not in refused_ids],
            refused=refused,
        )

    async def clear(self, sent: Sent) -> None:
        """Forget what was sent (acknowledged, or refused and dead-lettered)."""
        await self.store.clear_outbox(sent.ids)


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
