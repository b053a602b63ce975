"""The Lua scripts of the Redis store, called by SHA1 (EVALSHA).

Each script touches the keys of one lead (one hash tag), so it runs
atomically on Redis Cluster too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# KEYS: lead hash, outbox hash, alias string
# ARGV: expected version, state blob, new id digests (concatenated), window size in
#       bytes (ids * DIGEST_SIZE), TTL of the lead hash in ms (0 = none),
#       outbox id/blob pairs...
# The TTL is set on every commit: an anonymous visitor expires after inactivity;
# PERSIST stops a lead that was anonymous and became known from expiring.
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
if ARGV[5] == '0' then
  redis.call('PERSIST', KEYS[1])
else
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
for i = 6, #ARGV, 2 do
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
end
return v + 1
"""

# KEYS: lead hash, alias string, outbox hash
# ARGV: '1' to read the seen window too, TTL of an alias in ms (0 = none)
# One call instead of three commands per lead: on a pipeline the client's cost
# per command dominates a snapshot. Reading an alias means its visitor is
# active, so the alias's inactivity TTL starts again.
_SNAPSHOT = """
local got
if ARGV[1] == '1' then
  got = redis.call('HMGET', KEYS[1], 'v', 's', 'w')
else
  got = redis.call('HMGET', KEYS[1], 'v', 's')
end
local alias = redis.call('GET', KEYS[2])
if alias and ARGV[2] ~= '0' then redis.call('PEXPIRE', KEYS[2], ARGV[2]) end
return {got[1], got[2], got[3] or false, alias, redis.call('HGETALL', KEYS[3])}
"""

# KEYS: anonymous hash, alias string, detached string; ARGV: lead id, TTL in ms (0 = none)
# One merge per visitor: an alias to another lead means that lead owns the
# history (nil, nothing changes); an alias to this lead means a redo after a
# crash (the detached state again, nil once forgotten). The seen window (field
# w) stays: events already applied to the anonymous id must not be credited to
# the lead again when they are re-delivered.
_DETACH = """
local owner = redis.call('GET', KEYS[2])
if owner then
  if owner ~= ARGV[1] then return false end
  return redis.call('GET', KEYS[3])
end
local ttl = ARGV[2]
if ttl == '0' then
  redis.call('SET', KEYS[2], ARGV[1])
else
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
end
local blob = redis.call('HGET', KEYS[1], 's')
if not blob then return false end
if ttl == '0' then
  redis.call('SET', KEYS[3], blob)
else
  redis.call('SET', KEYS[3], blob, 'PX', ttl)
end
redis.call('HDEL', KEYS[1], 'v', 's')
if ttl ~= '0' then redis.call('PEXPIRE', KEYS[1], ttl) end
return blob
"""

# KEYS: progress hash, fence hash (same hash tag); ARGV: partition/offset pairs
# Returns 0, recording nothing, when the namespace is fenced (model apply switched
# the workers away from it: its progress is the switch point). Max-only: a batch
# that outlived a rebalance (its partition has a new owner that went further)
# must never move the record back, which would look like Redis losing data and
# restart a worker for nothing.
_ADVANCE = """
if redis.call('HGET', KEYS[2], 'phase') == 'fenced' then return 0 end
for i = 1, #ARGV, 2 do
  local known = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '-1')
  if tonumber(ARGV[i + 1]) > known then redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
end
return 1
"""

# KEYS: model record string; ARGV: expected version ('' = no record), new record (JSON)
# Compare-and-set on the recorded version: the record stored now is returned,
# the new one or the one another worker wrote first. A record whose version
# cannot be read is never overwritten here.
_RECORD_MODEL = """
local current = redis.call('GET', KEYS[1])
local version = ''
if current then
  local ok, record = pcall(cjson.decode, current)
  if ok and type(record) == 'table' and type(record['version']) == 'string' then
    version = record['version']
  else
    return current
  end
end
if version ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2])
return ARGV[2]
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
ADVANCE = LuaScript(_ADVANCE)
RECORD_MODEL = LuaScript(_RECORD_MODEL)

Call = tuple[LuaScript, Sequence[Any]]
"""A script and its EVALSHA arguments after the SHA: numkeys, keys..., args..."""
NOSCRIPT_ATTEMPTS = 3
"""Rounds of loading scripts the server lost (restart, SCRIPT FLUSH) before giving up."""


def call(script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Call:
    return script, (len(keys), *keys, *args)
