"""LeadStore on Redis: one Lua script per lead update, pipelined per batch."""

from __future__ import annotations

import asyncio
import hashlib
import math
import ssl
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import NoScriptError, ResponseError

from streams import keys
from streams.settings import Settings
from streams.store import SEEN_WINDOW, Commit, Snapshot

DIGEST_SIZE = 12
"""Bytes of an event id's digest in a lead's seen window (96-bit BLAKE2b)."""

# KEYS: lead hash, outbox hash, alias string
# ARGV: expected version, state blob, new id digests (concatenated), window size in
#       bytes (ids * DIGEST_SIZE), outbox id/blob pairs...
_COMMIT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return -2 end
local got = redis.call('HMGET', KEYS[1], 'v', 'w')
local v = tonumber(got[1] or '0')
if v ~= tonumber(ARGV[1]) then return -1 end
if ARGV[3] == '' then
  redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2])
else
  local w = (got[2] or '') .. ARGV[3]
  local keep = tonumber(ARGV[4])
  if #w > keep then w = string.sub(w, -keep) end
  redis.call('HSET', KEYS[1], 'v', v + 1, 's', ARGV[2], 'w', w)
end
for i = 5, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return v + 1
"""

# KEYS: lead hash, alias string, outbox hash; ARGV: '1' to read the seen window too
# One call instead of three commands per lead: on a pipeline the client's cost
# per command dominates a snapshot.
_SNAPSHOT = """
local got
if ARGV[1] == '1' then
  got = redis.call('HMGET', KEYS[1], 'v', 's', 'w')
else
  got = redis.call('HMGET', KEYS[1], 'v', 's')
end
return {got[1], got[2], got[3] or false, redis.call('GET', KEYS[2]),
        redis.call('HGETALL', KEYS[3])}
"""

# KEYS: lead hash, alias string, detached string; ARGV: lead id
# The seen window (field w) stays: events already applied to the anonymous id
# must not be credited to the lead again when they are re-delivered.
_DETACH = """
redis.call('SET', KEYS[2], ARGV[1])
local blob = redis.call('HGET', KEYS[1], 's')
if blob then
  redis.call('SET', KEYS[3], blob)
  redis.call('HDEL', KEYS[1], 'v', 's')
end
return redis.call('GET', KEYS[3])
"""


@dataclass(frozen=True)
class LuaScript:
    """A script called by its SHA1 (EVALSHA) and loaded when the server lacks it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        # SHA1 is what Redis names scripts by, not a security measure
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


SNAPSHOT = LuaScript(_SNAPSHOT)
COMMIT = LuaScript(_COMMIT)
DETACH = LuaScript(_DETACH)

Call = tuple[LuaScript, Sequence[Any]]
"""A script and its EVALSHA arguments after the SHA: numkeys, keys..., args..."""
NOSCRIPT_ATTEMPTS = 3
"""Rounds of loading scripts the server lost (restart, SCRIPT FLUSH) before giving up."""


