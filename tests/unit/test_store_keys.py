"""Key names and sharding: a subject's shard is the Kafka partition of its key."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from leadpulse.streams.store.redis import keys


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
    for key in (
        keys.DEFAULT.state(lead),
        keys.DEFAULT.outbox(lead),
        keys.DEFAULT.alias(lead),
        keys.DEFAULT.detached(lead),
    ):
        assert key.startswith("lp:{lead-42}:")


def test_index_keys_are_tagged_by_shard_and_topic() -> None:
    assert keys.DEFAULT.due_shard(3) == "lp:due:{3}"
    assert keys.DEFAULT.pending(3) == "lp:pending:{3}"
    assert keys.DEFAULT.due("lead-42", 12) == keys.DEFAULT.due_shard(keys.shard_of("lead-42", 12))
    assert keys.DEFAULT.progress("leadpulse.events") == "lp:progress:{leadpulse.events}"
    assert keys.DEFAULT.watermarks("leadpulse.events") == "lp:watermarks:{leadpulse.events}"
    assert (
        keys.DEFAULT.watermarks_live("leadpulse.events") == "lp:watermarks-live:{leadpulse.events}"
    )
    assert keys.DEFAULT.model == "lp:model"


# -- ids inside hash tags (issue 15, 1.12) ----------------------------------------------

AWKWARD_IDS = ["}x{", "{", "}", "a}b", "{a}", "%x7b", "50%off", "é" * 100, "漢" * 67, ""]


def crc16_xmodem(data: bytes) -> int:
    """CRC16-CCITT (XMODEM), the checksum Redis Cluster slots are taken from."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def key_slot(key: str) -> int:
    """The cluster slot of `key` by the spec's rule: the first {...} if non-empty."""
    raw = key.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return crc16_xmodem(raw) % 16384


def test_the_crc16_reference_matches_the_cluster_spec_examples() -> None:
    assert crc16_xmodem(b"123456789") == 0x31C3  # the spec's check value
    assert key_slot("{user1000}.following") == key_slot("{user1000}.followers")
    assert key_slot("foo{}{bar}") == crc16_xmodem(b"foo{}{bar}") % 16384
    assert key_slot("foo{{bar}}zap") == crc16_xmodem(b"{bar") % 16384


@pytest.mark.parametrize("subject", AWKWARD_IDS, ids=repr)
def test_every_key_of_any_id_is_in_one_slot(subject: str) -> None:
    named = keys.Keys("lp")
    lead_keys = [f(subject) for f in (named.state, named.outbox, named.alias, named.detached)]
    assert len({key_slot(k) for k in lead_keys}) == 1, lead_keys
    # and the tag is the whole id, not a piece of it: two ids never share keys
    assert keys.untag(lead_keys[0][len("lp:{") : -len("}:state")]) == subject


def test_ids_are_encoded_only_when_they_must_be() -> None:
    # golden: earlier releases wrote these keys, an upgrade must find them
    assert keys.DEFAULT.state("lead-42") == "lp:{lead-42}:state"
    assert keys.DEFAULT.state("50%off") == "lp:{50%off}:state"
    assert keys.DEFAULT.state("ünïcode lead") == "lp:{ünïcode lead}:state"
    # golden: the encoded form of an id with braces, or that looks encoded
    assert keys.DEFAULT.state("}x{") == "lp:{%x7d787b}:state"
    assert keys.DEFAULT.outbox("a}b") == "lp:{%x617d62}:outbox"
    assert keys.DEFAULT.alias("%x7b") == "lp:{%x25783762}:alias"
    assert keys.DEFAULT.subject_of_outbox("lp:{%x617d62}:outbox") == "a}b"
    assert keys.DEFAULT.subject_of_outbox("lp:{lead-42}:outbox") == "lead-42"


def test_keys_of_an_earlier_release_are_recognised_for_the_move() -> None:
    named = keys.Keys("lp")
    assert named.legacy_moves("lp:{a}b}:state") == ("lp:{a}b}:state", "lp:{%x617d62}:state")
    assert named.legacy_moves("lp:{}x{}:outbox") == ("lp:{}x{}:outbox", "lp:{%x7d787b}:outbox")
    assert named.legacy_moves("lp:{a}b}:other") is None
    assert named.legacy_moves("lp:{lead-42}:state") is None  # already its name


@pytest.mark.parametrize("prefix", ["lp", "acme-prod", "v2.model_7", "A" * 32])
def test_every_key_starts_with_the_prefix(prefix: str) -> None:
    named = keys.Keys(prefix)
    made = [
        named.state("l"), named.outbox("l"), named.alias("l"), named.detached("l"),
        named.due_shard(1), named.pending(1), named.hot, named.layout, named.model,
        named.progress("t"),
        named.watermarks("t"), named.watermarks_live("t"), named.delivery_due("d"),
        named.delivery_jobs("d"), named.delivered("d", "w"), named.destination_disabled("d"),
        named.outbox_pattern, named.legacy_pattern,
    ]  # fmt: skip
    assert all(k.startswith(f"{prefix}:") for k in made)


@pytest.mark.parametrize("prefix", ["", "a:b", "a{b}", "a*", "-x", "A" * 33, "lp "])
def test_a_prefix_that_could_break_keys_or_patterns_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="Redis key prefix"):
        keys.Keys(prefix)
