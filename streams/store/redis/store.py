"""LeadStore on Redis: one Lua script per lead update, pipelined per batch.

Every call goes through `_pipelined`, which is bounded by the client's socket
timeout (`DEFAULT_TIMEOUT` when the client has none): a stalled Redis fails the
call, the worker retries the batch, instead of the worker hanging forever.
"""

from __future__ import annotations

import asyncio
import math
import ssl
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import NoScriptError, ResponseError

from leadpulse.streams.settings import Settings
from leadpulse.streams.store.base import (
    ANONYMOUS_TTL,
    HOT_SIZE,
    SEEN_WINDOW,
    Commit,
    Snapshot,
    Watermark,
)
from leadpulse.streams.store.models import (
    DRAINING,
    FENCED,
    Fence,
    FencedError,
    ModelRecord,
    decode_model_record,
    encode_model_record,
)
from leadpulse.streams.store.redis import keys
from leadpulse.streams.store.redis.keys import DEFAULT as DEFAULT_KEYS
from leadpulse.streams.store.redis.keys import Keys
from leadpulse.streams.store.redis.scripts import (
    ADVANCE,
    COMMIT,
    DETACH,
    NOSCRIPT_ATTEMPTS,
    RECORD_MODEL,
    SNAPSHOT,
    Call,
    call,
)
from leadpulse.streams.store.redis.wire import DIGEST_SIZE, id_digest, in_window, pack, window_field

DEFAULT_TIMEOUT: float = Settings.model_fields["redis_socket_timeout"].default
"""Seconds a call may take when the client was built without a socket timeout."""
SCAN_COUNT = 1000
"""Members asked for per SSCAN of a pending-outbox shard."""


