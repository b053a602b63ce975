"""Fuzz campaign: 10,000 malformed payloads, interleaved with valid events, into a live worker.

Proof harness part 5. The payloads come from `payloads.Generator` (seeded):
truncated JSON, wrong types, huge strings and maps, deep nesting, NaN and
Infinity, naive and ancient times (a time after the record time plus the
allowed skew is not bad input: it is clamped, see
tests/integration/test_skew_and_bounds.py), event types outside
``^[a-z][a-z0-9_.:-]{0,63}$``, invalid UTF-8, empty keys, missing ids, control
characters, unknown fields, messages above 256 KiB, empty messages and
tombstones, with all sorts of Kafka keys. Checked:

- every bad payload is in the DLQ with a reason, matched to the record it came
  from by source partition/offset and to its exact bytes by `original_payload`;
- no valid event is dead-lettered, and every subject's Redis state equals pure
  `scoring.apply` over its valid events;
- the worker never restarts (same pid, alive throughout) and never even had to
  retry a batch.

The same 10,000 payloads also go straight through `schemas.decode_event` (and
the dead-letter round trip) without a broker, in well under a second.
"""

from __future__ import annotations

import base64
import json
import os
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from leadpulse.schemas import (
    BehaviorEvent,
    DeadLetter,
    DecodeError,
    dead_letter,
    decode_dead_letter,
    decode_event,
    encode,
    original_payload,
)
from leadpulse.scoring import LeadState, apply, new_lead, next_recycle_at
from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from tests.integration.harness import start_worker, worker_settings
from tests.reliability.campaign import (
    CAMPAIGN_MODEL,
    Sent,
    assert_same_states,
    produce_records,
    read_states,
    read_topic,
    wait_until,
    write_model,
)
from tests.reliability.payloads import Generator, Payload

SEED = int(os.environ.get("LEADPULSE_CAMPAIGN_SEED", "20261123"))
BAD = 10_000
OVERSIZED = 40
TOMBSTONES = 20
VALID = 3_000
LEADS = 150
ANONYMOUS = 30


class Fuzz:
    """One generated campaign: bad payloads, valid events, and the order they are sent in."""

    def __init__(self, seed: int) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.leads = [f"fz-{self.tag}-lead-{i}" for i in range(LEADS)]
        self.anonymous = [f"fz-{self.tag}-anon-{i}" for i in range(ANONYMOUS)]
        gen = Generator(seed, self.tag, self.leads)
        self.bad: list[Payload] = gen.bad(BAD, oversized=OVERSIZED, tombstones=TOMBSTONES)
        rng = random.Random(seed + 1)
        self.valid: list[dict[str, Any]] = []
        for _ in range(VALID):
            if rng.random() < 0.9:
                self.valid.append(gen.valid(lead=rng.choice(self.leads)))
            else:
                self.valid.append(gen.valid(anonymous=rng.choice(self.anonymous)))
        self.valid += rng.sample(self.valid, 30)  # tracker retries: same event again
        mixed: list[tuple[bool, Any]] = [(True, p) for p in self.bad]
        mixed += [(False, v) for v in self.valid]
        rng.shuffle(mixed)
        self.mixed = mixed

    def records(self) -> list[tuple[bytes | None, bytes | None]]:
        out: list[tuple[bytes | None, bytes | None]] = []
        for is_bad, item in self.mixed:
            if is_bad:
                out.append((item.key, item.value))
            else:
                subject = item.get("lead_id") or item["anonymous_id"]
                out.append((subject.encode(), json.dumps(item).encode()))
        return out

    def expected_states(self) -> dict[str, LeadState]:
        """Pure scoring over the valid events, per subject in send order, each id once."""
        states: dict[str, LeadState] = {}
        seen: set[tuple[str, str]] = set()
        for is_bad, item in self.mixed:
            if is_bad:
                continue
            event = BehaviorEvent.model_validate(item)
            if (event.subject, event.event_id) in seen:
                continue
            seen.add((event.subject, event.event_id))
            state = states.get(event.subject) or new_lead(
                event.subject, anonymous=event.lead_id is None
            )
            state, _ = apply(state, event, CAMPAIGN_MODEL)
            due = next_recycle_at(state, CAMPAIGN_MODEL)
            # the sweeper must not be able to act before the campaign ends
            assert due is None or due > time.time() + 1800, (event.subject, due)
            states[event.subject] = state
        return states


@pytest.fixture(scope="module")
def fuzz() -> Fuzz:
    return Fuzz(SEED)


# -- without a broker ---------------------------------------------------------------------


