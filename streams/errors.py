"""One root exception for the running system, split by what the worker does next.

A `TransientError` (a connection dropped, a call timed out) is retried with
backoff: the same batch succeeds once the dependency is back. A
`PermanentError` (a record, a stored state or a message that can never be
processed) is never retried: its subject is dead-lettered with the reason and
the worker goes on with everything else.
"""

from __future__ import annotations


class LeadpulseError(Exception):
    """Root of every error leadpulse raises on purpose."""


class TransientError(LeadpulseError):
    """A dependency is unavailable for now; retrying the same work will succeed later."""


class PermanentError(LeadpulseError):
    """This input can never be processed; dead-letter it and go on."""

    def __init__(self, reason: str, *, subject: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.subject = subject


class FatalError(LeadpulseError):
    """This process cannot go on correctly; it must start over (see `RollbackError`)."""


class CorruptStateError(PermanentError):
    """A lead's stored state cannot be decoded by this release."""


class UnpublishableError(PermanentError):
    """The broker refuses a message for what it is (too large, invalid), not for now."""


_PERMANENT_KAFKA = frozenset(
    {
        "MessageSizeTooLargeError",
        "RecordListTooLargeError",
        "InvalidRecordError",
        "CorruptRecordError",
        "CorruptRecordException",
        "InvalidTopicError",
        "TopicAuthorizationFailedError",
    }
)
"""Broker errors that repeat for the same message however often it is sent."""


def is_permanent_kafka_error(error: BaseException) -> bool:
    """A broker error that names the message, not the broker's state, as the cause."""
    seen: BaseException | None = error
    for _ in range(5):  # Faust wraps aiokafka's errors: follow the cause chain a little
        if seen is None:
            return False
        if {cls.__name__ for cls in type(seen).__mro__} & _PERMANENT_KAFKA:
            return True
        seen = seen.__cause__
    return False


__all__ = [
    "CorruptStateError",
    "FatalError",
    "LeadpulseError",
    "PermanentError",
    "TransientError",
    "UnpublishableError",
    "is_permanent_kafka_error",
]
