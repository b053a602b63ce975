"""`leadpulse dlq list` and `leadpulse dlq replay`: what was dead-lettered, and re-injecting it.

A replay sends each letter's original payload, with its original key, to the
events topic again, marked with a header that names the letter. A replayed
event is scored once, whatever was applied before: the worker recognises
event ids it applied. A replayed record that fails again becomes a new letter
that names the one it came from (`replay_of`); `replay` leaves such letters
(and the letters they came from) alone unless asked for by id, so nothing
goes round in a loop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from leadpulse.schemas import (
    REPLAY_HEADER,
    DeadLetter,
    DecodeError,
    decode_dead_letter,
    letter_id,
    original_key,
    original_payload,
)
from leadpulse.scoring import parse_duration
from leadpulse.streams.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_settings
from leadpulse.streams.kafka.security import kafka_python_options
from leadpulse.streams.observability.metrics import DEAD_LETTER_REASONS
from leadpulse.streams.settings import Settings

READ_IDLE_MS = 1000
"""A DLQ partition counts as read through once its end offset is reached, or after this idle."""


@dataclass(frozen=True, slots=True)
class Letter:
    """One dead letter and where it sits in the DLQ topic."""

    id: str
    letter: DeadLetter


def read_letters(settings: Settings, *, timeout: float = 30.0) -> Iterator[Letter | str]:
    """Every letter of the DLQ topic, oldest first per partition (a str: one unreadable)."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers,
        enable_auto_commit=False,
        consumer_timeout_ms=READ_IDLE_MS,
        **kafka_python_options(settings),
    )
    try:
        partitions = consumer.partitions_for_topic(settings.dlq_topic) or set()
        assigned = [TopicPartition(settings.dlq_topic, p) for p in sorted(partitions)]
        if not assigned:
            return
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        ends = consumer.end_offsets(assigned)
        todo = {tp for tp in assigned if ends[tp] > 0}
        deadline = time.monotonic() + timeout
        while todo and time.monotonic() < deadline:
            batches = consumer.poll(timeout_ms=READ_IDLE_MS)
            for tp, records in batches.items():
                for record in records:
                    lid = letter_id(record.partition, record.offset)
                    try:
                        yield Letter(lid, decode_dead_letter(record.value))
                    except DecodeError as error:
                        yield f"{lid}: not a dead letter ({error.reason})"
                if consumer.position(tp) >= ends[tp]:
                    todo.discard(tp)
        if todo:
            yield f"stopped after {timeout:.0f}s: partitions {sorted(tp.partition for tp in todo)}"
    finally:
        consumer.close()


def _matches(letter: DeadLetter, args: argparse.Namespace, since: datetime | None) -> bool:
    if since is not None and letter.failed_at < since:
        return False
    reason: str | None = args.reason
    if not reason:
        return True
    if reason in DEAD_LETTER_REASONS:  # a kind: that kind only
        return reason == letter.kind
    return reason in letter.reason


def _since(args: argparse.Namespace) -> datetime | None:
    if not args.since:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(args.since))
    except ValueError as error:
        raise SystemExit(f"leadpulse dlq: --since {args.since!r}: {error}") from None


def _selected(settings: Settings, args: argparse.Namespace) -> tuple[list[Letter], list[str]]:
    since = _since(args)
    letters: list[Letter] = []
    problems: list[str] = []
    for item in read_letters(settings):
        if isinstance(item, str):
            problems.append(item)
        elif _matches(item.letter, args, since):
            letters.append(item)
    return letters, problems


def _line(item: Letter) -> str:
    d = item.letter
    where = f"{d.source_topic}[{d.source_partition}]@{d.source_offset}"
    lead = f" lead {d.lead_id}" if d.lead_id else ""
    again = f" (replay of {d.replay_of})" if d.replay_of else ""
    return (
        f"{item.id:>9}  {d.failed_at.isoformat(timespec='seconds')}  {d.kind or '-':15} "
        f"{where}{lead}{again}: {d.reason}"
    )


