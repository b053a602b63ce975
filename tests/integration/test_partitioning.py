"""One murmur2: a subject's shard is the partition Kafka really puts its events in (issue 15)."""

from __future__ import annotations

import random
from collections.abc import Callable

from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2 as kafka_python_murmur2

from leadpulse.streams.kafka.partitioner import murmur2, partition_of
from leadpulse.streams.store.redis.keys import shard_of


def subjects() -> list[str]:
    rng = random.Random(15)
    made = ["", "a", "lead-42", "}x{", "é" * 100, "漢字", "x" * 301]
    made += ["".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 30)))
             for _ in range(300)]  # fmt: skip
    return made


def test_murmur2_is_kafka_pythons() -> None:
    for subject in subjects():
        assert murmur2(subject.encode()) == kafka_python_murmur2(subject.encode()), subject


def test_a_subjects_shard_is_the_partition_the_broker_got_its_record_in(
    bootstrap: str, make_topic: Callable[..., str]
) -> None:
    topic = make_topic("shards", partitions=12)
    sent = subjects()
    producer = KafkaProducer(bootstrap_servers=bootstrap)  # its default partitioner
    try:
        for subject in sent:
            producer.send(topic, key=subject.encode(), value=b"x")
        producer.flush(30)
    finally:
        producer.close(5)
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    seen: dict[str, int] = {}
    try:
        for record in consumer:
            seen[record.key.decode()] = record.partition
            if len(seen) == len(set(sent)):
                break
    finally:
        consumer.close()
    assert len(seen) == len(set(sent))
    for subject, partition in seen.items():
        assert shard_of(subject, 12) == partition == partition_of(subject.encode(), 12), subject
