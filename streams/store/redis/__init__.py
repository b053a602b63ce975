"""The Redis LeadStore: key names (`keys`), Lua scripts, pipelined wire code."""

from leadpulse.streams.store.redis import keys
from leadpulse.streams.store.redis.store import DEFAULT_TIMEOUT, RedisLeadStore, connect
from leadpulse.streams.store.redis.wire import id_digest, in_window, lead_fields, pack, window_field

__all__ = [
    "DEFAULT_TIMEOUT",
    "RedisLeadStore",
    "connect",
    "id_digest",
    "in_window",
    "keys",
    "lead_fields",
    "pack",
    "window_field",
]
