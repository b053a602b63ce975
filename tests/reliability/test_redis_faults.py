"""Redis faults under a running worker: a crash that loses the last second, and a stall.

1. SIGKILL of an AOF (``appendfsync everysec``, as docker-compose ships it)
   redis-server under load, restarted on the same port and directory while the
   worker runs. A SIGKILL alone loses nothing (the kernel keeps what Redis
   wrote), so the AOF is also cut back to where it was one second before the
   kill: what a host crash leaves with ``everysec``. The contract: Redis holds
   each partition's processed offset in the same atomic update as the state,
   and the worker re-reads what Redis lost. The end states equal an
   uninterrupted in-memory run, every handoff of that run is published, and no
   transition id is ever published for two different decisions (ids derive
   from what caused them, not from a counter the rollback reuses).
2. SIGSTOP of redis-server with ``redis_socket_timeout=1``,
   ``unhealthy_after=3``: calls time out and are retried, /health turns 503
   within a bounded time, and after SIGCONT the worker recovers: the events
   produced during the stall are scored and /health is 200 again.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from leadpulse.streams.dev.devstack import DevStack, RedisServer, free_port
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.processes.lifecycle import EXIT_RESTART
from leadpulse.streams.settings import Settings
from tests.integration.faults import (
    AofMark,
    Topic,
    alive_check,
    frozen,
    health,
    poll,
    reused_transition_ids,
    sigkill,
)
from tests.integration.harness import produce, start_worker, worker_settings
from tests.reliability.campaign import (
    CAMPAIGN_MODEL,
    CleanRunThread,
    assert_published,
    assert_same_states,
    campaign_traffic,
    encode_bodies,
    produce_records,
    read_states,
    write_model,
)

SEED = 20261201
PARTITIONS = 4
EVENTS = 20_000
LEADS = 1_200
ANONYMOUS = 150
LOST_WINDOW = 1.0
"""Seconds of writes the crash takes back (appendfsync everysec)."""
IDLE_GIVE_UP = 15.0
"""Stop waiting for the lost events once the worker scored nothing for this long."""

STALL_BOUND = 25.0
"""Seconds from SIGSTOP by which /health must be 503 with the step retried."""
RETRIES_SEEN = 3
"""Failed attempts of one step that show the calls time out and are retried."""

SHIPPED_AOF = ("--appendfsync", "everysec")
"""docker-compose.yml: redis-server --appendonly yes --appendfsync everysec."""
NO_REWRITE = ("--auto-aof-rewrite-percentage", "0")
"""No AOF rewrite during the test, so the cut-back point stays in one file."""


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(
        free_port(),
        appendonly=True,
        workdir=tmp_path / "redis",
        extra_args=[*SHIPPED_AOF, *NO_REWRITE],
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def plain_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), workdir=tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Worker:
    """The worker under test; restarted (and counted) only if it exits on its own."""

    def __init__(self, settings: Settings, log: Path) -> None:
        self.settings, self.log = settings, log
        self.process: WorkerProcess = start_worker(settings, log)
        self.carried = 0
        self.last = 0
        self.own_exits = 0
        self.exit_codes: list[int | None] = []

    def scored(self) -> int:
        stats = self.process.stats()
        if "scored" in stats:
            self.last = stats["scored"]
        return self.carried + self.last

    def keep_alive(self) -> None:
        if self.process.alive():
            return
        self.own_exits += 1
        self.exit_codes.append(self.process.process.returncode if self.process.process else None)
        if self.own_exits > 3:
            raise AssertionError(f"worker keeps exiting:\n{self.process.log_tail()}")
        self.carried += self.last
        self.last = 0
        self.process.stop()
        self.process = start_worker(self.settings, self.log)

    def stop(self) -> None:
        self.process.stop()


class Progress:
    """Notices when the worker has stopped scoring anything."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.seen = worker.scored()
        self.since = time.monotonic()

    def idle_for(self, seconds: float) -> bool:
        now = self.worker.scored()
        if now != self.seen:
            self.seen, self.since = now, time.monotonic()
        return time.monotonic() - self.since > seconds


