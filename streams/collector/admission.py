"""Who may be worked on now: requests in flight, and each source's request rate.

Both answer before any work is done on a request, so an overload or one
noisy sender costs the collector a counter and an answer, not a body read,
a decompression or a Kafka produce. Time is passed in (seconds on a
monotonic clock), so the buckets are tested without sleeping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(slots=True)
class TokenBucket:
    """`rate` tokens a second, at most `burst` saved up; a request takes one."""

    rate: float
    burst: int
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one will be there."""
        self.tokens = min(float(self.burst), self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class RateLimits:
    """One `TokenBucket` per sender (a write key's source), full at its first request."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float]) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[Hashable, TokenBucket] = {}

    def retry_after(self, sender: Hashable) -> int | None:
        """None if `sender` may go on now, else whole seconds to wait (Retry-After, >= 1).

        Rounded up: a client that waits that long finds a token there.
        """
        now = self.clock()
        bucket = self._buckets.get(sender)
        if bucket is None:
            bucket = self._buckets[sender] = TokenBucket(self.rate, self.burst, self.burst, now)
        wait = bucket.take(now)
        return None if wait == 0.0 else max(1, math.ceil(wait))


class InFlight:
    """Counts requests being worked on; `enter` refuses one beyond `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def enter(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1
