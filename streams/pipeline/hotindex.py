"""The hot-leads index kept honest by the worker, on its own schedule.

The index ranks known leads by their engagement at their last commit, and
engagement decays: a lead that cooled keeps its old rank until its next
event. Readers (the hot page) write nothing, so each worker repairs the
entries of the leads its partitions own every few sweeps: a lead whose state
is gone (expired, merged away) leaves the index, the others get their
engagement at now. An entry whose state cannot be read stays as it is.
"""

from __future__ import annotations

from collections.abc import Collection

from leadpulse.scoring import ScoringModel, engagement
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.store import HOT_SIZE, LeadStore, decode_state
from leadpulse.streams.store.redis.keys import shard_of


async def repair_hot(
    store: LeadStore, model: ScoringModel, now: float, shards: Collection[int]
) -> tuple[int, int]:
    """Repair the index entries of leads in `shards`; returns (dropped, rescored)."""
    owned = set(shards)
    leads = [
        lead for lead, _ in await store.hot(HOT_SIZE) if shard_of(lead, store.partitions) in owned
    ]
    if not leads:
        return 0, 0
    snaps = await store.peek(leads)
    gone: list[str] = []
    scores: dict[str, float] = {}
    for lead in leads:
        blob = snaps[lead].state
        if blob is None:
            gone.append(lead)
            continue
        try:
            scores[lead] = engagement(decode_state(blob, subject=lead), now, model)
        except CorruptStateError:
            continue  # shown as unreadable by the page; its events go to the DLQ
    if gone:
        await store.drop_hot(gone)
    if scores:
        await store.rescore_hot(scores)
    return len(gone), len(scores)
