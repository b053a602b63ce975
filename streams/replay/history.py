"""The events topic as a history: where it starts, and its records in per-partition batches.

A plain kafka-python consumer with manual partition assignment and no
consumer group: nothing is committed, nobody's offsets move, and the
worker's group never sees it. The history runs from the earliest retained
offset of each partition (or, with `since`, from the first record at or
after that time, `offsets_for_times`) up to what was in the topic when the
replay began: records written later (timestamps after its start) are left
for the next replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from leadpulse.streams.kafka.security import kafka_python_options
from leadpulse.streams.pipeline.records import Record
from leadpulse.streams.settings import Settings

CONNECT_TIMEOUT_MS = 5000
IDLE_POLLS = 2
"""Empty polls after the recorded end before a partition counts as read to its end
(Tansu reports a partition's end offset up to one producer batch low)."""
POLL_MS = 300
MAX_IDLE_POLLS = 100
"""Polls in a row without a record, before the end, after which the broker counts as gone."""


class ReplayError(Exception):
    """A history that cannot be replayed, with what to do about it."""


@dataclass(frozen=True)
class History:
    """What a replay reads: the topic, each partition's offsets, how far back it goes."""

    topic: str
    partitions: tuple[int, ...]
    start: dict[int, int]
    end: dict[int, int]
    """Each partition's end offset when the replay began (Tansu may report it low)."""
    retained_from: float | None
    """Record time (epoch s) of the oldest retained record of any partition; None: empty."""
    asked_since: float | None
    """The start `--since` asked for (epoch s), None for the whole retained history."""
    now: float

    @property
    def since(self) -> float | None:
        """Where the replayed history really starts: never before what is retained."""
        if self.retained_from is None:
            return self.asked_since
        if self.asked_since is None:
            return self.retained_from
        return max(self.asked_since, self.retained_from)

    @property
    def starts_later(self) -> bool:
        """`--since` asked for more than the topic retains."""
        return (
            self.asked_since is not None
            and self.retained_from is not None
            and self.asked_since < self.retained_from
        )

    @property
    def expected(self) -> int:
        """Records to replay as far as the end offsets tell (a progress bar's total)."""
        return sum(max(0, self.end[p] - self.start[p]) for p in self.partitions)


def history_consumer(settings: Settings) -> Any:
    """A kafka-python consumer of no group, assigned nothing yet (`ReplayError`: no broker)."""
    from kafka import KafkaConsumer
    from kafka.errors import KafkaTimeoutError

    try:
        return KafkaConsumer(
            bootstrap_servers=settings.bootstrap_servers,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_bytes=64 * 1024 * 1024,
            max_partition_fetch_bytes=16 * 1024 * 1024,
            request_timeout_ms=30_000,
            bootstrap_timeout_ms=CONNECT_TIMEOUT_MS,
            **kafka_python_options(settings),
        )
    except KafkaTimeoutError:
        raise ReplayError(
            f"no Kafka broker answers at {settings.broker} (LEADPULSE_BROKER); "
            "is the stack running? (`leadpulse dev` prints its export lines)"
        ) from None


def topic_partitions(consumer: Any, settings: Settings) -> tuple[int, ...]:
    """The events topic's partitions (`ReplayError` when the topic does not exist)."""
    return _partitions(consumer, settings)


def read_ranges(
    consumer: Any, topic: str, ranges: dict[int, tuple[int, int]], batch_size: int
) -> Iterator[tuple[list[Record], int]]:
    """The records of each partition's ``[start, stop)`` offsets, in batches of one partition.

    Yields (records, partition); a partition ends once its position reached
    `stop`. `ReplayError` when the broker brings nothing for `MAX_IDLE_POLLS`
    polls in a row before every range was read.
    """
    from kafka import TopicPartition

    open_ = {p for p, (start, stop) in ranges.items() if stop > start}
    if not open_:
        return
    tps = {p: TopicPartition(topic, p) for p in ranges}
    consumer.assign([tps[p] for p in sorted(open_)])
    consumer.resume(*(tps[p] for p in open_))
    for p in open_:
        consumer.seek(tps[p], ranges[p][0])
    silent = 0
    while open_:
        polled = consumer.poll(timeout_ms=POLL_MS, max_records=batch_size * len(open_))
        silent = _silence(silent, polled, topic, open_)
        for tp, messages in sorted(polled.items(), key=lambda item: item[0].partition):
            p = tp.partition
            if p not in open_:
                continue
            stop = ranges[p][1]
            kept = [m for m in messages if m.offset < stop]
            for n in range(0, len(kept), batch_size):
                yield [_record(m) for m in kept[n : n + batch_size]], p
        for p in list(open_):
            if consumer.position(tps[p]) >= ranges[p][1]:
                open_.discard(p)
                consumer.pause(tps[p])


def open_history(settings: Settings, *, since: float | None, now: float) -> tuple[Any, History]:
    """A consumer assigned to every partition of the events topic at the history's start.

    Raises `ReplayError` naming the broker when none answers, and the topic
    when it does not exist. The caller closes the consumer.
    """
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    topic = settings.events_topic
    consumer = history_consumer(settings)
    try:
        partitions = _partitions(consumer, settings)
        tps = [TopicPartition(topic, p) for p in partitions]
        consumer.assign(tps)
        begin = {tp.partition: o for tp, o in consumer.beginning_offsets(tps).items()}
        end = {tp.partition: o for tp, o in consumer.end_offsets(tps).items()}
        firsts = consumer.offsets_for_times(
            {tp: 0 for tp in tps if end[tp.partition] > begin[tp.partition]}
        )
        stamps = [found.timestamp / 1000 for found in firsts.values() if found is not None]
        retained_from = min(stamps) if stamps else None
        start = dict(begin)
        if since is not None:
            found = consumer.offsets_for_times({tp: int(since * 1000) for tp in tps})
            for tp, at in found.items():
                start[tp.partition] = (
                    end[tp.partition] if at is None else max(at.offset, begin[tp.partition])
                )
        for tp in tps:
            consumer.seek(tp, start[tp.partition])
    except ReplayError:
        consumer.close()
        raise
    except KafkaError as error:
        consumer.close()
        raise ReplayError(f"cannot read topic {topic} on {settings.broker}: {error}") from None
    history = History(
        topic=topic,
        partitions=partitions,
        start=start,
        end=end,
        retained_from=retained_from,
        asked_since=since,
        now=now,
    )
    return consumer, history


def _partitions(consumer: Any, settings: Settings) -> tuple[int, ...]:
    known = consumer.partitions_for_topic(settings.events_topic)
    if not known:
        raise ReplayError(
            f"topic {settings.events_topic} does not exist on {settings.broker} "
            "(LEADPULSE_EVENTS_TOPIC)"
        )
    return tuple(sorted(known))


def batches(
    consumer: Any, history: History, batch_size: int
) -> Iterator[tuple[list[Record], frozenset[int]]]:
    """The history's records, one partition's batch at a time, in offset order.

    Each item is (records of one partition, the partitions read to their end
    with it; the records may be none). A partition ends at its recorded end offset, once polls bring
    nothing more, or at its first record written after the replay began.
    """
    from kafka import TopicPartition

    now_ms = history.now * 1000
    since_ms = None if history.asked_since is None else history.asked_since * 1000
    # offsets_for_times may answer a batch's first offset (Tansu does): records before
    # the first one at or after `since` are skipped, as Kafka's own answer would
    begun = dict.fromkeys(history.partitions, since_ms is None)
    open_ = {p for p in history.partitions if history.end[p] > history.start[p]}
    idle = dict.fromkeys(open_, 0)
    done_empty = frozenset(set(history.partitions) - open_)
    if done_empty:
        yield [], done_empty
    tps = {p: TopicPartition(history.topic, p) for p in history.partitions}
    consumer.pause(*(tps[p] for p in history.partitions if p not in open_))
    silent = 0
    while open_:
        polled = consumer.poll(timeout_ms=POLL_MS, max_records=batch_size * len(open_))
        silent = _silence(silent, polled, history.topic, open_)
        got: set[int] = set()
        for tp, messages in sorted(polled.items(), key=lambda item: item[0].partition):
            p = tp.partition
            if p not in open_:
                continue
            kept, late, begun[p] = _take(messages, begun[p], since_ms, now_ms)
            got.add(p)
            finished: set[int] = set()
            if late:
                finished.add(p)
            for n in range(0, len(kept), batch_size):
                chunk = [_record(m) for m in kept[n : n + batch_size]]
                last = n + batch_size >= len(kept)
                yield chunk, frozenset(finished if last else ())
            if late and not kept:
                yield [], frozenset(finished)
            if late:
                open_.discard(p)
                consumer.pause(tps[p])
        for p in list(open_):
            if p in got:
                idle[p] = 0
                continue
            if consumer.position(tps[p]) >= history.end[p]:
                idle[p] += 1
                if idle[p] >= IDLE_POLLS:
                    open_.discard(p)
                    consumer.pause(tps[p])
                    yield [], frozenset({p})


def _silence(silent: int, polled: object, topic: str, open_: set[int]) -> int:
    """Empty polls in a row after this one; `ReplayError` after `MAX_IDLE_POLLS` of them."""
    silent = 0 if polled else silent + 1
    if silent > MAX_IDLE_POLLS:
        raise ReplayError(
            f"topic {topic}: no records for {MAX_IDLE_POLLS * POLL_MS / 1000:.0f} s "
            f"before the end of partitions {sorted(open_)}; is the broker still there?"
        )
    return silent


def _take(
    messages: list[Any], begun: bool, since_ms: float | None, now_ms: float
) -> tuple[list[Any], bool, bool]:
    """(the messages to replay, whether one was written after `now_ms`, begun since then).

    Before the first message at or after `since_ms` (once `begun` is False) nothing is kept.
    """
    kept: list[Any] = []
    for m in messages:
        if not begun:
            if m.timestamp is None or since_ms is None or m.timestamp < since_ms:
                continue
            begun = True
        if m.timestamp is not None and m.timestamp > now_ms:
            return kept, True, begun
        kept.append(m)
    return kept, False, begun


def _record(m: Any) -> Record:
    timestamp = m.timestamp / 1000 if m.timestamp is not None and m.timestamp >= 0 else None
    return Record(
        key=m.key,
        value=m.value,
        topic=m.topic,
        partition=m.partition,
        offset=m.offset,
        timestamp=timestamp,
    )