def test_redis_crash_losing_last_second_rereads_events(
    stack: DevStack, tmp_path: Path, aof_redis: RedisServer
) -> None:
    started = time.monotonic()
    settings = worker_settings(stack, tmp_path, partitions=PARTITIONS).replace(
        model_file=write_model(tmp_path), batch_size=250, redis_url=aof_redis.url
    )
    traffic = campaign_traffic(SEED, EVENTS, LEADS, partitions=PARTITIONS, anonymous=ANONYMOUS)
    sent = produce_records(settings, encode_bodies(traffic.bodies))
    clean_thread = CleanRunThread(sent, settings)
    clean_thread.start()
    threshold = EVENTS // 4
    worker = Worker(settings, tmp_path / "worker.log")
    try:
        waited = poll(lambda: worker.scored() >= threshold, timeout=90, check=worker.keep_alive)
        assert waited is not None, f"worker never scored {threshold} events"
        mark = AofMark.take(aof_redis)
        at_mark = worker.scored()
        time.sleep(LOST_WINDOW)
        at_kill = worker.scored()
        redis_pid = aof_redis.pid
        sigkill(aof_redis)
        dropped = mark.cut_back()
        nothing_lost = (
            f"the worker committed nothing in the lost second ({at_mark} -> {at_kill} scored, "
            f"{dropped} AOF bytes): the test would prove nothing"
        )
        assert at_kill > at_mark, nothing_lost
        assert dropped > 0, nothing_lost
        aof_redis.restart()
        assert aof_redis.pid != redis_pid

        clean = clean_thread.wait(timeout=180)
        moves = [(t["from_stage"], t["to_stage"]) for t in clean.transitions().values()]
        assert moves.count(("iql", "mql")) > 100, moves[:5]
        assert moves.count(("mql", "sal")) > 20, moves[:5]
        earliest = clean.store.earliest_due
        assert earliest is None or earliest[0] > time.time() + 1800, (
            "a decay recycle could race the sweeper: the comparison would not be exact"
        )
        subjects = sorted({*traffic.leads, *traffic.anonymous} & {*clean.states(), *traffic.merged})
        want_applied = {s: st.events_applied for s, st in clean.states().items()}

        def all_applied() -> bool:
            real = read_states(settings.redis_url, list(subjects))
            return all(
                (st.events_applied if st else None) == want_applied.get(s) for s, st in real.items()
            )

        progress = Progress(worker)
        applied_in = poll(
            lambda: all_applied() or progress.idle_for(IDLE_GIVE_UP),
            timeout=120,
            interval=0.5,
            check=worker.keep_alive,
        )
        if applied_in is not None and not all_applied():
            applied_in = None
        want_t, want_h = clean.transitions(), clean.handoffs()
        with Topic(settings, settings.transitions_topic) as t_topic:
            # short waits when the states already show the failure
            wait = 30 if applied_in is not None else 5
            t_topic.until(lambda vs: want_t.keys() <= {v["transition_id"] for v in vs}, wait)
            published_t = list(t_topic.values)
        with Topic(settings, settings.handoffs_topic) as h_topic:
            h_topic.until(lambda vs: want_h.keys() <= {v["handoff_id"] for v in vs}, wait)
            published_h = list(h_topic.values)
        real = read_states(settings.redis_url, list(subjects))
    finally:
        worker.stop()

    problems: list[str] = []
    if applied_in is None:
        short = sum(
            1
            for s, st in real.items()
            if (st.events_applied if st else None) != want_applied.get(s)
        )
        problems.append(
            f"{short} subjects never reached the clean run's events_applied "
            f"(worker idle for {IDLE_GIVE_UP:.0f}s or 120s passed)"
        )
    if any(code != EXIT_RESTART for code in worker.exit_codes):
        # a restart is the supervisor's (here: keep_alive's), asked for with status 75
        problems.append(f"the worker exited with {worker.exit_codes}, not {EXIT_RESTART} each")
    reused = reused_transition_ids(published_t)
    if reused:
        tid, decisions = next(iter(reused.items()))
        problems.append(
            f"{len(reused)} transition ids published for two different decisions, e.g. "
            f"{tid}: {sorted(decisions)}"
        )
    for check in (
        lambda: assert_same_states(real, clean.states(), CAMPAIGN_MODEL, subjects),
        lambda: assert_published(want_h, [_raw(v) for v in published_h], "handoff_id"),
    ):
        try:
            check()
        except AssertionError as error:
            problems.append(str(error))
    print(
        f"\nredis SIGKILL + AOF cut back {LOST_WINDOW}s ({dropped} bytes; scored {at_mark} at "
        f"the mark, {at_kill} at the kill): {len(want_t)} transitions, {len(want_h)} handoffs "
        f"in the clean run; worker exited on its own {worker.own_exits}x; "
        f"{time.monotonic() - started:.0f}s"
    )
    assert not problems, "\n".join(problems)


