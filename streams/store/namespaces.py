"""A deployment's model namespaces: which one the workers score in, and the apply under way.

A deployment (``LEADPULSE_REDIS_PREFIX``, default ``lp``) keeps its lead
states in one namespace per model: the first is the prefix itself (what
every earlier release wrote), each one `leadpulse model apply` builds is
``<prefix>.m<digest>`` (`keys.namespace_of`). The deployment's own keys
(`Keys.active`, `Keys.namespaces`, `Keys.apply`) say which one is active,
which exist, and how the latest apply is doing (docs/architecture.md#model-apply).

Stored as JSON, ``{"format":1,...}``; keys this release does not know are ignored.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from redis import asyncio as aioredis

from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis.keys import Keys

FORMAT = 1
SCAN_COUNT = 1000
DELETE_CHUNK = 500

R = TypeVar("R", bound=BaseModel)
Phase = Literal["replaying", "draining", "switching", "done", "failed"]
RUNNING: frozenset[str] = frozenset({"replaying", "draining", "switching"})
"""Phases of an apply that has not ended."""
HEARTBEAT_STALE = 30.0
"""Seconds without an update after which a running apply counts as gone (killed)."""


class NamespaceError(ValueError):
    """A deployment record that cannot be read, or a namespace that must not be touched."""


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)


class Active(_Record):
    """The namespace the workers score in since `since`, and what it replaced."""

    namespace: str
    version: str
    since: float
    """Epoch seconds (wall clock) of the switch."""
    previous: str | None = None
    previous_version: str | None = None
    switch: dict[int, int] = {}
    """Per partition, the next offset the new namespace's workers read first (the switch point)."""


class NamespaceInfo(_Record):
    """One namespace of the deployment."""

    namespace: str
    version: str
    created_at: float
    state: Literal["building", "active", "retired"]
    retired_at: float | None = None


class ApplyStatus(_Record):
    """The latest `leadpulse model apply`: where it is, for `model status` and the live page."""

    from_version: str
    to_version: str
    from_namespace: str
    namespace: str
    phase: Phase
    started_at: float
    updated_at: float
    replayed: int = 0
    """Events replayed into the new namespace by this run."""
    target: int = 0
    """Events the new namespace must have read to catch up with the live workers' progress."""
    done_events: int = 0
    """Of `target`, read so far (a resumed apply counts what an earlier run replayed)."""
    lag: int = 0
    """Events the live workers scored that the new namespace has not replayed yet."""
    rescored: int = 0
    """Leads whose stage the rescore changed (published with ``rescore: true``)."""
    message: str = ""
    pid: int | None = None

    @property
    def running(self) -> bool:
        return self.phase in RUNNING and time.time() - self.updated_at < HEARTBEAT_STALE


def _encode(record: BaseModel) -> bytes:
    body = record.model_dump(mode="json")
    return json.dumps({"format": FORMAT, **body}, separators=(",", ":")).encode()


def _decode(kind: type[R], blob: bytes | str, what: str) -> R:
    try:
        return kind.model_validate_json(blob)
    except ValidationError as error:
        raise NamespaceError(f"the deployment's {what} record cannot be read: {error}") from None


class Deployment:
    """The deployment-level keys: active namespace, namespaces, apply status."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys

    @classmethod
    def from_settings(cls, settings: Settings) -> Deployment:
        from leadpulse.streams.store.redis import connect

        return cls(connect(settings), Keys(settings.redis_prefix))

    @property
    def prefix(self) -> str:
        return self.keys.prefix

    async def active(self) -> Active | None:
        """The switch `leadpulse model apply` recorded last; None before any apply."""
        blob = await self.client.get(self.keys.active)
        return None if blob is None else _decode(Active, blob, "active namespace")

    async def active_namespace(self) -> str:
        """The namespace the workers score in: the last apply's, else the prefix itself."""
        active = await self.active()
        return self.prefix if active is None else str(active.namespace)

    async def switch(self, active: Active, *, replacing: str) -> bool:
        """Record `active` if the active namespace is still `replacing`; False if not."""
        script = """
local current = redis.call('GET', KEYS[1])
local name = ARGV[2]
if current then
  local ok, record = pcall(cjson.decode, current)
  if not ok or type(record) ~= 'table' then return 0 end
  name = record['namespace']
end
if name ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[3])
return 1
"""
        done = await self.client.eval(
            script, 1, self.keys.active, replacing, self.prefix, _encode(active)
        )
        return bool(done)

    async def namespaces(self) -> dict[str, NamespaceInfo]:
        raw: dict[Any, Any] = await self.client.hgetall(self.keys.namespaces)
        infos = {}
        for blob in raw.values():
            info = _decode(NamespaceInfo, blob, "namespaces")
            infos[info.namespace] = info
        return dict(sorted(infos.items(), key=lambda item: item[1].created_at))

    async def note(self, info: NamespaceInfo) -> None:
        await self.client.hset(self.keys.namespaces, info.namespace, _encode(info))

    async def namespace_for(self, version: str) -> str | None:
        """The namespace built with `version`, if one is kept."""
        for info in (await self.namespaces()).values():
            if info.version == version:
                return info.namespace
        return None

    async def status(self) -> ApplyStatus | None:
        blob = await self.client.get(self.keys.apply)
        return None if blob is None else _decode(ApplyStatus, blob, "apply status")

    async def write_status(self, status: ApplyStatus) -> None:
        await self.client.set(self.keys.apply, _encode(status))

    async def delete_namespace(self, namespace: str) -> int:
        """Delete every key of `namespace`'s states; the number of keys deleted.

        Refuses (`NamespaceError`) the active namespace and the one a running
        apply builds or switches from. The deliverer's keys and the deployment's
        own, which share the prefix with its first namespace, are kept.
        """
        if namespace == await self.active_namespace():
            raise NamespaceError(f"namespace {namespace} is the active one")
        status = await self.status()
        if (
            status is not None
            and status.running
            and namespace
            in (
                status.namespace,
                status.from_namespace,
            )
        ):
            raise NamespaceError(f"namespace {namespace} is in use by a running model apply")
        keys = Keys(namespace)
        deleted = 0
        batch: list[bytes] = []
        for pattern in keys.namespace_patterns():
            async for key in self.client.scan_iter(match=pattern, count=SCAN_COUNT):
                if b"{dlv:" in key:
                    continue
                batch.append(key)
                if len(batch) >= DELETE_CHUNK:
                    deleted += await self._delete(batch)
                    batch = []
        deleted += await self._delete([*batch, *(k.encode() for k in keys.namespace_keys())])
        await self.client.hdel(self.keys.namespaces, namespace)
        return deleted

    async def _delete(self, keys: list[bytes]) -> int:
        if not keys:
            return 0
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:  # one DEL per key: on a cluster they live in different slots
                pipe.delete(key)
            replies = await pipe.execute()
        return sum(int(r) for r in replies)

    async def close(self) -> None:
        await self.client.aclose()
