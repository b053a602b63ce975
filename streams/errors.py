"""One root exception for the running system, split by what the worker does next.

A `TransientError` (a connection dropped, a call timed out) is retried with
backoff: the same batch succeeds once the dependency is back. A
`PermanentError` (a record, a stored state or a message that can never be
processed) is never retried: its subject is dead-lettered with the reason and
the worker goes on with everything else.
"""

from __future__ import annotations

import hashlib
import traceback


class LeadpulseError(Exception):
    """Root of every error leadpulse raises on purpose."""


class TransientError(LeadpulseError):
    """A dependency is unavailable for now; retrying the same work will succeed later."""


class PermanentError(LeadpulseError):
    """This input can never be processed; dead-letter it and go on."""

    kind = "permanent_error"
    """The reason class its dead letters are counted under."""

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


_TRANSIENT = frozenset(
    {
        "TransientError",
        "OSError",  # the builtin ConnectionError and TimeoutError among them
        "ConnectionError",  # redis-py's own, not an OSError
        "TimeoutError",
        "BusyLoadingError",
        "ReadOnlyError",
        "ClusterDownError",
        "TryAgainError",
        "KafkaError",  # aiokafka's and kafka-python's root: the broker's state, mostly
    }
)
"""Errors of a dependency that is away or busy: the same work succeeds once it is back."""


def _names(error: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(error).__mro__}


def _chain(error: BaseException) -> list[BaseException]:
    """The error and a few of its causes (Faust wraps aiokafka's errors)."""
    chain: list[BaseException] = []
    seen: BaseException | None = error
    while seen is not None and len(chain) < 5:
        chain.append(seen)
        seen = seen.__cause__
    return chain


def is_permanent_kafka_error(error: BaseException) -> bool:
    """A broker error that names the message, not the broker's state, as the cause."""
    return any(_names(seen) & _PERMANENT_KAFKA for seen in _chain(error))


def is_transient(error: BaseException) -> bool:
    """Whether `error` says a dependency is unavailable for now (retry without limit).

    Everything else that is neither a `PermanentError` nor a `FatalError` is an
    unknown error (a bug, an exhausted inner retry): retried a bounded number
    of times, then treated as permanent for the input it is pinned to.
    """
    if isinstance(error, PermanentError) or is_permanent_kafka_error(error):
        return False
    return any(
        _names(seen) & _TRANSIENT or getattr(seen, "retriable", False) is True
        for seen in _chain(error)
    )


def traceback_digest(error: BaseException) -> str:
    """12 hex digits naming where `error` was raised: the same bug gives the same digest.

    Only file names, functions and lines go in (no messages, no values), so
    letters of one bug group together whatever input raised it.
    """
    frames = traceback.extract_tb(error.__traceback__)
    where = "|".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.name}:{f.lineno}" for f in frames)
    text = f"{type(error).__qualname__}|{where}"
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class UnknownError(PermanentError):
    """An error neither transient nor permanent that repeated: treated as permanent.

    Its reason names the exception type, its message and the traceback
    digest, so a dead letter says which bug it met.
    """

    kind = "unknown_error"

    def __init__(self, error: BaseException, attempts: int) -> None:
        self.error = error
        self.attempts = attempts
        self.digest = traceback_digest(error)
        super().__init__(
            f"unexpected {type(error).__name__}: {error} "
            f"(after {attempts} attempts; traceback {self.digest})"
        )


__all__ = [
    "CorruptStateError",
    "FatalError",
    "LeadpulseError",
    "PermanentError",
    "TransientError",
    "UnknownError",
    "UnpublishableError",
    "is_permanent_kafka_error",
    "is_transient",
    "traceback_digest",
]
