"""Permanent failures are dead-lettered once, with the reason, and the worker goes on.

Two kinds that used to stall the agent (retried forever as if transient):
(a) a handoff the producer/broker refuses as too large: the worker runs with
    ``producer_max_request_size=2000`` (set through the environment, a setting
    being added) and a lead whose handoff carries a 3,000-character profile trait
    (the trait is read by a fit rule, so it is a profile trait in any release);
(b) a lead whose stored state cannot be decoded (garbage in field ``s`` of its
    Redis hash).
Each poison lead gets exactly one DLQ letter naming the problem and the lead, a
marker lead on another partition and a follower on the poison lead's own
partition, produced after the poison, are scored, and /health/detail reports
the letter. The module shares one worker; (a) runs first.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis import keys
from tests.integration.faults import (
    Topic,
    alive_check,
    health,
    lead_on,
    partition_of,
    poll,
    produce_at,
    state_of,
)
from tests.integration.harness import MODEL_YAML, start_worker, worker_settings

PARTITIONS = 4
MAX_REQUEST = 2000
"""Bytes; the big lead's handoff is about 3,700, every other message under 1,500."""
BIG_TRAIT = "s" * 3000

POISON_MODEL_YAML = (
    MODEL_YAML.replace(
        "    - {name: mid-market, trait: company_size, between: [50, 5000], points: 40}\n",
        "    - {name: mid-market, trait: company_size, between: [50, 5000], points: 40}\n"
        "    - {name: has-segment, trait: segment, exists: true, points: 1}\n",
    )
    + "limits: {max_trait_bytes: 4096}\n"
)
"""A trait of 3,000 bytes is within this model's bound (the default is 1,024)."""
assert POISON_MODEL_YAML != MODEL_YAML

TOO_LARGE = re.compile(r"too.?large|size", re.IGNORECASE)
STATE_PROBLEM = re.compile(
    r"state.*(decod|corrupt|unreadable|invalid)|(decod|corrupt|unreadable|invalid).*state",
    re.IGNORECASE,
)

FLOW_TIMEOUT = 30.0
"""Seconds for markers to be scored and letters to appear after the poison."""


@pytest.fixture(scope="module")
def poisoned(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, WorkerProcess]]:
    workdir = tmp_path_factory.mktemp("poison")
    settings = worker_settings(stack, workdir, partitions=PARTITIONS)
    model = workdir / "poison-model.yaml"
    model.write_text(POISON_MODEL_YAML)
    settings = settings.replace(model_file=model, producer_max_request_size=MAX_REQUEST)
    worker = start_worker(settings, workdir / "worker.log")
    try:
        yield settings, worker
    finally:
        worker.stop()


def ev(kind: str, lead: str, **extra: Any) -> dict[str, Any]:
    at = datetime.now(UTC) - timedelta(seconds=1)
    body = {"event_id": uuid.uuid4().hex, "type": kind, "lead_id": lead}
    body["occurred_at"] = at.isoformat()
    body.update(extra)
    return body


def letters_for(letters: list[dict[str, Any]], lead: str) -> list[dict[str, Any]]:
    """DLQ letters that name `lead` (the `lead_id` field, or the reason text)."""
    return [v for v in letters if v.get("lead_id") == lead or lead in v.get("reason", "")]


def mql(settings: Settings, lead: str) -> bool:
    state = state_of(settings.redis_url, lead)
    return state is not None and state.stage == "mql"


def dead_lettered(settings: Settings) -> int:
    _, body = health(settings)
    return int(body.get("dead_lettered", 0))


def check_flow_and_letter(
    settings: Settings,
    worker: WorkerProcess,
    poison: str,
    reason: re.Pattern[str],
    followers: list[str],
) -> tuple[list[str], list[dict[str, Any]]]:
    """Followers reach MQL and the poison lead gets a letter; the problems found."""
    problems: list[str] = []
    with Topic(settings, settings.dlq_topic) as dlq:
        flowed = poll(
            lambda: all(mql(settings, lead) for lead in followers),
            timeout=FLOW_TIMEOUT,
            check=alive_check(worker),
        )
        if flowed is None:
            stuck = [lead for lead in followers if not mql(settings, lead)]
            problems.append(
                f"{FLOW_TIMEOUT:.0f}s after the poison, leads produced after it are not "
                f"scored: {stuck}; /health {health(settings)}"
            )
        dlq.until(lambda vs: bool(letters_for(vs, poison)), timeout=5 if flowed is None else 15)
        time.sleep(1.0)  # a duplicate letter from a retried batch would show up by now
        letters = letters_for(dlq.read(), poison)
    if not letters:
        problems.append(f"no DLQ letter names {poison}")
    elif len(letters) > 1:
        problems.append(f"{len(letters)} DLQ letters for {poison}, want exactly one")
    for letter in letters[:1]:
        if letter.get("lead_id") != poison:
            problems.append(f"letter's lead_id is {letter.get('lead_id')!r}, not {poison!r}")
        if not reason.search(letter.get("reason", "")):
            problems.append(f"letter's reason does not name the problem: {letter.get('reason')!r}")
    return problems, letters