def connect(settings: Settings) -> aioredis.Redis:
    """A client for the configured Redis: bounded timeouts and pool, TLS with rediss://."""
    # redis-py 8.1's asyncio from_url() sets no retry: without one, the first
    # command after a Redis restart fails instead of reconnecting.
    options: dict[str, Any] = {
        "decode_responses": False,
        "health_check_interval": 10,
        "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), 3),
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "max_connections": settings.redis_max_connections,
    }
    if settings.redis_password is not None:
        options["password"] = settings.redis_password.get_secret_value()
    if settings.redis_url.startswith("rediss://") and settings.redis_tls_ca_file:
        options["ssl_ca_certs"] = str(settings.redis_tls_ca_file)
        options["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    client: aioredis.Redis = aioredis.Redis.from_url(settings.redis_url, **options)
    return client


def _ttl_ms(seconds: float | None, name: str) -> bytes:
    """A TTL as the scripts take it: milliseconds, b"0" for none."""
    if seconds is None:
        return b"0"
    if not seconds > 0:
        raise ValueError(f"{name} must be positive or None")
    return str(max(1, round(seconds * 1000))).encode()


REINDEX_PAGE = 5000
"""Due entries read (and moved) per round trip while re-indexing."""
MAX_PARTITIONS = 1024
"""The most partitions settings allow: re-indexing looks at that many shards."""


class RedisLeadStore:
    """LeadStore backed by Redis >= 6.2; every key of a lead shares its hash tag.

    A lead is one hash (see `keys.state`): version, state blob and its seen
    window, the digests of the last `seen_window` event ids, oldest first.
    The due and pending-outbox indexes have one key per partition of the
    events topic (`partitions`); see `streams.store.redis.keys`.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        partitions: int = 12,
        seen_window: int = SEEN_WINDOW,
        anonymous_ttl: float | None = ANONYMOUS_TTL,
        known_ttl: float | None = None,
        hot_size: int = HOT_SIZE,
        keys: Keys = DEFAULT_KEYS,
    ) -> None:
        if seen_window < 1:
            raise ValueError("seen_window must be at least 1")
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if hot_size < 1:
            raise ValueError("hot_size must be at least 1")
        self.client = client
        self.keys = keys
        """The key names of this deployment (its `LEADPULSE_REDIS_PREFIX`)."""
        self.hot_size = hot_size
        self.partitions = partitions
        self.seen_window = seen_window
        self.anonymous_ttl = anonymous_ttl
        self.known_ttl = known_ttl
        self._anonymous_ms = _ttl_ms(anonymous_ttl, "anonymous_ttl")
        self._known_ms = _ttl_ms(known_ttl, "known_ttl")
        configured = client.connection_pool.connection_kwargs.get("socket_timeout")
        self.timeout: float = configured or DEFAULT_TIMEOUT
        """Seconds one exchange (connect, write, every reply) may take."""

    @classmethod
    def from_settings(cls, settings: Settings, namespace: str | None = None) -> RedisLeadStore:
        """The worker's store: its client, partitions and expiry, all from settings.

        Its keys are those of `namespace` (a model's namespace, see
        `streams.store.namespaces`), by default the deployment prefix's own.
        """
        return cls(
            connect(settings),
            partitions=settings.partitions,
            anonymous_ttl=settings.anonymous_ttl,
            known_ttl=settings.known_ttl,
            keys=Keys(namespace or settings.redis_prefix),
        )

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
            scripts = {calls[i][0].sha: calls[i][0] for i in missing}
            await self._checked([("SCRIPT", "LOAD", s.source) for s in scripts.values()])
            todo = missing
        raise NoScriptError(f"scripts still missing after {NOSCRIPT_ATTEMPTS} loads")

    async def _pipelined(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """One write of all commands, then every reply; error replies are returned.

        The same exchange as a redis-py Pipeline without its per-command
        bookkeeping (command stack, response callbacks, two parse layers),
        which cost more CPU than the scripts take in Redis. A connection
        that failed half-way is dropped, so no reply is left unread on it.
        One timeout bounds the whole exchange (taking a connection, which may
        connect, the write and all the replies), not each reply: a timeout
        context per reply was a tenth of a sweep tick.
        """
        pool = self.client.connection_pool
        async with asyncio.timeout(self.timeout):
            # untyped in redis-py 8.1
            conn: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await conn.send_packed_command(pack(commands))
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as error:  # read whole; the next reply follows
                        replies.append(error)
            except BaseException:
                # nowait: closing must not wait on the peer that stalled
                await conn.disconnect(nowait=True)
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

    async def peek(self, subjects: Collection[str]) -> dict[str, Snapshot]:
        return await self._read(dict.fromkeys(subjects, ()), alias_ttl=b"0")

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        return await self._read(wanted, alias_ttl=self._anonymous_ms)

    async def _read(
        self, wanted: Mapping[str, Collection[str]], *, alias_ttl: bytes
    ) -> dict[str, Snapshot]:
        """One SNAPSHOT script per subject; an alias TTL of ``0`` leaves TTLs alone."""
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
                    (self.keys.state(subject), self.keys.alias(subject), self.keys.outbox(subject)),
                    (b"1" if id_list else b"0", alias_ttl),
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
        """The scripts, then one pipeline for the due and pending-outbox indexes.

        A crash in between leaves the indexes behind; the events were not
        recorded as processed yet, so they are re-delivered and their snapshot
        (which shows the outbox, published then) repairs it.
        """
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
                self._anonymous_ms if c.anonymous else self._known_ms,
            ]
            for message_id, blob in c.outbox.items():
                args += [message_id, blob]
            calls.append(
                call(
                    COMMIT,
                    (
                        self.keys.state(c.subject),
                        self.keys.outbox(c.subject),
                        self.keys.alias(c.subject),
                    ),
                    args,
                )
            )
        replies = await self._run(calls)
        won = [int(reply) >= 0 for reply in replies]
        lost = {c.subject for c, ok in zip(commits, won, strict=True) if not ok}
        # the indexes live in other slots: one follow-up pipeline, one command per
        # shard and kind (the last commit of a lead decides its due time)
        boxed = {c.subject for c, ok in zip(commits, won, strict=True) if ok and c.outbox}
        await self._checked(
            [
                *self._due_commands(
                    {c.subject: c.due_at for c in commits if c.subject not in lost}
                ),
                *self._pending_adds(boxed),
                *self._hot_commands(
                    {
                        c.subject: c.hot
                        for c in commits
                        if c.hot is not None and c.subject not in lost
                    }
                ),
            ]
        )
        return lost

    def _hot_commands(self, scores: Mapping[str, float]) -> list[tuple[Any, ...]]:
        """One ZADD of the batch's leads and one trim to the `hot_size` highest."""
        if not scores:
            return []
        pairs = [item for lead, score in scores.items() for item in (score, lead)]
        return [
            ("ZADD", self.keys.hot, *pairs),
            ("ZREMRANGEBYRANK", self.keys.hot, 0, -self.hot_size - 1),
        ]

    async def hot(self, limit: int) -> list[tuple[str, float]]:
        if limit < 1:
            return []
        (reply,) = await self._checked(
            [("ZRANGE", self.keys.hot, 0, limit - 1, "REV", "WITHSCORES")]
        )
        # RESP3 (redis-py 8's default) pairs member and score; RESP2 is flat
        flat = not (reply and isinstance(reply[0], list))
        pairs = zip(reply[::2], reply[1::2], strict=True) if flat else reply
        return [(member.decode(), float(score)) for member, score in pairs]

    async def drop_hot(self, leads: Collection[str]) -> None:
        if leads:
            await self._checked([("ZREM", self.keys.hot, *leads)])

    async def rescore_hot(self, scores: Mapping[str, float]) -> None:
        if scores:
            pairs = [item for lead, score in scores.items() for item in (score, lead)]
            await self._checked([("ZADD", self.keys.hot, "XX", *pairs)])

    async def index_due(self, due_at: Mapping[str, float | None]) -> None:
        await self._checked(self._due_commands(due_at))

    def _due_commands(self, due_at: Mapping[str, float | None]) -> list[tuple[Any, ...]]:
        adds: dict[int, list[Any]] = {}
        removes: dict[int, list[str]] = {}
        partitions = self.partitions
        for subject, at in due_at.items():
            shard = keys.shard_of(subject, partitions)
            if at is None:
                removes.setdefault(shard, []).append(subject)
            else:
                adds.setdefault(shard, []).extend((at, subject))
        commands: list[tuple[Any, ...]] = []
        for shard, pairs in adds.items():
            commands.append(("ZADD", self.keys.due_shard(shard), *pairs))
        for shard, subjects in removes.items():
            commands.append(("ZREM", self.keys.due_shard(shard), *subjects))
        return commands

    def _pending_adds(self, subjects: Iterable[str]) -> list[tuple[Any, ...]]:
        return [
            ("SADD", self.keys.pending(shard), *members)
            for shard, members in self._by_shard(subjects).items()
        ]

    def _by_shard(self, subjects: Iterable[str]) -> dict[int, list[str]]:
        shards: dict[int, list[str]] = {}
        for subject in subjects:
            shards.setdefault(keys.shard_of(subject, self.partitions), []).append(subject)
        return shards

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        """HDEL the published ids; a lead whose outbox is then empty leaves the index.

        One pipeline: the leads leave their pending shards first, then each
        outbox loses the published ids and reports what is left; a lead with
        messages left (a commit added some since they were read) is put back.
        A commit writes its outbox before it adds its lead to the index, so a
        commit racing with this either is seen by the count or adds the lead
        after the SREM. Not atomic (the index is in other slots): a worker
        crash before the put-back leaves such a lead out of the index until
        it is added again; its messages are still published, from the
        snapshot, the next time the lead is processed.
        """
        subjects = [subject for subject, ids in published.items() if ids]
        if not subjects:
            return
        by_shard = self._by_shard(subjects)
        replies = await self._checked(
            [
                *(
                    ("SREM", self.keys.pending(shard), *members)
                    for shard, members in by_shard.items()
                ),
                *(
                    command
                    for s in subjects
                    for command in (
                        ("HDEL", self.keys.outbox(s), *published[s]),
                        ("HLEN", self.keys.outbox(s)),
                    )
                ),
            ]
        )
        left = [s for s, n in zip(subjects, replies[len(by_shard) + 1 :: 2], strict=True) if n]
        await self._checked(self._pending_adds(left))

    async def _unindex(self, shard: int, subjects: Sequence[str]) -> None:
        """Take leads whose outbox looked empty out of a pending shard, race-free.

        The same order as `clear_outbox`: SREM first, then count, and put back
        a lead that a commit gave messages in between.
        """
        replies = await self._checked(
            [
                ("SREM", self.keys.pending(shard), *subjects),
                *(("HLEN", self.keys.outbox(s)) for s in subjects),
            ]
        )
        back = [s for s, n in zip(subjects, replies[1:], strict=True) if n]
        if back:
            await self._checked([("SADD", self.keys.pending(shard), *back)])

    async def pending_outboxes(
        self, shards: Collection[int]
    ) -> AsyncIterator[tuple[str, dict[str, bytes]]]:
        """SSCAN each shard's pending set; stale members (empty outbox) are removed."""
        for shard in shards:
            key = self.keys.pending(shard)
            cursor: Any = 0
            done: set[bytes] = set()  # SSCAN may return a member twice
            while True:
                ((cursor, members),) = await self._checked(
                    [("SSCAN", key, cursor, "COUNT", SCAN_COUNT)]
                )
                batch = [m for m in members if m not in done]
                done.update(batch)
                if batch:
                    subjects = [m.decode() for m in batch]
                    boxes = await self._checked(
                        [("HGETALL", self.keys.outbox(s)) for s in subjects]
                    )
                    stale = []
                    for subject, box in zip(subjects, boxes, strict=True):
                        pairs = _pairs(box)
                        if pairs:
                            yield subject, {k.decode(): v for k, v in pairs}
                        else:
                            stale.append(subject)
                    if stale:
                        await self._unindex(shard, stale)
                if int(cursor) == 0:
                    break

    async def pending_count(self, shards: Collection[int]) -> int:
        """SCARD of each shard's pending set, in one pipeline."""
        if not shards:
            return 0
        counts = await self._checked([("SCARD", self.keys.pending(shard)) for shard in shards])
        return sum(int(n) for n in counts)

    async def reindex(self) -> int:
        """Rebuild the due and pending-outbox indexes if they were built for another layout.

        The previous release sharded its due index by CRC-32 into 16 shards and
        found outboxes by scanning the keyspace; a change of the partition count
        moves leads between shards too. Entries in a wrong shard are moved to
        their own (an entry already there, written since, is kept), and every
        outbox is entered in its shard's pending set; then the layout is
        recorded, so later starts skip this. Idempotent: workers starting
        together may all run it. Returns how many entries moved or were added.
        """
        wanted = keys.layout_id(self.partitions).encode()
        (current,) = await self._checked([("GET", self.keys.layout)])
        if current == wanted:
            return 0
        changed = await self._move_legacy_keys()
        # any shard an earlier layout may have used: 16 CRC-32 shards, or up to the
        # largest partition count settings allow; one pipeline asks all their sizes
        shards = range(max(keys.PREVIOUS_DUE_SHARDS, self.partitions, MAX_PARTITIONS))
        sizes = await self._checked([("ZCARD", self.keys.due_shard(n)) for n in shards])
        for shard, size in zip(shards, sizes, strict=True):
            if int(size):
                changed += await self._rehome_due(shard, int(size))
        async for key in self.client.scan_iter(match=self.keys.outbox_pattern, count=SCAN_COUNT):
            subject = self.keys.subject_of_outbox(key.decode())
            home = self.keys.pending(keys.shard_of(subject, self.partitions))
            await self._checked([("SADD", home, subject)])
            changed += 1
        await self._checked([("SET", self.keys.layout, wanted)])
        return changed

    async def subjects(self, chunk: int = 500) -> AsyncIterator[list[str]]:
        """Every subject with a state in this namespace, `chunk` at a time (a SCAN: each
        subject at least once, those written meanwhile maybe not)."""
        found: set[str] = set()
        batch: list[str] = []
        async for raw in self.client.scan_iter(match=self.keys.state_pattern, count=SCAN_COUNT):
            key = raw.decode()
            if "{dlv:" in key:
                continue
            subject = self.keys.subject_of_state(key)
            if subject in found:
                continue
            found.add(subject)
            batch.append(subject)
            if len(batch) >= chunk:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _move_legacy_keys(self) -> int:
        """Give keys of ids with braces the names `keys.tag` writes (once, at upgrade).

        DUMP/RESTORE, not RENAME: the old and the new name are in different
        cluster slots. A new key already there (written since) wins. Returns
        how many keys moved.
        """
        moved = 0
        async for raw in self.client.scan_iter(match=self.keys.legacy_pattern, count=SCAN_COUNT):
            names = self.keys.legacy_moves(raw.decode())
            if names is None:
                continue
            old, new = names
            blob, ttl = await self._checked([("DUMP", old), ("PTTL", old)])
            if blob is None:
                continue  # gone meanwhile (expired)
            restored = await self._pipelined([("RESTORE", new, max(0, int(ttl)), blob)])
            if isinstance(restored[0], Exception) and "BUSYKEY" not in str(restored[0]):
                raise restored[0]
            await self._checked([("DEL", old)])
            moved += 1
        return moved

    async def _rehome_due(self, shard: int, size: int) -> int:
        """Move the entries of one due shard that belong to another shard."""
        key = self.keys.due_shard(shard)
        moves: list[tuple[Any, ...]] = []
        for start in range(0, size, REINDEX_PAGE):
            (page,) = await self._checked(
                [("ZRANGE", key, start, start + REINDEX_PAGE - 1, "WITHSCORES")]
            )
            # RESP3 (redis-py 8's default) pairs member and score; RESP2 is flat
            flat = not (page and isinstance(page[0], list))
            pairs = zip(page[::2], page[1::2], strict=True) if flat else page
            for member, score in pairs:
                home = keys.shard_of(member.decode(), self.partitions)
                if home != shard:
                    moves.append(("ZADD", self.keys.due_shard(home), "NX", float(score), member))
                    moves.append(("ZREM", key, member))
        for at in range(0, len(moves), 2 * REINDEX_PAGE):
            await self._checked(moves[at : at + 2 * REINDEX_PAGE])
        return len(moves) // 2

    async def due(self, now: float, limit: int, shards: Collection[int]) -> dict[str, float]:
        replies = await self._checked(
            [
                (
                    "ZRANGEBYSCORE",
                    self.keys.due_shard(shard),
                    "-inf",
                    now,
                    "WITHSCORES",
                    "LIMIT",
                    0,
                    limit,
                )
                for shard in shards
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

    async def detach(self, links: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """One DETACH script per link in one pipeline, then the due entries go.

        The ZREMs follow the scripts (the due index is in another slot); a
        crash in between is repaired by the redo, which returns the detached
        state again and so removes the entry again.
        """
        if not links:
            return []
        ttl = self._anonymous_ms
        replies = await self._run(
            [
                call(
                    DETACH,
                    (self.keys.state(anon), self.keys.alias(anon), self.keys.detached(anon)),
                    (lead, ttl),
                )
                for anon, lead in links
            ]
        )
        blobs = [None if reply is None else bytes(reply) for reply in replies]
        moved = {
            anon: None for (anon, _), blob in zip(links, blobs, strict=True) if blob is not None
        }
        commands = self._due_commands(moved)
        if moved:  # an id merged away is no lead of its own any more
            commands.append(("ZREM", self.keys.hot, *moved))
        await self._checked(commands)
        return blobs

    async def forget_detached(self, anonymous_ids: Collection[str]) -> None:
        # one DEL per key: the keys are in different cluster slots
        await self._checked([("DEL", self.keys.detached(anon)) for anon in anonymous_ids])

    async def record_progress(self, topic: str, offsets: Mapping[int, int]) -> None:
        if offsets:
            pairs = [item for partition, offset in offsets.items() for item in (partition, offset)]
            keys = (self.keys.progress(topic), self.keys.fence(topic))
            (recorded,) = await self._run([call(ADVANCE, keys, pairs)])
            if recorded == 0:
                raise FencedError(
                    f"namespace {self.keys.prefix} is switched away from: progress not recorded"
                )

    async def fence(self, topic: str) -> Fence | None:
        (reply,) = await self._checked([("HGETALL", self.keys.fence(topic))])
        fields = {bytes(k).decode(): bytes(v).decode() for k, v in _pairs(reply)}
        phase = fields.get("phase")
        if phase not in (DRAINING, FENCED):
            return None
        return Fence(phase, fields.get("to", ""), float(fields.get("at", "0")))

    async def set_fence(self, topic: str, fence: Fence | None) -> None:
        key = self.keys.fence(topic)
        if fence is None:
            await self._checked([("DEL", key)])
        else:
            await self._checked(
                [("HSET", key, "phase", fence.phase, "to", fence.to, "at", repr(fence.at))]
            )

    async def progress(self, topic: str) -> dict[int, int]:
        (reply,) = await self._checked([("HGETALL", self.keys.progress(topic))])
        return {int(partition): int(offset) for partition, offset in _pairs(reply)}

    async def publish_watermarks(self, topic: str, marks: Mapping[int, Watermark]) -> None:
        # repr: the shortest text that reads back as the same float. The live
        # times go to a hash of their own: a release that reads only the marks
        # keeps reading them during a rolling upgrade.
        commands: list[tuple[Any, ...]] = []
        if marks:
            pairs = [item for p, mark in marks.items() for item in (p, repr(mark.at))]
            commands.append(("HSET", self.keys.watermarks(topic), *pairs))
        live = [
            item for p, m in marks.items() if m.live_at is not None for item in (p, repr(m.live_at))
        ]
        if live:
            commands.append(("HSET", self.keys.watermarks_live(topic), *live))
        if commands:
            await self._checked(commands)

    async def watermarks(self, topic: str) -> dict[int, Watermark]:
        marks, live = await self._checked(
            [
                ("HGETALL", self.keys.watermarks(topic)),
                ("HGETALL", self.keys.watermarks_live(topic)),
            ]
        )
        live_at = {int(partition): float(at) for partition, at in _pairs(live)}
        return {int(p): Watermark(float(at), live_at.get(int(p))) for p, at in _pairs(marks)}

    async def recorded_model(self) -> ModelRecord | None:
        (blob,) = await self._checked([("GET", self.keys.model)])
        return None if blob is None else decode_model_record(blob)

    async def record_model(
        self, record: ModelRecord, *, replacing: str | None
    ) -> ModelRecord | None:
        args = (replacing or "", encode_model_record(record))
        (blob,) = await self._run([call(RECORD_MODEL, (self.keys.model,), args)])
        return None if blob is None else decode_model_record(blob)

    async def ping(self) -> None:
        await self._checked([("PING",)])

    async def close(self) -> None:
        await self.client.aclose()


def _pairs(reply: Any) -> list[tuple[Any, Any]]:
    """HGETALL's reply as (field, value) pairs: a map over RESP3, flat over RESP2."""
    if isinstance(reply, dict):
        return list(reply.items())
    return list(zip(reply[::2], reply[1::2], strict=True))
