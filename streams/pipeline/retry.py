"""Retry transient failures with backoff; let permanent ones through to be dead-lettered."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from streams.errors import FatalError, PermanentError
from streams.observability.health import Health

log = logging.getLogger("leadpulse")

T = TypeVar("T")

RETRY_FIRST_DELAY = 0.1
RETRY_MAX_DELAY = 5.0


async def retrying(
    what: str,
    step: Callable[[], Awaitable[T]],
    *,
    stopped: Callable[[], bool],
    health: Health,
    max_delay: float = RETRY_MAX_DELAY,
    retried: Callable[[str], None] | None = None,
) -> T:
    """Run `step` until it succeeds or fails permanently: transient failures only delay it.

    Every step is idempotent (compare-and-set commits, outbox ids fixed per
    decision), so repeating it after a Redis or Kafka failure is safe. A
    `PermanentError` is raised at once: repeating the same input cannot help,
    the caller dead-letters it; so is a `FatalError` (the process restarts).
    `retried(what)` is told of each retry (metrics).
    """
    delay = RETRY_FIRST_DELAY
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
            health.failed(what, error)
            if retried is not None:
                retried(what)
            log.warning(
                "%s failed (%s: %s); retrying in %.1fs", what, type(error).__name__, error, delay
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
        else:
            health.recovered(what)
            return result
