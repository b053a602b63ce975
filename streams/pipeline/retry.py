"""Retry transient failures without limit, unknown ones a few times, permanent ones never."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from leadpulse.streams.errors import FatalError, PermanentError, UnknownError, is_transient
from leadpulse.streams.observability.health import Health

log = logging.getLogger("leadpulse")

T = TypeVar("T")

RETRY_FIRST_DELAY = 0.1
RETRY_MAX_DELAY = 5.0
MAX_UNKNOWN_RETRIES = 5
"""Retries of an error that is neither transient nor permanent before it counts as permanent
(0.1 + 0.2 + 0.4 + 0.8 + 1.6 s of backoff: a race lost by bad luck has passed by then)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a step is retried, by what its failure says about the future."""

    max_unknown_retries: int = MAX_UNKNOWN_RETRIES
    first_delay: float = RETRY_FIRST_DELAY
    max_delay: float = RETRY_MAX_DELAY


async def retrying(
    what: str,
    step: Callable[[], Awaitable[T]],
    *,
    stopped: Callable[[], bool],
    health: Health,
    policy: RetryPolicy = RetryPolicy(),
    unknown_retries: int | None = None,
    retried: Callable[[str], None] | None = None,
    unknown: Callable[[str], None] | None = None,
) -> T:
    """Run `step` until it succeeds, fails permanently, or fails unknowably too often.

    Every step is idempotent (compare-and-set commits, outbox ids fixed per
    decision), so repeating it after a Redis or Kafka failure is safe.
    Transient failures (`is_transient`: connections, timeouts, a broker or a
    Redis away) are retried with backoff for as long as they last. A
    `PermanentError` is raised at once: repeating the same input cannot help,
    the caller dead-letters it; so is a `FatalError` (the process restarts).
    Any other error (a bug, an inner retry that gave up) is retried
    `unknown_retries` times (default: the policy's), then raised as an
    `UnknownError`, which is permanent. `retried(what)` is told of each retry
    and `unknown(what)` of each unknown error (metrics).
    """
    allowed = policy.max_unknown_retries if unknown_retries is None else unknown_retries
    delay = policy.first_delay
    unknowns = 0
    while True:
        try:
            result = await step()
        except asyncio.CancelledError:
            raise
        except (PermanentError, FatalError):
            health.recovered(what)
            raise
        except Exception as error:
            if stopped():
                raise
            transient = is_transient(error)
            if not transient:
                unknowns += 1
                health.unknown_error()
                if unknown is not None:
                    unknown(what)
                if unknowns > allowed:
                    health.recovered(what)
                    log.exception(
                        "%s failed %d times unexpectedly; treating it as permanent", what, unknowns
                    )
                    raise UnknownError(error, unknowns) from error
            health.failed(what, error)
            if retried is not None:
                retried(what)
            log.warning(
                "%s failed (%s: %s); retrying in %.1fs%s",
                what,
                type(error).__name__,
                error,
                delay,
                "" if transient else f" ({unknowns} of {allowed + 1} unexpected failures)",
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, policy.max_delay)
        else:
            health.recovered(what)
            return result