def _call(script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Call:
    return script, (len(keys), *keys, *args)


def pack(commands: Sequence[tuple[Any, ...]]) -> bytes:
    """Commands in the Redis protocol, packed by hiredis (C).

    redis-py 8's asyncio connection packs in pure Python; with two commands
    per lead per batch that was 17 % of the scoring agent's batch work in a
    py-spy profile of the throughput benchmark.
    """
    return b"".join(hiredis.pack_command(command) for command in commands)


def id_digest(event_id: str) -> bytes:
    """What a seen window stores for an event id: 12 bytes whatever the id's length.

    Two different ids share a digest with probability 2**-96 per pair, so an
    event is wrongly taken for a duplicate with probability below
    seen_window * 2**-96 (about 1e-26 for the default window).
    """
    return hashlib.blake2b(event_id.encode(), digest_size=DIGEST_SIZE).digest()


def window_field(event_ids: Sequence[str], window: int = SEEN_WINDOW) -> bytes:
    """Field ``w`` of a lead that recorded `event_ids` (oldest first) in one commit."""
    return b"".join(id_digest(i) for i in event_ids[-window:])


def lead_fields(
    version: int, state: bytes, event_ids: Sequence[str], window: int = SEEN_WINDOW
) -> dict[str, bytes]:
    """The hash `keys.state` holds for a lead at `version` that recorded `event_ids`.

    What the commit script writes, for bulk loading (benchmarks, imports) with
    plain HSET; not atomic with anything, so never for a live lead.
    """
    fields = {"v": str(version).encode(), "s": state}
    if event_ids:
        fields["w"] = window_field(event_ids, window)
    return fields


def in_window(digest: bytes, window: bytes) -> bool:
    """Whether `window` holds `digest` as one of its aligned entries.

    A search in C instead of a set of every entry: a snapshot asks about a
    few ids, a window holds up to a thousand.
    """
    at = window.find(digest)
    while at != -1:
        if at % DIGEST_SIZE == 0:
            return True
        at = window.find(digest, at + 1)
    return False


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
    """LeadStore backed by Redis >= 6.2; every key of a lead shares its hash tag.

    A lead is one hash (see `keys.state`): version, state blob and its seen
    window, the digests of the last `seen_window` event ids, oldest first.
    """

    def __init__(
        self, client: aioredis.Redis, due_shards: int = 16, seen_window: int = SEEN_WINDOW
    ) -> None:
        if seen_window < 1:
            raise ValueError("seen_window must be at least 1")
        self.client = client
        self.due_shards = due_shards
        self.seen_window = seen_window

    async def _run(self, calls: Sequence[Call]) -> list[Any]:
        """EVALSHA every call in one pipeline; the replies in order.

        Calling by SHA directly spares redis-py's Script wrapper and its
        SCRIPT EXISTS round trip per pipeline. A call that met NOSCRIPT did not
        run, so loading the script and redoing just that call is safe.
        """
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(NOSCRIPT_ATTEMPTS):
            answers = await self._pipelined(
                [("EVALSHA", calls[i][0].sha, *calls[i][1]) for i in todo]
            )
            missing = []
            for i, answer in zip(todo, answers, strict=True):
                if isinstance(answer, NoScriptError):
                    missing.append(i)
                elif isinstance(answer, Exception):
                    raise answer
                else:
                    replies[i] = answer
            if not missing:
                return replies
            for script in {calls[i][0] for i in missing}:
                await self.client.script_load(script.source)
            todo = missing
        raise NoScriptError(f"scripts still missing after {NOSCRIPT_ATTEMPTS} loads")

    async def _pipelined(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """One write of all commands, then every reply; error replies are returned.

        The same exchange as a redis-py Pipeline without its per-command
        bookkeeping (command stack, response callbacks, two parse layers),
        which cost more CPU than the scripts take in Redis. A connection
        that failed half-way is dropped, so no reply is left unread on it.
        The connection's socket timeout bounds reading all the replies, not
        each one: a timeout context per reply was a tenth of a sweep tick.
        """
        pool = self.client.connection_pool
        # untyped in redis-py 8.1
        conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(pack(commands))
            replies: list[Any] = []
            async with asyncio.timeout(conn.socket_timeout):
                for _ in commands:
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as error:  # read whole; the next reply follows
                        replies.append(error)
        except BaseException:
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        return replies

    async def _checked(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """`_pipelined`, raising the first error reply (after reading them all)."""
        if not commands:
            return []
        replies = await self._pipelined(commands)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        if not wanted:
            return {}
        order = []
        calls = []
        for subject, ids in wanted.items():
            id_list = list(ids)
            order.append((subject, id_list))
            # the window is only read when ids are asked about (not by the sweeper)
            calls.append(
                _call(
                    SNAPSHOT,
                    (keys.state(subject), keys.alias(subject), keys.outbox(subject)),
                    (b"1" if id_list else b"0",),
                )
            )
        replies = await self._run(calls)
        result = {}
        for (subject, id_list), reply in zip(order, replies, strict=True):
            version, state, window, alias, box = reply
            seen: frozenset[str] = frozenset()
            if id_list and window:
                seen = frozenset(i for i in id_list if in_window(id_digest(i), window))
            result[subject] = Snapshot(
                subject=subject,
                state=state,
                version=int(version or 0),
                alias=alias.decode() if alias is not None else None,
                seen=seen,
                outbox={box[i].decode(): box[i + 1] for i in range(0, len(box), 2)},
            )
        return result

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        if not commits:
            return set()
        calls = []
        window = self.seen_window * DIGEST_SIZE
        for c in commits:
            args: list[Any] = [
                c.expected_version,
                c.state,
                window_field(c.event_ids, self.seen_window),
                window,
            ]
            for message_id, blob in c.outbox.items():
                args += [message_id, blob]
            calls.append(
                _call(
                    COMMIT,
                    (keys.state(c.subject), keys.outbox(c.subject), keys.alias(c.subject)),
                    args,
                )
            )
        replies = await self._run(calls)
        lost = {c.subject for c, reply in zip(commits, replies, strict=True) if int(reply) < 0}
        # the due index, one command per shard and kind (the last commit of a lead decides)
        await self.index_due({c.subject: c.due_at for c in commits if c.subject not in lost})
        return lost

    async def index_due(self, due_at: Mapping[str, float | None]) -> None:
        adds: dict[int, dict[str, float]] = {}
        removes: dict[int, list[str]] = {}
        for subject, at in due_at.items():
            shard = keys.shard_of(subject, self.due_shards)
            if at is None:
                removes.setdefault(shard, []).append(subject)
            else:
                adds.setdefault(shard, {})[subject] = at
        commands: list[tuple[Any, ...]] = []
        for shard, members in adds.items():
            pairs = [item for subject, at in members.items() for item in (at, subject)]
            commands.append(("ZADD", keys.due_shard(shard), *pairs))
        for shard, subjects in removes.items():
            commands.append(("ZREM", keys.due_shard(shard), *subjects))
        await self._checked(commands)

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        await self._checked(
            [("HDEL", keys.outbox(subject), *ids) for subject, ids in published.items() if ids]
        )

    async def pending_outboxes(self) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        async for key in self.client.scan_iter(match=keys.OUTBOX_PATTERN, count=1000):
            text = key.decode()
            subject = text[len(keys.PREFIX) + 2 : -len("}:outbox")]
            box = cast("dict[bytes, bytes]", await self.client.hgetall(key))
            if box:
                yield subject, {k.decode(): v for k, v in box.items()}

    async def due(self, now: float, limit: int) -> dict[str, float]:
        replies = await self._checked(
            [
                (
                    "ZRANGEBYSCORE",
                    keys.due_shard(shard),
                    "-inf",
                    now,
                    "WITHSCORES",
                    "LIMIT",
                    0,
                    limit,
                )
                for shard in range(self.due_shards)
            ]
        )
        found: dict[str, float] = {}
        for reply in replies:
            # RESP3 (redis-py 8's default) pairs member and score; RESP2 is flat
            flat = not (reply and isinstance(reply[0], list))
            pairs = zip(reply[::2], reply[1::2], strict=True) if flat else reply
            for member, score in pairs:
                found[member.decode()] = float(score)
        return found

    async def detach(self, anonymous_id: str, lead_id: str) -> bytes | None:
        (blob,) = await self._run(
            [
                _call(
                    DETACH,
                    (
                        keys.state(anonymous_id),
                        keys.alias(anonymous_id),
                        keys.detached(anonymous_id),
                    ),
                    (lead_id,),
                )
            ]
        )
        await self.client.zrem(keys.due(anonymous_id, self.due_shards), anonymous_id)
        return blob if blob is None else bytes(blob)

    async def forget_detached(self, anonymous_id: str) -> None:
        await self.client.delete(keys.detached(anonymous_id))

    async def ping(self) -> None:
        await self.client.ping()

    async def close(self) -> None:
        await self.client.aclose()
