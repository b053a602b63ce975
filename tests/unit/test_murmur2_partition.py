"""The one key -> partition mapping is aiokafka's default partitioner's."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from leadpulse.streams.kafka.partitioner import default_partition, murmur2


def test_murmur2_equals_aiokafka_for_every_length_and_byte() -> None:
    rng = random.Random(5)
    keys = [b"", bytes(range(256)), b"\xff" * 9, "été-日本".encode()]
    keys += [rng.randbytes(rng.randrange(0, 70)) for _ in range(20_000)]
    for key in keys:
        assert murmur2(key) == aiokafka_murmur2(key), key


def test_default_partition_equals_aiokafka_default_partitioner() -> None:
    rng = random.Random(6)
    for count in (1, 3, 12, 64):
        partitions = list(range(count))
        for _ in range(2_000):
            key = f"user-{rng.randrange(10**6):06d}".encode()
            assert default_partition(key, partitions) == DefaultPartitioner()(
                key, partitions, partitions
            )
