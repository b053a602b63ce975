"""Worker health: which steps are failing and for how long, and what was dead-lettered.

A transient failure (Redis or Kafka unreachable, a timeout) is retried; the
worker reports itself unhealthy once one has lasted `unhealthy_after`
seconds. Permanent failures do not make it unhealthy (it went on), but
`/health` says how many were dead-lettered and of which kind.

Two views: `summary` is what the open `/health` shows (names and counts of
what is failing: anyone who reaches the port may read it), `as_dict` adds
the details an operator with a token needs (error texts, the last letter's
lead, topic, offset and reason), which can carry lead ids or pieces of a
payload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Failure:
    since: float
    error: str
    attempts: int = 1


@dataclass
class Health:
    """Shared by the agents, timers and `/health` of one worker."""

    unhealthy_after: float = 30.0
    clock: Callable[[], float] = time.time
    failing: dict[str, Failure] = field(default_factory=dict)
    dead_lettered: int = 0
    last_dead_letter: dict[str, Any] | None = None
    """Where and why the latest letter was made; only `kind` and `at` are shown openly."""
    unknown_errors: int = 0
    """Errors neither transient nor permanent met so far (each retry of one counts)."""
    stale_watermarks: tuple[int, ...] = ()
    """Partitions the last sweep left out of its bound (stalled, ownerless or gone)."""

    def failed(self, what: str, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}"
        current = self.failing.get(what)
        if current is None:
            self.failing[what] = Failure(since=self.clock(), error=text)
        else:
            current.error = text
            current.attempts += 1

    def unknown_error(self) -> None:
        self.unknown_errors += 1

    def recovered(self, what: str) -> None:
        self.failing.pop(what, None)

    def dead_letter(self, reason: str, *, kind: str = "unknown", **where: Any) -> None:
        """Count a letter; `kind` is its reason class (a small fixed set), safe to show."""
        self.dead_lettered += 1
        self.last_dead_letter = {"reason": reason, "kind": kind, "at": self.clock(), **where}

    @property
    def healthy(self) -> bool:
        now = self.clock()
        return all(now - f.since < self.unhealthy_after for f in self.failing.values())

    def summary(self) -> dict[str, Any]:
        """What is failing, by name and count: no error text, lead id or offset."""
        now = self.clock()
        last = self.last_dead_letter
        return {
            "healthy": self.healthy,
            "failing": {
                what: {"for_seconds": round(now - f.since, 3), "attempts": f.attempts}
                for what, f in self.failing.items()
            },
            "dead_lettered": self.dead_lettered,
            "unknown_errors": self.unknown_errors,
            "stale_watermarks": list(self.stale_watermarks),
            "last_dead_letter": None if last is None else {k: last[k] for k in ("kind", "at")},
        }

    def as_dict(self) -> dict[str, Any]:
        """The summary with its details: error texts and where the last letter came from."""
        now = self.clock()
        return {
            "healthy": self.healthy,
            "failing": {
                what: {
                    "for_seconds": round(now - f.since, 3),
                    "attempts": f.attempts,
                    "error": f.error,
                }
                for what, f in self.failing.items()
            },
            "dead_lettered": self.dead_lettered,
            "unknown_errors": self.unknown_errors,
            "stale_watermarks": list(self.stale_watermarks),
            "last_dead_letter": self.last_dead_letter,
        }


def readiness(
    *,
    assigned: int,
    redis_error: str | None,
    broker_error: str | None,
    health: Health,
    lagging: bool,
    last_progress: float | None,
    now: float,
) -> dict[str, Any]:
    """Whether a worker should get traffic (`/ready`), and if not, why.

    Ready: it owns partitions, Redis answered a PING, the broker answered a
    metadata request, no step has been failing for `unhealthy_after`, and,
    when a partition lags, a batch was scored within `unhealthy_after`
    (`last_progress`: wall-clock time of the latest batch).
    """
    reasons: list[str] = []
    if assigned == 0:
        reasons.append("no partitions assigned")
    if redis_error is not None:
        reasons.append(f"redis: {redis_error}")
    if broker_error is not None:
        reasons.append(f"broker: {broker_error}")
    if not health.healthy:
        reasons.append(f"failing: {', '.join(sorted(health.failing))}")
    if lagging and (last_progress is None or now - last_progress >= health.unhealthy_after):
        reasons.append("lagging without progress")
    return {"ready": not reasons, "reasons": reasons, "assigned_partitions": assigned}


async def failure_of(check: Awaitable[object], within: float) -> str | None:
    """None if `check` finished within `within` seconds, else what went wrong, by kind only.

    `/ready` is open (an orchestrator has no token), and an error's text can
    name a host, a port or a password in a URL: the exception's type says
    enough to route traffic, the process's log and `/health/detail` say more.
    """
    try:
        await asyncio.wait_for(check, within)
    except TimeoutError:
        return f"no answer in {within:.0f}s"
    except Exception as error:  # noqa: BLE001 -- any failure makes the process unready
        return type(error).__name__
    return None
