"""Kafka's default partitioner, once: the partition of a key, and so a subject's shard.

The store shards its indexes by the partition a subject's events arrive on,
so the shard must be exactly the partition Kafka's default partitioner
(the Java client's, kafka-python's, aiokafka's, Faust's) picks for the key:
murmur2 of the key bytes, positive, modulo the partition count.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence


def partition_of(key: bytes, partitions: int) -> int:
    """The partition (0 .. partitions - 1) the default partitioner sends `key` to."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def default_partition(key: bytes, partitions: Sequence[int]) -> int:
    """The partition aiokafka's (and Kafka's Java) default partitioner picks for `key`."""
    return partitions[partition_of(key, len(partitions))]


def murmur2(data: bytes) -> int:
    """`aiokafka.partitioner.murmur2` (Kafka's ``Utils.murmur2``), the same values, ~3x faster.

    Whole little-endian words are unpacked at once instead of byte by byte.
    """
    length = len(data)
    m = 0x5BD1E995
    h = 0x9747B28C ^ length
    words = length >> 2
    for word in struct.unpack_from(f"<{words}I", data):
        k = (word * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ (((k ^ (k >> 24)) * m) & 0xFFFFFFFF)
    tail = words << 2
    extra = length & 3
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h = ((h ^ data[tail]) * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    return h ^ (h >> 15)
