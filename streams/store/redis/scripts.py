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


def call(script: LuaScript, keys: Sequence[str], args: Sequence[Any]) -> Call:
    return script, (len(keys), *keys, *args)