def _raw(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def test_redis_stall_turns_health_503_then_recovers(
    stack: DevStack, tmp_path: Path, plain_redis: RedisServer
) -> None:
    started = time.monotonic()
    settings = worker_settings(stack, tmp_path).replace(
        redis_url=plain_redis.url,
        redis_socket_timeout=1.0,
        redis_connect_timeout=1.0,
        unhealthy_after=3.0,
    )
    tag = uuid.uuid4().hex[:6]
    warm = [f"warm-{tag}-{i}" for i in range(20)]
    stalled = [f"stall-{tag}-{i}" for i in range(40)]
    now = datetime.now(UTC)
    problems: list[str] = []
    worker = start_worker(settings, tmp_path / "worker.log")
    check = alive_check(worker)
    try:
        produce(settings, (_event(lead, "page_view", now) for lead in warm))
        assert poll(
            lambda: all(st is not None for st in read_states(plain_redis.url, list(warm)).values()),
            timeout=30,
            check=check,
        ), "warm-up events were not scored"
        status, body = health(settings)
        assert status == 200, (status, body)
        assert body.get("healthy") is True, body

        stall_started = time.monotonic()
        with frozen(plain_redis):
            produce(settings, (_event(lead, "demo_request", now, seconds=1) for lead in stalled))
            seen: dict[str, Any] = {}
            first_503: float | None = None

            def unhealthy_and_retrying() -> bool:
                nonlocal first_503
                status, body = health(settings)
                seen.update(status=status, body=body)
                if status != 503:
                    return False
                if first_503 is None:
                    first_503 = time.monotonic() - stall_started
                failing = body.get("failing") or {}
                return body.get("healthy") is False and any(
                    f.get("attempts", 0) >= RETRIES_SEEN
                    and f.get("for_seconds", 0) >= settings.unhealthy_after - 0.5
                    for f in failing.values()
                )

            poll(unhealthy_and_retrying, timeout=STALL_BOUND, interval=0.25, check=check)
            if first_503 is None:
                problems.append(
                    f"/health did not turn 503 within {STALL_BOUND:.0f}s of SIGSTOP "
                    f"(socket timeout 1s, unhealthy_after 3s); last: {seen}"
                )
            elif not unhealthy_and_retrying():
                problems.append(
                    f"{STALL_BOUND:.0f}s into the stall no step reports >= {RETRIES_SEEN} "
                    f"attempts failing for >= unhealthy_after with healthy=false: the calls do "
                    f"not time out and get retried; last: {seen}"
                )
            stall_seconds = time.monotonic() - stall_started

        def recovered() -> bool:
            status, _ = health(settings)
            if status != 200:
                return False
            got = read_states(plain_redis.url, list(stalled))
            return all(st is not None and st.stage == "mql" for st in got.values())

        back = poll(recovered, timeout=45, interval=0.25, check=check)
        if back is None:
            got = read_states(plain_redis.url, list(stalled))
            missing = [s for s, st in got.items() if st is None or st.stage != "mql"]
            problems.append(
                f"45s after SIGCONT: /health {health(settings)}, "
                f"{len(missing)} of {len(stalled)} stalled leads not scored to MQL"
            )
    finally:
        worker.stop()
    print(
        f"\nredis SIGSTOP: 503 after {first_503 if first_503 is None else round(first_503, 1)}s, "
        f"health then {seen.get('body', {}).get('failing')} "
        f"(stall {stall_seconds:.1f}s), recovered {back if back is None else round(back, 1)}s "
        f"after SIGCONT; {time.monotonic() - started:.0f}s"
    )
    assert not problems, "\n".join(problems)


def _event(lead: str, kind: str, at: datetime, seconds: float = 0.0) -> dict[str, Any]:
    return {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "lead_id": lead,
        "occurred_at": (at + timedelta(seconds=seconds + random.random())).isoformat(),
    }
