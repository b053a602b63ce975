"""Throughput of leadpulse against its ceilings and a hand-written baseline.

One run starts the embedded stack (Tansu + redis-server on free 127.0.0.1
ports), produces the demo's persona mix once (default 200,000 events over
20,000 leads, 12 partitions), then consumes that same topic with a fresh
consumer group per measurement:

  raw          aiokafka consumer, read + schemas.decode_event: broker+client ceiling
  faust-floor  bare Faust agent with the worker's settings that only decodes
  naive        kafka-python consumer, per event Redis GET -> scoring.apply -> SET
  leadpulse    the real `leadpulse worker` (one process)
  two-workers  two `leadpulse worker` processes in one consumer group

Each rate is events / (time of the last event done - time the first event was
consumed), so process start and consumer-group join are excluded (for two
workers: from the moment both were consuming). Next to it, the CPU time per
event of the consumer process(es), Tansu and Redis. The ratios are against
baselines measured in the same run, on the same data. See bench/README.md.

    python -m bench.throughput [--events N] [--leads N] [--partitions N] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import data
from bench.common import (
    SESSION_TIMEOUT,
    Child,
    CpuMeter,
    counted,
    machine,
    produce,
    stack,
    stop_all,
    unique,
    wait_consumed,
    worker_settings,
    write_result,
)
from leadpulse.streams.dev.devstack import DevStack, create_topics

MEASURES = ("raw", "faust-floor", "naive", "leadpulse", "two-workers")
JOIN_TIMEOUT = 60.0


def _timeout(events: int) -> float:
    """Generous but bounded: nothing here runs below 500 events/s."""
    return 60.0 + events / 500


# -- raw: aiokafka, read and decode -----------------------------------------------------


def servers(dev: DevStack) -> dict[str, int | None]:
    return {"tansu": dev.kafka.pid, "redis": dev.redis.pid}


def measure_raw(dev: DevStack, topic: str, expected: int) -> dict[str, Any]:
    return asyncio.run(asyncio.wait_for(_raw(dev, topic, expected), _timeout(expected)))


async def _raw(dev: DevStack, topic: str, expected: int) -> dict[str, Any]:
    from datetime import UTC, datetime

    from aiokafka import AIOKafkaConsumer

    from leadpulse.schemas import DecodeError, decode_event

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=dev.bootstrap,
        group_id=unique("bench-raw"),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=int(SESSION_TIMEOUT * 1000),
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=100,
    )
    await consumer.start()
    meter = CpuMeter({"consumer": None, **servers(dev)})
    try:
        count = bad = 0
        first = 0.0
        now = datetime.now(UTC)
        while count < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for messages in batches.values():
                if not first:
                    first = time.time()
                    meter.start()
                for message in messages:
                    try:
                        decode_event(message.value or b"", now=now)
                    except DecodeError:
                        bad += 1
                count += len(messages)
        last = time.time()
        meter.stop()
    finally:
        await consumer.stop()
    return {
        "events": count,
        "dead_lettered": bad,
        "seconds": last - first,
        "cpu_us_per_event": meter.per_event_us(count),
    }


# -- naive: kafka-python + one Redis read-modify-write per event ------------------------


def measure_naive(dev: DevStack, topic: str, expected: int) -> dict[str, Any]:
    """What one writes by hand: consume, GET the lead's JSON, apply, SET it back."""
    from datetime import UTC, datetime

    import redis
    from kafka import KafkaConsumer

    from leadpulse.schemas import DecodeError, decode_event
    from leadpulse.scoring import LeadState, apply, default_model, new_lead

    model = default_model()
    client = redis.Redis.from_url(dev.redis_url)
    client.flushall()
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=dev.bootstrap,
        group_id=unique("bench-naive"),
        auto_offset_reset="earliest",
        session_timeout_ms=int(SESSION_TIMEOUT * 1000),
        heartbeat_interval_ms=500,
        fetch_max_wait_ms=100,
    )
    deadline = time.monotonic() + _timeout(expected)
    meter = CpuMeter({"consumer": None, **servers(dev)})
    try:
        count = bad = 0
        first = 0.0
        now = datetime.now(UTC)
        while count < expected and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=1000, max_records=500).values():
                if not first:
                    first = time.time()
                    meter.start()
                for message in messages:
                    count += 1
                    try:
                        event = decode_event(message.value or b"", now=now)
                    except DecodeError:
                        bad += 1
                        continue
                    key = f"naive:{event.subject}"
                    blob = client.get(key)
                    if blob is None:
                        state = new_lead(event.subject, anonymous=event.lead_id is None)
                    else:
                        state = LeadState.model_validate_json(blob)
                    state, _ = apply(state, event, model)
                    client.set(key, state.model_dump_json())
        last = time.time()
        meter.stop()
        if count < expected:
            raise TimeoutError(f"naive consumer read {count} of {expected} events")
    finally:
        consumer.close()
        client.flushall()
        client.close()
    return {
        "events": count,
        "dead_lettered": bad,
        "seconds": last - first,
        "cpu_us_per_event": meter.per_event_us(count),
    }


