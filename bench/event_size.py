"""Disk an events topic needs per million events: the records' size, measured.

Two sources of records:

- the benchmark workload (`bench.data`, the demo's persona mix), encoded as
  `bench.throughput` produces it (key, JSON value, no headers): pure, no stack;
- ``--broker HOST:PORT``: the records on a live events topic, read from the
  beginning for ``--seconds`` (e.g. while ``leadpulse demo --kafka-port PORT``
  sends its funnel through the collector: the records the collector writes).

Per record it counts key + value + header keys and values, then adds Kafka's
record-batch v2 framing (see `OVERHEAD`), uncompressed, one replica. The
result is what docs/architecture.md#history-retention and the README quote.

    python -m bench.event_size [--events 200000] [--leads 20000]
    python -m bench.event_size --broker 127.0.0.1:19092 [--topic leadpulse.events]
                               [--seconds 60]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterable

from bench.data import encode, plan

RECORD_FRAMING = 10
"""Bytes a record-batch v2 record adds to its key, value and headers (uncompressed).

length (varint, 1-2), attributes (1), timestamp delta (varint, 1-3), offset
delta (varint, 1-3), key length (varint, 1), value length (varint, 2), header
count (varint, 1): 8-13; 10 is what records of a few hundred bytes take.
"""
BATCH_HEADER = 61
"""Bytes of one record batch's header (base offset .. record count), shared by its records."""
RECORDS_PER_BATCH = 10
"""Assumed records per batch: the collector sends each request's events as they come
(linger 5 ms); more per batch (bulk producers) make the header's share smaller."""
INDEX_SHARE = 20 / 4096
"""Offset (8 B) and time (12 B) index entries every index.interval.bytes (4096) of log."""

OVERHEAD = RECORD_FRAMING + BATCH_HEADER / RECORDS_PER_BATCH
"""Bytes each record costs on disk beyond its key, value and headers (before the index)."""


def payload_sizes_of_workload(events: int, leads: int) -> list[int]:
    traffic = plan(events, leads)
    return [len(key) + len(value) for key, value in encode(traffic, end=time.time())]


def payload_sizes_on_topic(broker: str, topic: str, seconds: float) -> list[int]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=broker,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    sizes: list[int] = []
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            try:
                for message in consumer:
                    headers = sum(len(k) + len(v or b"") for k, v in message.headers or ())
                    sizes.append(len(message.key or b"") + len(message.value or b"") + headers)
            except Exception:  # the stack went away (the demo ended): what was read counts
                break
    finally:
        consumer.close()
    return sizes


def report(sizes: Iterable[int], source: str) -> dict[str, float | int | str]:
    values = list(sizes)
    if not values:
        raise SystemExit("no records read")
    mean = statistics.fmean(values)
    on_disk = (mean + OVERHEAD) * (1 + INDEX_SHARE)
    return {
        "source": source,
        "records": len(values),
        "payload_mean_bytes": round(mean, 1),
        "payload_median_bytes": statistics.median(values),
        "payload_max_bytes": max(values),
        "overhead_bytes_per_record": round(OVERHEAD, 1),
        "disk_bytes_per_record": round(on_disk, 1),
        "disk_mb_per_million": round(on_disk * 1_000_000 / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--broker", help="read a live topic instead of the workload")
    parser.add_argument("--topic", default="leadpulse.events")
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    if args.broker:
        sizes = payload_sizes_on_topic(args.broker, args.topic, args.seconds)
        source = f"topic {args.topic} on {args.broker}"
    else:
        sizes = payload_sizes_of_workload(args.events, args.leads)
        source = f"bench.data workload, {args.events} events / {args.leads} leads, seed 7"
    print(json.dumps(report(sizes, source), indent=2))


if __name__ == "__main__":
    main()
