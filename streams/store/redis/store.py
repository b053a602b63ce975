"""LeadStore on Redis: one Lua script per lead update, pipelined per batch."""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import NoScriptError, ResponseError

from streams.settings import Settings
from streams.store.base import SEEN_WINDOW, Commit, Snapshot
from streams.store.redis import keys
from streams.store.redis.scripts import COMMIT, DETACH, NOSCRIPT_ATTEMPTS, SNAPSHOT, Call, call
from streams.store.redis.wire import DIGEST_SIZE, id_digest, in_window, pack, window_field


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
                call(
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
                call(
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
                call(
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