# -- Faust processes: the floor agent and leadpulse workers -----------------------------


def measure_children(
    dev: DevStack,
    workdir: Path,
    topic: str,
    partitions: int,
    expected: int,
    *,
    processes: int,
    module: str | None,
    name: str,
    loglevel: str,
    batch_within: float | None = None,
    batch_size: int | None = None,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Start `processes` children in one fresh group; time first batch -> all counted."""
    import redis

    client = redis.Redis.from_url(dev.redis_url)
    try:
        client.flushall()
    finally:
        client.close()
    app_id = unique(f"bench-{name}")
    overrides: dict[str, Any] = {}
    if batch_within is not None:
        overrides["batch_within"] = batch_within
    if batch_size is not None:
        overrides["batch_size"] = batch_size
    children: list[Child] = []
    spies: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(processes):
            settings = worker_settings(
                dev, workdir, events_topic=topic, partitions=partitions, app_id=app_id, **overrides
            )
            settings = settings.replace(data_dir=workdir / f"{app_id}-{i}")
            log_path = workdir / f"{app_id}-{i}.log"
            children.append(Child(settings, log_path, module=module, loglevel=loglevel))
        for child in children:
            child.start()
        if profile is not None:
            spies = [_py_spy(child, profile / f"{name}-{i}") for i, child in enumerate(children)]
        watched: dict[str, int | None] = servers(dev)
        for i, child in enumerate(children):
            assert child.process is not None
            watched[f"consumer{i or ''}"] = child.process.pid
        meter = CpuMeter(watched)
        stats, (all_active_at, counted_then) = wait_consumed(
            children, expected, JOIN_TIMEOUT + _timeout(expected), meter
        )
    finally:
        stop_all(children)
        for spy in spies:  # py-spy ends with its target; never wait on it for long
            try:
                spy.wait(30)
            except subprocess.TimeoutExpired:
                spy.kill()
                spy.wait(5)
    first = min(s["first_batch_at"] for s in stats if s.get("first_batch_at"))
    last = max(s["last_batch_at"] for s in stats if s.get("last_batch_at"))
    result: dict[str, Any] = {
        "events": sum(counted(s) for s in stats),
        "dead_lettered": sum(s.get("dead_lettered", 0) for s in stats),
        "seconds": last - first,
        "cpu_us_per_event": meter.per_event_us(expected - counted_then),
        "per_process": [
            {
                "counted": counted(s),
                "first_batch_at": s.get("first_batch_at"),
                "last_batch_at": s.get("last_batch_at"),
                "log": str(c.log_path),
            }
            for s, c in zip(stats, children, strict=True)
        ],
    }
    if module is None:
        transitions: dict[str, int] = {}
        for s in stats:
            for k, v in s.get("transitions", {}).items():
                transitions[k] = transitions.get(k, 0) + v
        result["transitions"] = transitions
        result["duplicates"] = sum(s.get("duplicates", 0) for s in stats)
        result["published"] = sum(s.get("published", 0) for s in stats)
    if processes > 1:
        starts = [s["first_batch_at"] for s in stats if s.get("first_batch_at")]
        result["first_batch_spread"] = max(starts) - min(starts)
        # Workers that joined the group in different generations start a rebalance
        # apart: the rate counts from the first poll at which all were consuming.
        result["events_per_s_whole"] = result["events"] / result["seconds"]
        result["all_active"] = {"events": expected - counted_then, "from": all_active_at}
        result["events_per_s"] = (expected - counted_then) / (last - all_active_at)
    return result


def _py_spy(child: Child, stem: Path) -> subprocess.Popen[bytes]:
    """Sample the child until it exits: collapsed stacks (flamegraph.pl / speedscope input)."""
    assert child.process is not None
    stem.parent.mkdir(parents=True, exist_ok=True)
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(child.process.pid),
            "--rate",
            "250",
            "--nonblocking",
            "--format",
            "raw",
            "-o",
            f"{stem}.folded.txt",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


# -- the run --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--leads", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="20,000 events over 2,000 leads")
    parser.add_argument(
        "--only", default=",".join(MEASURES), help=f"comma-separated subset of {MEASURES}"
    )
    parser.add_argument("--loglevel", default="info", help="worker log level (info)")
    parser.add_argument(
        "--batch-within", type=float, help="worker (and floor) batch_within, seconds"
    )
    parser.add_argument("--batch-size", type=int, help="worker (and floor) batch_size")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument(
        "--profile", type=Path, help="py-spy record the Faust processes into this directory"
    )
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.leads = 20_000, 2_000
    only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(only) - set(MEASURES)
    if unknown:
        parser.error(f"unknown measures {sorted(unknown)}; choose from {MEASURES}")

    began = time.monotonic()
    traffic = data.plan(args.events, args.leads, seed=args.seed)
    records = data.encode(traffic, end=time.time() - 1)
    expected = len(records)
    print(
        f"{expected} events over {args.leads} leads, {args.partitions} partitions "
        f"({', '.join(f'{k} {v}' for k, v in traffic.personas.most_common())})",
        flush=True,
    )
    workdir = Path(tempfile.mkdtemp(prefix="leadpulse-bench-"))
    results: dict[str, dict[str, Any]] = {}
    info = machine()
    try:
        with stack(workdir / "stack") as dev:
            topic = unique("bench.events")
            create_topics(dev.bootstrap, [topic], args.partitions)
            seconds = produce(dev.bootstrap, topic, records)
            print(f"produced in {seconds:.1f}s ({expected / seconds:,.0f} events/s)", flush=True)
            for name in only:
                print(f"measuring {name} ...", flush=True)
                if name == "raw":
                    result = measure_raw(dev, topic, expected)
                elif name == "naive":
                    result = measure_naive(dev, topic, expected)
                else:
                    result = measure_children(
                        dev,
                        workdir,
                        topic,
                        args.partitions,
                        expected,
                        processes=2 if name == "two-workers" else 1,
                        module="bench.faust_floor" if name == "faust-floor" else None,
                        name=name,
                        loglevel=args.loglevel,
                        profile=args.profile,
                        batch_within=args.batch_within,
                        batch_size=args.batch_size,
                    )
                result.setdefault("events_per_s", result["events"] / result["seconds"])
                results[name] = result
                detail = f"{result['events']} events in {result['seconds']:.2f}s"
                if "all_active" in result:
                    detail = (
                        f"{result['all_active']['events']} events after both were consuming; "
                        f"all {result['events']}: {result['events_per_s_whole']:,.0f}/s, "
                        f"second started {result['first_batch_spread']:.1f}s later"
                    )
                print(f"  {name:12} {result['events_per_s']:9,.0f} events/s ({detail})", flush=True)
    finally:
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    ratios = _ratios(results)
    _report(results, ratios)
    if not args.no_save:
        path = write_result(
            "throughput",
            {
                "events": expected,
                "leads": args.leads,
                "partitions": args.partitions,
                "seed": args.seed,
                "results": results,
                "ratios": ratios,
                "machine": info,
                "loadavg_after": list(__import__("os").getloadavg()),
                "total_seconds": time.monotonic() - began,
            },
        )
        print(f"written to {path}")
    return 0


GOALS = {
    "leadpulse/faust-floor": 0.8,
    "leadpulse/naive": 1.0,
    "two-workers/leadpulse": 1.5,
}


def _ratios(results: dict[str, dict[str, Any]]) -> dict[str, float]:
    rate = {name: r["events_per_s"] for name, r in results.items()}
    pairs = [
        ("leadpulse", "faust-floor"),
        ("leadpulse", "naive"),
        ("leadpulse", "raw"),
        ("two-workers", "leadpulse"),
        ("faust-floor", "raw"),
    ]
    ratios = {f"{a}/{b}": rate[a] / rate[b] for a, b in pairs if a in rate and b in rate}
    cpu = {
        name: sum(v for k, v in r.get("cpu_us_per_event", {}).items() if k.startswith("consumer"))
        for name, r in results.items()
    }
    for a, b in (("leadpulse", "faust-floor"), ("leadpulse", "naive")):
        if cpu.get(a) and cpu.get(b):
            ratios[f"{a}/{b} by consumer CPU"] = cpu[b] / cpu[a]
    return ratios


def _report(results: dict[str, dict[str, Any]], ratios: dict[str, float]) -> None:
    print("\nevents/s and CPU per event (microseconds: consumer process(es), tansu, redis)")
    for name, result in results.items():
        cpu = result.get("cpu_us_per_event", {})
        consumer = sum(v for k, v in cpu.items() if k.startswith("consumer"))
        print(
            f"  {name:12} {result['events_per_s']:9,.0f}   cpu {consumer:6.1f} us"
            f"  tansu {cpu.get('tansu', 0):5.1f}  redis {cpu.get('redis', 0):5.1f}"
        )
    print("ratios")
    for name, value in ratios.items():
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"  (goal >= {goal}: {'ok' if value >= goal else 'MISS'})"
        print(f"  {name:24} {value:6.2f}{verdict}")
    one, two = results.get("leadpulse"), results.get("two-workers")
    if one and two and one.get("transitions") != two.get("transitions"):
        print(
            "  transitions, one worker vs two (arrival order across partitions decides "
            f"some; see bench/README.md): {json.dumps(one.get('transitions'))} vs "
            f"{json.dumps(two.get('transitions'))}"
        )


if __name__ == "__main__":
    sys.exit(main())
