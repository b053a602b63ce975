"""Durable delivery jobs in Redis: one queue per destination, survives any restart.

Per destination (one hash tag, so each script is atomic on Redis Cluster too):
a sorted set of due times, a hash of jobs, a short-lived "finished" marker per
webhook id, and a "disabled" flag (keys in `streams.store.redis.keys`).

- `enqueue` adds a job unless the id is queued or was finished within the
  retention window: a replayed Kafka record is not delivered twice.
- `claim` takes due jobs and moves their due time to the end of a lease: a
  deliverer that dies mid-request leaves them to be tried again once the
  lease ran out (at least once), and two deliverers never send one job at once
  while the lease holds.
- `finish` removes a job and remembers its id (``ok`` or ``dlq``).
- `reschedule` stores the attempts so far and the next due time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from leadpulse.streams.store.redis.keys import DEFAULT as DEFAULT_KEYS
from leadpulse.streams.store.redis.keys import Keys

_ENQUEUE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""

_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local job = redis.call('HGET', KEYS[2], id)
  if job then
    redis.call('ZADD', KEYS[1], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = job
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
"""

_FINISH = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'EX', tonumber(ARGV[3]))
return 1
"""

_RESCHEDULE = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
"""


@dataclass
class Job:
    """One message for one destination, with the attempts made so far.

    `message` is the message's wire JSON; `record_time` the Kafka record time
    of the message (epoch seconds), for the delivery latency.
    """

    webhook_id: str
    kind: str
    message: str
    record_time: float
    attempts: list[dict[str, Any]] = field(default_factory=list)

    def encode(self) -> str:
        return json.dumps(
            {"k": self.kind, "m": self.message, "t": self.record_time, "a": self.attempts},
            separators=(",", ":"),
        )

    @classmethod
    def decode(cls, webhook_id: str, text: bytes | str) -> Job:
        data = json.loads(text)
        return cls(webhook_id, data["k"], data["m"], float(data["t"]), list(data["a"]))


class JobStore:
    """The jobs of every destination in one Redis database."""

    def __init__(self, client: aioredis.Redis, retention: float, keys: Keys = DEFAULT_KEYS) -> None:
        self.client = client
        self.keys = keys
        self.retention = max(1, int(retention))
        self._enqueue = client.register_script(_ENQUEUE)
        self._claim = client.register_script(_CLAIM)
        self._finish = client.register_script(_FINISH)
        self._reschedule = client.register_script(_RESCHEDULE)

    async def enqueue(self, entries: Sequence[tuple[str, Job, float]]) -> int:
        """(destination, job, due) each, pipelined; returns how many were new."""
        if not entries:
            return 0
        async with self.client.pipeline(transaction=False) as pipe:
            for destination, job, due in entries:
                await self._enqueue(
                    keys=[
                        self.keys.delivery_due(destination),
                        self.keys.delivery_jobs(destination),
                        self.keys.delivered(destination, job.webhook_id),
                    ],
                    args=[job.webhook_id, job.encode(), repr(due)],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(int(r) for r in results)

    async def claim(self, destination: str, now: float, lease: float, limit: int) -> list[Job]:
        reply = await self._claim(
            keys=[self.keys.delivery_due(destination), self.keys.delivery_jobs(destination)],
            args=[repr(now), repr(now + lease), limit],
        )
        pairs = list(reply)
        return [Job.decode(_text(pairs[i]), pairs[i + 1]) for i in range(0, len(pairs), 2)]

    async def finish(self, destination: str, webhook_id: str, marker: str) -> None:
        await self._finish(
            keys=[
                self.keys.delivery_due(destination),
                self.keys.delivery_jobs(destination),
                self.keys.delivered(destination, webhook_id),
            ],
            args=[webhook_id, marker, self.retention],
        )

    async def reschedule(self, destination: str, job: Job, due: float) -> None:
        await self._reschedule(
            keys=[self.keys.delivery_due(destination), self.keys.delivery_jobs(destination)],
            args=[job.webhook_id, job.encode(), repr(due)],
        )

    async def next_due(self, destination: str) -> float | None:
        first = await self.client.zrange(self.keys.delivery_due(destination), 0, 0, withscores=True)
        return float(first[0][1]) if first else None

    async def pending(self, destination: str) -> int:
        return int(await self.client.zcard(self.keys.delivery_due(destination)))

    async def finished(self, destination: str, webhook_id: str) -> str | None:
        value = await self.client.get(self.keys.delivered(destination, webhook_id))
        return None if value is None else _text(value)

    async def disabled(self, destination: str) -> str | None:
        value = await self.client.get(self.keys.destination_disabled(destination))
        return None if value is None else _text(value)

    async def disable(self, destination: str, reason: str) -> None:
        await self.client.set(self.keys.destination_disabled(destination), reason)

    async def enable(self, destination: str) -> bool:
        return bool(await self.client.delete(self.keys.destination_disabled(destination)))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
