"""LeadStore on Redis: one Lua script per lead update, pipelined per batch."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from streams import keys
from streams.settings import Settings
from streams.store import Commit, Snapshot

# KEYS: state hash, seen set, outbox hash, alias string
# ARGV: expected version, state blob, n ids, ids..., outbox id/blob pairs...
_COMMIT = """
if redis.call('EXISTS', KEYS[4]) == 1 then return -2 end
local v = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2])
local n = tonumber(ARGV[3])
local i = 4
while i < 4 + n do
  local last = math.min(i + 999, 3 + n)
  redis.call('SADD', KEYS[2], unpack(ARGV, i, last))
  i = last + 1
end
while i < #ARGV do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return v + 1
"""

# KEYS: state hash, alias string, detached string; ARGV: lead id
_DETACH = """
redis.call('SET', KEYS[2], ARGV[1])
local blob = redis.call('HGET', KEYS[1], 's')
if blob then
  redis.call('SET', KEYS[3], blob)
  redis.call('DEL', KEYS[1])
end
return redis.call('GET', KEYS[3])
"""


def connect(settings: Settings) -> aioredis.Redis:
    """A client for the configured Redis; TLS with rediss:// and a CA file."""
    # redis-py 8.1's asyncio from_url() sets no retry: without one, the first
    # command after a Redis restart fails instead of reconnecting.
    options: dict[str, Any] = {
        "decode_responses": False,
        "health_check_interval": 10,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), 3),
        "socket_connect_timeout": 5,
    }
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_url.startswith("rediss://") and settings.redis_tls_ca_file:
        options["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    client: aioredis.Redis = aioredis.Redis.from_url(settings.redis_url, **options)
    return client


class RedisLeadStore:
    """LeadStore backed by Redis >= 6.2; every key of a lead shares its hash tag."""

    def __init__(self, client: aioredis.Redis, due_shards: int = 16) -> None:
        self.client = client
        self.due_shards = due_shards
        self._commit = client.register_script(_COMMIT)
        self._detach = client.register_script(_DETACH)

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        if not wanted:
            return {}
        pipe = self.client.pipeline(transaction=False)
        order = []
        for subject, ids in wanted.items():
            id_list = list(ids)
            order.append((subject, id_list))
            pipe.hmget(keys.state(subject), ["v", "s"])
            pipe.get(keys.alias(subject))
            pipe.hgetall(keys.outbox(subject))
            if id_list:
                pipe.smismember(keys.seen(subject), id_list)
        replies = await pipe.execute()
        result = {}
        at = 0
        for subject, id_list in order:
            (version, blob), alias, box = replies[at], replies[at + 1], replies[at + 2]
            at += 3
            seen: frozenset[str] = frozenset()
            if id_list:
                flags = replies[at]
                at += 1
                seen = frozenset(i for i, flag in zip(id_list, flags, strict=True) if flag)
            result[subject] = Snapshot(
                subject=subject,
                state=blob,
                version=int(version or 0),
                alias=alias.decode() if alias is not None else None,
                seen=seen,
                outbox={k.decode(): v for k, v in box.items()},
            )
        return result

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        if not commits:
            return set()
        pipe = self.client.pipeline(transaction=False)
        for c in commits:
            args: list[Any] = [c.expected_version, c.state, len(c.event_ids), *c.event_ids]
            for message_id, blob in c.outbox.items():
                args += [message_id, blob]
            await self._commit(
                keys=[
                    keys.state(c.subject),
                    keys.seen(c.subject),
                    keys.outbox(c.subject),
                    keys.alias(c.subject),
                ],
                args=args,
                client=pipe,
            )
        replies = await pipe.execute()
        lost = {c.subject for c, reply in zip(commits, replies, strict=True) if int(reply) < 0}
        pipe = self.client.pipeline(transaction=False)
        for c in commits:
            if c.subject in lost:
                continue
            due_key = keys.due(c.subject, self.due_shards)
            if c.due_at is None:
                pipe.zrem(due_key, c.subject)
            else:
                pipe.zadd(due_key, {c.subject: c.due_at})
        await pipe.execute()
        return lost

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for subject, ids in published.items():
            if ids:
                pipe.hdel(keys.outbox(subject), *ids)
        await pipe.execute()

    async def pending_outboxes(self) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        async for key in self.client.scan_iter(match=keys.OUTBOX_PATTERN, count=1000):
            text = key.decode()
            subject = text[len(keys.PREFIX) + 2 : -len("}:outbox")]
            box = cast("dict[bytes, bytes]", await self.client.hgetall(key))
            if box:
                yield subject, {k.decode(): v for k, v in box.items()}

    async def due(self, now: float, limit: int) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for shard in range(self.due_shards):
            pipe.zrangebyscore(keys.due_shard(shard), "-inf", now, start=0, num=limit)
        replies = await pipe.execute()
        return [member.decode() for reply in replies for member in reply]

    async def detach(self, anonymous_id: str, lead_id: str) -> bytes | None:
        blob = await self._detach(
            keys=[
                keys.state(anonymous_id),
                keys.alias(anonymous_id),
                keys.detached(anonymous_id),
            ],
            args=[lead_id],
        )
        await self.client.zrem(keys.due(anonymous_id, self.due_shards), anonymous_id)
        return blob if blob is None else bytes(blob)

    async def forget_detached(self, anonymous_id: str) -> None:
        await self.client.delete(keys.detached(anonymous_id))

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
