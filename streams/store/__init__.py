"""Lead state storage: the `LeadStore` port, its memory fake, the state codec.

The Redis implementation lives in `streams.store.redis`; both pass one
contract suite.
"""

from streams.store.base import SEEN_WINDOW, Commit, LeadStore, Snapshot
from streams.store.codec import decode_state, encode_state
from streams.store.memory import MemoryLeadStore

__all__ = [
    "SEEN_WINDOW",
    "Commit",
    "LeadStore",
    "MemoryLeadStore",
    "Snapshot",
    "decode_state",
    "encode_state",
]