def test_every_bad_payload_is_a_decode_error_with_a_reason(fuzz: Fuzz) -> None:
    now = datetime.now(UTC)
    accepted: list[Payload] = []
    unexplained: list[Payload] = []
    for payload in fuzz.bad:
        try:
            decode_event(payload.value or b"", now=now)
        except DecodeError as error:
            if not (error.reason.strip() and all(line.strip() for line in error.errors)):
                unexplained.append(payload)
        else:
            accepted.append(payload)
        # the dead letter keeps the exact bytes, whatever they are
        letter = dead_letter(
            payload.value,
            "reason",
            key=payload.key,
            topic="events",
            partition=0,
            offset=0,
            failed_at=now,
        )
        again = decode_dead_letter(encode(letter))
        assert original_payload(again) == (payload.value or b"")
    assert not accepted, [(p.category, (p.value or b"")[:200]) for p in accepted[:5]]
    assert not unexplained, [(p.category, (p.value or b"")[:200]) for p in unexplained[:5]]
    for body in fuzz.valid:
        decode_event(json.dumps(body).encode(), now=now)
    assert len(fuzz.bad) == BAD
    categories = Counter(p.category for p in fuzz.bad)
    assert len(categories) == len(Generator.CATEGORIES) + 2  # every kind, oversized, tombstones
    assert all(count >= 20 for count in categories.values()), categories


# -- against a live worker ----------------------------------------------------------------


@pytest.fixture
def worker(stack: DevStack, tmp_path: Path) -> Iterator[tuple[Settings, WorkerProcess]]:
    settings = worker_settings(stack, tmp_path, partitions=4)
    settings = settings.replace(model_file=write_model(tmp_path))
    process = start_worker(settings, tmp_path / "worker.log")
    try:
        yield settings, process
    finally:
        process.stop()


def expected_key(key: bytes | None) -> str | None:
    if key is None:
        return None
    try:
        return key.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(key).decode("ascii")


def test_bad_payloads_all_dead_lettered_and_valid_events_scored_exactly(
    fuzz: Fuzz, worker: tuple[Settings, WorkerProcess]
) -> None:
    started = time.monotonic()
    settings, process = worker
    assert process.process is not None
    pid = process.process.pid

    def alive() -> None:
        if not process.alive() or process.process is None or process.process.pid != pid:
            raise AssertionError(f"the worker died or restarted:\n{process.log_tail()}")

    sent = produce_records(settings, fuzz.records())
    bad_at: dict[tuple[int, int], Sent] = {}
    valid_at: set[tuple[int, int]] = set()
    for (is_bad, _), record in zip(fuzz.mixed, sent, strict=True):
        if is_bad:
            bad_at[(record.partition, record.offset)] = record
        else:
            valid_at.add((record.partition, record.offset))
    assert len(bad_at) == BAD
    alive()

    letters: dict[tuple[int, int], list[DeadLetter]] = defaultdict(list)

    def all_dead_lettered(values: list[bytes]) -> bool:
        alive()
        for raw in values[sum(len(v) for v in letters.values()) :]:
            letter = DeadLetter.model_validate_json(raw)
            letters[(letter.source_partition, letter.source_offset)].append(letter)
        return bad_at.keys() <= letters.keys()

    read_topic(settings, settings.dlq_topic, all_dead_lettered, timeout=180)

    expected = fuzz.expected_states()
    subjects = sorted(expected)

    def all_scored() -> bool:
        real = read_states(settings.redis_url, subjects)
        return all(
            (st.events_applied if st is not None else None) == expected[s].events_applied
            for s, st in real.items()
        )

    wait_until(all_scored, timeout=120, what="valid events scored", interval=0.3, check=alive)
    stats = process.stats()
    alive()

    # 100 % of the bad payloads in the DLQ, each with a reason and its exact bytes
    problems: list[str] = []
    for where, record in bad_at.items():
        for letter in letters[where]:
            if not (letter.reason.strip() and letter.errors):
                problems.append(f"{where}: no reason")
            if letter.source_topic != settings.events_topic:
                problems.append(f"{where}: source topic {letter.source_topic}")
            if original_payload(letter) != (record.value or b""):
                problems.append(f"{where}: payload differs")
            if letter.key != expected_key(record.key):
                problems.append(f"{where}: key {letter.key!r} != {record.key!r}")
    assert not problems, problems[:20]
    # nothing else: no valid event, no phantom letter
    assert letters.keys() == bad_at.keys(), sorted(set(letters) - set(bad_at))[:10]
    assert not (letters.keys() & valid_at)

    # valid events scored exactly: Redis state == pure scoring.apply
    real = read_states(settings.redis_url, subjects)
    assert_same_states(real, expected, CAMPAIGN_MODEL, subjects)
    exact = sum(real[s] == expected[s] for s in subjects)

    # the worker never restarted and never had to retry
    alive()
    log = Path(process.log_path).read_text(errors="replace")
    assert "failed (" not in log, [line for line in log.splitlines() if "failed (" in line][:5]
    assert stats["dead_lettered"] == BAD, stats
    reasons = Counter(letter.errors[0].split(":")[0] for ls in letters.values() for letter in ls)
    print(
        f"\nfuzz campaign: {BAD} bad payloads ({sum(len(r.value or b'') for r in bad_at.values())}"
        f" bytes) all in the DLQ, {len(valid_at)} valid events, {len(subjects)} subjects "
        f"({exact} bit-identical to pure scoring), worker pid {pid} throughout, "
        f"{time.monotonic() - started:.0f}s; top reasons: {reasons.most_common(8)}"
    )
