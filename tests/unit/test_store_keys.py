"""Key names and sharding: a subject's shard is the Kafka partition of its key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from streams.store.redis import keys


def _subjects() -> list[str]:
    rng = random.Random(7)
    made = ["", "a", "lead-42", "ünïcode lead", "漢字", "lead-{1}", "x" * 300]
    made += [f"lead-{i}" for i in range(2000)]
    made += [rng.randbytes(16).hex() for _ in range(2000)]
    made += [
        "".join(chr(rng.randrange(32, 0x3000)) for _ in range(rng.randrange(1, 40)))
        for _ in range(500)
    ]
    return made


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 12, 16, 100, 1024])
def test_shard_is_the_partition_aiokafka_sends_the_key_to(partitions: int) -> None:
    every = list(range(partitions))
    partitioner = DefaultPartitioner()
    for subject in _subjects():
        assert keys.shard_of(subject, partitions) == partitioner(subject.encode(), every, every), (
            subject
        )


def test_shards_spread() -> None:
    counts = [0] * 12
    for i in range(12_000):
        counts[keys.shard_of(f"lead-{i}", 12)] += 1
    assert min(counts) > 800


def test_every_key_of_a_lead_shares_its_hash_tag() -> None:
    lead = "lead-42"
    for key in (keys.state(lead), keys.outbox(lead), keys.alias(lead), keys.detached(lead)):
        assert key.startswith("lp:{lead-42}:")


def test_index_keys_are_tagged_by_shard_and_topic() -> None:
    assert keys.due_shard(3) == "lp:due:{3}"
    assert keys.pending(3) == "lp:pending:{3}"
    assert keys.due("lead-42", 12) == keys.due_shard(keys.shard_of("lead-42", 12))
    assert keys.progress("leadpulse.events") == "lp:progress:{leadpulse.events}"
    assert keys.watermarks("leadpulse.events") == "lp:watermarks:{leadpulse.events}"
    assert keys.watermarks_live("leadpulse.events") == "lp:watermarks-live:{leadpulse.events}"