def test_too_large_handoff_is_dead_lettered_and_the_worker_goes_on(
    poisoned: tuple[Settings, WorkerProcess],
) -> None:
    started = time.monotonic()
    settings, worker = poisoned
    before = dead_lettered(settings)
    big = lead_on("big", PARTITIONS)
    big_partition = partition_of(big, PARTITIONS)
    marker = lead_on("marker", PARTITIONS, off=big_partition)
    follower = lead_on("follower", PARTITIONS, on=big_partition)
    produce_at(
        settings,
        [
            ev("identify", big, traits={"company_size": 400, "segment": BIG_TRAIT}),
            ev("demo_request", big),
            ev("page_view", big, properties={"url": "https://x.io/pricing"}),
        ],
    )
    produce_at(settings, [ev("demo_request", marker), ev("demo_request", follower)])
    problems, _ = check_flow_and_letter(
        settings,
        worker,
        big,
        TOO_LARGE,
        [marker, follower],
    )
    # the refused handoff must not come back: another event for the lead is scored
    # and still no second letter appears
    produce_at(settings, [ev("page_view", big, properties={"url": "https://x.io/docs"})])
    applied = poll(
        lambda: (s := state_of(settings.redis_url, big)) is not None and s.events_applied == 4,
        timeout=15,
        check=alive_check(worker),
    )
    if applied is None:
        problems.append(
            f"a later event for {big} was not applied: {state_of(settings.redis_url, big)}"
        )
    with Topic(settings, settings.dlq_topic) as dlq:
        time.sleep(1.0)
        again = letters_for(dlq.read(), big)
    if len(again) > 1:
        problems.append(f"{len(again)} DLQ letters for {big} after a later event, want one")
    with Topic(settings, settings.handoffs_topic) as handoffs:
        handoffs.until(lambda vs: False, timeout=1)
        if [h for h in handoffs.values if h["lead_id"] == big]:
            problems.append(f"a handoff of {big} was published although it exceeds the limit")
    status, body = health(settings, detail=True)
    last = body.get("last_dead_letter") or {}
    if body.get("dead_lettered", 0) < before + 1:
        problems.append(f"/health dead_lettered did not grow: {before} -> {body}")
    if last.get("lead_id") != big or not last.get("reason"):
        problems.append(f"/health last_dead_letter does not name {big} with a reason: {last}")
    if status != 200:
        problems.append(f"/health {status} after a permanent failure: {body}")
    print(f"\ntoo-large handoff: {time.monotonic() - started:.1f}s")
    assert not problems, "\n".join(problems)


def test_undecodable_state_is_dead_lettered_and_the_worker_goes_on(
    poisoned: tuple[Settings, WorkerProcess],
) -> None:
    started = time.monotonic()
    settings, worker = poisoned
    before = dead_lettered(settings)
    rotten = lead_on("rotten", PARTITIONS)
    rotten_partition = partition_of(rotten, PARTITIONS)
    marker = lead_on("marker", PARTITIONS, off=rotten_partition)
    follower = lead_on("follower", PARTITIONS, on=rotten_partition)
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.hset(keys.DEFAULT.state(rotten), mapping={"v": 7, "s": b"\x00\x93not a lead state{"})
    finally:
        client.close()
    (sent,) = produce_at(settings, [ev("demo_request", rotten)])
    produce_at(settings, [ev("demo_request", marker), ev("demo_request", follower)])
    problems, letters = check_flow_and_letter(
        settings,
        worker,
        rotten,
        STATE_PROBLEM,
        [marker, follower],
    )
    for letter in letters[:1]:
        where = (letter.get("source_partition"), letter.get("source_offset"))
        if where != (sent.partition, sent.offset):
            problems.append(
                f"letter points at {where}, the event was at {(sent.partition, sent.offset)}"
            )
    status, body = health(settings, detail=True)
    last = body.get("last_dead_letter") or {}
    if body.get("dead_lettered", 0) < before + 1:
        problems.append(f"/health dead_lettered did not grow: {before} -> {body}")
    want = {"lead_id": rotten, "partition": sent.partition, "offset": sent.offset}
    if not last.get("reason") or any(last.get(k) != v for k, v in want.items()):
        problems.append(f"/health last_dead_letter is not {want} with a reason: {last}")
    if status != 200:
        problems.append(f"/health {status} after a permanent failure: {body}")
    print(f"\nundecodable state: {time.monotonic() - started:.1f}s")
    assert not problems, "\n".join(problems)
