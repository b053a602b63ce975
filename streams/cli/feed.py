"""`leadpulse send` and `leadpulse tail`: events in, messages out, with any Kafka security."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from leadpulse.schemas import DecodeError, decode_event
from leadpulse.streams.cli.common import EXIT_FAILED, EXIT_OK, TOPIC_ALIASES, load_settings
from leadpulse.streams.cli.format import describe_message
from leadpulse.streams.kafka.security import kafka_python_options


def _read_lines(source: IO[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, start=1):
        if line.strip():
            yield number, line


def cmd_send(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    settings = load_settings(broker=args.broker)
    topic = args.topic or settings.events_topic
    source = sys.stdin if args.file in (None, "-") else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
    now = datetime.now(UTC)
    valid: list[tuple[bytes, bytes]] = []
    bad = 0
    with source:
        for number, line in _read_lines(source):
            try:
                event = decode_event(line, now=now)
            except DecodeError as error:
                bad += 1
                print(f"line {number}: {error.reason}", file=sys.stderr)
                continue
            valid.append((event.subject.encode(), line.strip().encode()))
    if bad and not args.skip_invalid:
        print(
            f"{bad} invalid line(s); nothing sent (use --skip-invalid to send the rest)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        linger_ms=5,
        **kafka_python_options(settings),
    )
    try:
        for key, value in valid:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    print(f"sent {len(valid)} event(s) to {topic}" + (f"; skipped {bad} invalid" if bad else ""))
    return EXIT_OK


def cmd_tail(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer

    settings = load_settings(broker=args.broker)
    kind = args.topic if args.topic in TOPIC_ALIASES else "raw"
    topic = getattr(settings, TOPIC_ALIASES[args.topic]) if kind != "raw" else args.topic
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(args.timeout * 1000) if args.timeout else float("inf"),
        **kafka_python_options(settings),
    )
    shown = 0
    try:
        for message in consumer:
            if args.json:
                print(message.value.decode("utf-8", errors="replace"), flush=True)
            else:
                print(describe_message(kind, message.value), flush=True)
            shown += 1
            if args.max and shown >= args.max:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return EXIT_OK
