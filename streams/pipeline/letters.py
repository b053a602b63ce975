"""Dead letters: whatever can never be processed goes to the DLQ topic, once, with why.

Four kinds reach it: records that do not decode, a lead's events whose
stored state this release cannot read, messages the broker refuses for what
they are (a handoff above its size limit), and single records a permanent or
a repeating unknown error was pinned to (`Runtime` narrows a failing batch).
A letter is remembered once the broker acknowledged it, so a batch retried
after a transient failure does not letter the same record again.
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime
from typing import Any

from leadpulse.schemas import BehaviorEvent, DecodeError, dead_letter, encode
from leadpulse.streams.kafka.publisher import Outgoing, Publisher, RefusedMessagesError
from leadpulse.streams.observability.health import Health
from leadpulse.streams.pipeline.records import Record

log = logging.getLogger(__name__)

MAX_MESSAGE = 1_000_000
"""The producer's default largest message (bytes); a letter must fit in it."""
LETTER_OVERHEAD = 4096
"""Room for a letter's own fields (reason, errors, key) around its payload."""
REMEMBERED = 100_000
"""Letters remembered against re-sending: far more than one batch can hold."""


class DeadLetters:
    """Builds, de-duplicates and publishes dead letters to one topic."""

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        clock: Callable[[], float],
        health: Health | None = None,
        *,
        max_message: int = MAX_MESSAGE,
        counted: Callable[[str, int], None] | None = None,
    ) -> None:
        """`counted(kind, n)` is told how many letters of each kind the broker took."""
        self.publisher = publisher
        self.counted = counted
        self.max_payload = max(256, max_message - LETTER_OVERHEAD)
        self.topic = topic
        self.clock = clock
        self.health = health
        self._sent: OrderedDict[Hashable, None] = OrderedDict()
        self._pending: list[tuple[Hashable, Outgoing, dict[str, Any], str]] = []

    def record(
        self,
        record: Record,
        error: DecodeError | str,
        *,
        lead_id: str | None = None,
        marker: Hashable | None = None,
        kind: str = "decode",
    ) -> None:
        """Queue a letter for an input record (skipped if it was lettered already).

        `kind` is the reason class the metrics count it under (a small fixed set).
        """
        marker = marker or ("record", record.topic, record.partition, record.offset)
        if marker in self._sent:
            return
        letter = dead_letter(
            record.value,
            error,
            key=record.key,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            failed_at=self._now(),
            lead_id=lead_id,
            max_payload=self.max_payload,
            kind=kind,
            replay_of=record.replay_of,
        )
        where = {
            "reason": letter.reason,
            "kind": kind,
            "lead_id": lead_id,
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
        }
        self._pending.append(
            (marker, Outgoing(self.topic, letter.key or "", encode(letter)), where, kind)
        )

    def event(
        self,
        event: BehaviorEvent,
        reason: str,
        *,
        lead_id: str | None,
        record: Record | None = None,
    ) -> None:
        """Queue a letter for a decoded event whose lead's stored state cannot be read.

        Its record is lettered when known, else the event itself.
        """
        if record is not None:
            self.record(record, reason, lead_id=lead_id, kind="corrupt_state")
            return
        made = Record(event.subject.encode(), encode(event), "(event)", partition=-1, offset=-1)
        marker = ("event", event.subject, event.event_id)
        self.record(made, reason, lead_id=lead_id, marker=marker, kind="corrupt_state")

    def message(self, subject: str, message_id: str, message: Outgoing, reason: str) -> None:
        """Queue a letter for a decided message the broker refused (no input record)."""
        made = Record(subject.encode(), message.value, message.topic, partition=-1, offset=-1)
        marker = ("message", subject, message_id)
        self.record(made, reason, lead_id=subject, marker=marker, kind="refused_message")

    async def flush(self) -> int:
        """Publish the queued letters; returns how many were sent."""
        if not self._pending:
            return 0
        pending, self._pending = self._pending, []
        refused: set[int] = set()
        try:
            await self.publisher.publish([letter for _, letter, _, _ in pending])
        except RefusedMessagesError as error:
            # even the letter cannot be sent (a broker limit below ours): say so, go on
            for letter, reason in error.refused:
                log.error("dead letter refused by the broker, dropped: %s", reason)  # noqa: TRY400
                refused.add(id(letter))
        except BaseException:
            self._pending = pending + self._pending
            raise
        kinds: Counter[str] = Counter()
        for marker, letter, where, kind in pending:
            self._remember(marker)
            if id(letter) not in refused:
                kinds[kind] += 1
                if self.health is not None:
                    self.health.dead_letter(**where)
        if self.counted is not None:
            for kind, count in kinds.items():
                self.counted(kind, count)
        return len(pending) - len(refused)

    def discard(self) -> None:
        """Forget queued letters (their batch will be retried and queue them again)."""
        self._pending.clear()

    def _remember(self, marker: Hashable) -> None:
        self._sent[marker] = None
        while len(self._sent) > REMEMBERED:
            self._sent.popitem(last=False)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)
