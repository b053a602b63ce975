"""Lead state storage: the `LeadStore` port, its memory fake, the state codec.

The Redis implementation lives in `streams.store.redis`; both stores pass one
contract suite (tests/integration/test_store_contract.py). Stores are sharded
by the events topic's Kafka partitions, expire anonymous visitors after
inactivity, and keep each partition's progress and watermark; the codec writes
a versioned state encoding and reads the previous and newer ones.
"""

from leadpulse.streams.store.base import (
    ANONYMOUS_TTL,
    HOT_SIZE,
    SEEN_WINDOW,
    Commit,
    LeadStore,
    Snapshot,
    Watermark,
)
from leadpulse.streams.store.codec import FORMAT, decode_state, encode_state
from leadpulse.streams.store.memory import MemoryLeadStore

__all__ = [
    "ANONYMOUS_TTL",
    "FORMAT",
    "HOT_SIZE",
    "SEEN_WINDOW",
    "Commit",
    "LeadStore",
    "MemoryLeadStore",
    "Snapshot",
    "Watermark",
    "decode_state",
    "encode_state",
]
