"""The Redis LeadStore: key names, Lua scripts, pipelined wire code."""

from streams.store.redis.store import RedisLeadStore, connect
from streams.store.redis.wire import id_digest, in_window, lead_fields, pack, window_field

__all__ = [
    "RedisLeadStore",
    "connect",
    "id_digest",
    "in_window",
    "lead_fields",
    "pack",
    "window_field",
]