def cmd_dlq_list(args: argparse.Namespace) -> int:
    settings = load_settings(broker=args.broker)
    letters, problems = _selected(settings, args)
    for item in letters:
        if args.json:
            print(json.dumps({"id": item.id, **item.letter.model_dump(mode="json")}))
        else:
            print(_line(item))
    for problem in problems:
        print(problem, file=sys.stderr)
    if not args.json:
        print(f"{len(letters)} letter(s) in {settings.dlq_topic}", file=sys.stderr)
    return EXIT_OK


def _not_replayable(item: Letter, settings: Settings, failed_again: set[str]) -> str | None:
    d = item.letter
    if d.truncated:
        return "only a prefix of the payload was kept"
    if d.source_topic not in (settings.events_topic, "(event)"):
        return f"not an event (from {d.source_topic}): nothing to re-inject"
    if item.id in failed_again:
        return "replayed already and failed again (replay that letter by --id once fixed)"
    return None


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    settings = load_settings(broker=args.broker)
    letters, problems = _selected(settings, args)
    for problem in problems:
        print(problem, file=sys.stderr)
    wanted = set(args.id or ())
    failed_again: set[str] = set()
    if wanted:
        unknown = wanted - {item.id for item in letters}
        if unknown:
            missing = ", ".join(sorted(unknown))
            print(f"no such letter (with these filters): {missing}", file=sys.stderr)
            return EXIT_USAGE
        letters = [item for item in letters if item.id in wanted]
    else:
        # a letter that came from a replay, and the letter it came from, wait for an explicit id
        failed_again = {item.letter.replay_of for item in letters if item.letter.replay_of}
        for item in letters:
            if item.letter.replay_of:
                print(f"skipped {item.id}: a replay that failed again (use --id {item.id})")
        letters = [item for item in letters if not item.letter.replay_of]
    chosen: list[Letter] = []
    for item in letters:
        why = _not_replayable(item, settings, failed_again)
        if why is None:
            chosen.append(item)
        else:
            print(f"skipped {item.id}: {why}")
    if args.dry_run:
        for item in chosen:
            print(f"would replay {_line(item)}")
        return EXIT_OK
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        acks="all",
        **kafka_python_options(settings),
    )
    try:
        for item in chosen:
            producer.send(
                settings.events_topic,
                key=original_key(item.letter),
                value=original_payload(item.letter),
                headers=[(REPLAY_HEADER, item.id.encode())],
            )
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    print(f"replayed {len(chosen)} letter(s) to {settings.events_topic}")
    return EXIT_OK if chosen or not letters else EXIT_FAILED


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = sub.add_parser(
        "dlq",
        help="list dead-lettered events, and replay them after a fix",
        description=(
            "Dead letters are kept in the DLQ topic (LEADPULSE_DLQ_TOPIC) with their reason and "
            "original payload. `replay` re-injects events into the events topic with their "
            "original key; each is scored once (event ids), and one that fails again becomes a "
            "new letter naming the one it came from."
        ),
    )
    commands = dlq.add_subparsers(dest="dlq_command", required=True, metavar="COMMAND")

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--broker", help="bootstrap server, e.g. 127.0.0.1:9092")
        p.add_argument("--since", help="only letters of the last DURATION (e.g. 2h, 7d)")
        p.add_argument(
            "--reason",
            help="only letters of this kind (decode, corrupt_state, refused_message, "
            "permanent_error, unknown_error) or whose reason contains this text",
        )

    p = commands.add_parser("list", help="print the dead letters: id, time, kind, source, reason")
    filters(p)
    p.add_argument("--json", action="store_true", help="one JSON object per letter")
    p.set_defaults(func=cmd_dlq_list)

    p = commands.add_parser("replay", help="re-inject dead-lettered events after a fix")
    filters(p)
    p.add_argument(
        "--id", action="append", metavar="PARTITION:OFFSET", help="only this letter (repeatable)"
    )
    p.add_argument(
        "--dry-run", action="store_true", help="say what would be replayed, send nothing"
    )
    p.set_defaults(func=cmd_dlq_replay)
