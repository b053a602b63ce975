"""Event-to-handoff latency of a running worker under a steady load.

Starts the embedded stack and one `leadpulse worker`, then produces the demo's
persona mix (bench/data.py) at a steady rate (default 1,000 events/s for
60 s), each event stamped `occurred_at` = the moment it is sent. Buyer-like
leads cross the handoff threshold on some event; a separate consumer reads
the handoffs topic, and for each handoff

    latency = time the handoff was consumed - time its tipping event was sent

(`Handoff.event_id` names the tipping event). Both times are this process's
wall clock. The measuring consumer polls with fetch_max_wait_ms=5 so its own
waiting does not dominate.

    python -m bench.latency [--rate 1000] [--seconds 60] [--batch-within 0.01]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import data
from bench.common import (
    Child,
    CpuMeter,
    cpu_seconds,
    machine,
    percentile,
    stack,
    unique,
    worker_settings,
    write_result,
)
from leadpulse.streams.dev.devstack import DevStack, create_topics

GOALS_MS = {"p50": 20.0, "p99": 100.0}
WINDOW = 10.0
"""Seconds per window of the per-window CPU and latency figures."""
DRAIN_SECONDS = 10.0
"""After the last event: how long to keep reading handoffs."""


class HandoffReader(threading.Thread):
    """Reads the handoffs topic from the start; notes when each handoff arrived."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(daemon=True, name="handoff-reader")
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self.arrived: dict[str, tuple[float, str | None]] = {}
        """handoff_id -> (consumed at, tipping event id); first delivery only."""
        self.stop_flag = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run()
        except BaseException as error:
            self.error = error
            self.ready.set()

    def _run(self) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from leadpulse.schemas import decode_handoff

        consumer = KafkaConsumer(
            bootstrap_servers=self.bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=5,
            fetch_min_bytes=1,
        )
        try:
            # manual assignment: no group join, so it reads from the first moment
            consumer.assign([TopicPartition(self.topic, p) for p in range(self.partitions)])
            consumer.poll(timeout_ms=100)
            self.ready.set()
            while not self.stop_flag.is_set():
                for messages in consumer.poll(timeout_ms=50).values():
                    now = time.time()
                    for message in messages:
                        handoff = decode_handoff(message.value)
                        if handoff.handoff_id not in self.arrived:
                            self.arrived[handoff.handoff_id] = (now, handoff.event_id)
        finally:
            consumer.close()


def produce_steady(
    bootstrap: str,
    topic: str,
    traffic: data.Traffic,
    rate: float,
    sent_at: dict[str, float],
    *,
    linger_ms: int,
    meter: CpuMeter,
    windows: list[dict[str, Any]],
) -> tuple[float, int]:
    """Send the planned events in order at `rate` per second; returns (seconds, sent).

    Every `WINDOW` seconds, appends the CPU share each metered process used
    in that window to `windows`.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=linger_ms)
    events = traffic.events
    started = time.monotonic()
    sent = 0
    mark = (started, {n: cpu_seconds(pid) for n, pid in meter.processes.items()})
    try:
        while sent < len(events):
            if time.monotonic() - mark[0] >= WINDOW:
                mark = _close_window(windows, mark, started, meter)
            due = min(len(events), int((time.monotonic() - started) * rate) + 1)
            while sent < due:
                planned = events[sent]
                body = dict(planned.body)
                if not data.is_bad(body):
                    body["occurred_at"] = datetime.now(UTC).isoformat()
                value = json.dumps(body).encode()
                sent_at[str(body["event_id"])] = time.time()
                producer.send(topic, key=planned.key, value=value)
                sent += 1
            pause = (sent / rate) - (time.monotonic() - started)
            if pause > 0:
                time.sleep(min(pause, 0.005))
        producer.flush(30)
        if time.monotonic() - mark[0] >= 1.0:  # the last, partial window
            _close_window(windows, mark, started, meter)
    finally:
        producer.close(5)
    return time.monotonic() - started, sent


def _close_window(
    windows: list[dict[str, Any]],
    mark: tuple[float, dict[str, float]],
    started: float,
    meter: CpuMeter,
) -> tuple[float, dict[str, float]]:
    now = time.monotonic()
    used = {name: cpu_seconds(pid) for name, pid in meter.processes.items()}
    share = {name: round((used[name] - mark[1][name]) / (now - mark[0]), 3) for name in used}
    windows.append({"from_s": round(mark[0] - started, 1), "cpu_share": share})
    return now, used


def run(args: argparse.Namespace, dev: DevStack, workdir: Path) -> dict[str, Any]:
    events = int(args.rate * args.seconds)
    leads = max(1, events // args.events_per_lead)
    traffic = data.plan(events, leads, seed=args.seed, span=args.seconds)
    topic = unique("bench.latency.events")
    create_topics(dev.bootstrap, [topic], args.partitions)
    settings = worker_settings(
        dev,
        workdir,
        events_topic=topic,
        partitions=args.partitions,
        app_id=unique("bench-latency"),
        batch_within=args.batch_within,
        batch_size=args.batch_size,
    )
    worker = Child(
        settings,
        workdir / "worker.log",
        module="bench.faust_floor" if args.floor else None,
        loglevel=args.loglevel,
        env={"BENCH_FLOOR_TRACE": "1"} if args.floor else None,
    )
    reader = HandoffReader(dev.bootstrap, settings.handoffs_topic, args.partitions)
    sent_at: dict[str, float] = {}
    windows: list[dict[str, Any]] = []
    try:
        worker.start()
        worker.wait_assigned(timeout=90)
        reader.start()
        if not reader.ready.wait(30) or reader.error is not None:
            raise RuntimeError(f"handoff reader did not start: {reader.error}")
        assert worker.process is not None
        meter = CpuMeter(
            {"worker": worker.process.pid, "tansu": dev.kafka.pid, "redis": dev.redis.pid}
        )
        meter.start()
        print(f"producing {events} events over {leads} leads at {args.rate:.0f}/s ...", flush=True)
        started = time.time()
        seconds, sent = produce_steady(
            dev.bootstrap,
            topic,
            traffic,
            args.rate,
            sent_at,
            linger_ms=args.linger_ms,
            meter=meter,
            windows=windows,
        )
        deadline = time.monotonic() + DRAIN_SECONDS
        while (
            time.monotonic() < deadline
            and worker.stats().get("scored", 0)
            + worker.stats().get("duplicates", 0)
            + worker.stats().get("dead_lettered", 0)
            < sent
        ):
            time.sleep(0.1)
        time.sleep(1.0)  # the last handoffs' way to the reader
        meter.stop()
        stats = worker.stats()
    finally:
        reader.stop_flag.set()
        reader.join(10)
        worker.stop()
    timed = sorted(
        (sent_at[event_id], 1000 * (at - sent_at[event_id]))
        for at, event_id in reader.arrived.values()
        if event_id is not None and event_id in sent_at
    )
    latencies = [ms for _, ms in timed]
    for window in windows:  # the latency of the handoffs whose event was sent in it
        begin = started + window["from_s"]
        inside = [ms for at, ms in timed if begin <= at < begin + WINDOW]
        if inside:
            window["latency_ms"] = {
                "p50": round(percentile(inside, 0.5), 1),
                "p99": round(percentile(inside, 0.99), 1),
                "n": len(inside),
            }
    result: dict[str, Any] = {
        "rate": args.rate,
        "seconds": args.seconds,
        "events_sent": sent,
        "send_seconds": seconds,
        "achieved_rate": sent / seconds,
        "leads": leads,
        "partitions": args.partitions,
        "batch_within": args.batch_within,
        "batch_size": args.batch_size,
        "handoffs": len(reader.arrived),
        "measured": len(latencies),
        "worker_stats": stats,
        "cpu_seconds": meter.spent,
        "cpu_share": {name: spent / seconds for name, spent in meter.spent.items()},
        "linger_ms": args.linger_ms,
        "windows": windows,
    }
    if latencies:
        result["latency_ms"] = {
            "p50": percentile(latencies, 0.50),
            "p95": percentile(latencies, 0.95),
            "p99": percentile(latencies, 0.99),
            "max": max(latencies),
            "min": min(latencies),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to produce")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--events-per-lead", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--batch-within", type=float, default=0.01, help="worker batch_within")
    parser.add_argument("--batch-size", type=int, default=500, help="worker batch_size")
    parser.add_argument(
        "--linger-ms", type=int, default=2, help="the load generator's producer linger"
    )
    parser.add_argument("--loglevel", default="info")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="run the bare Faust agent instead: time from send to the agent's batch",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    info = machine()
    workdir = Path(tempfile.mkdtemp(prefix="leadpulse-latency-"))
    try:
        with stack(workdir / "stack") as dev:
            result = run(args, dev, workdir)
    finally:
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    result["machine"] = info
    stats = result["worker_stats"]
    print(
        f"sent {result['events_sent']} events in {result['send_seconds']:.1f}s "
        f"({result['achieved_rate']:.0f}/s); {result['handoffs']} handoffs, "
        f"{result['measured']} timed"
    )
    share = ", ".join(f"{k} {100 * v:.0f}%" for k, v in result["cpu_share"].items())
    print(f"CPU while producing (share of one core): {share}")
    for window in result["windows"]:
        cpu = ", ".join(f"{k} {100 * v:.0f}%" for k, v in window["cpu_share"].items())
        lat = window.get("latency_ms", {})
        print(
            f"  from {window['from_s']:4.0f}s: CPU {cpu}; "
            f"latency p50 {lat.get('p50', float('nan')):.0f} ms, "
            f"p99 {lat.get('p99', float('nan')):.0f} ms"
        )
    if args.floor:
        print(f"framework only: send -> agent batch lag (ms): {stats.get('lag_ms')}")
    lat = result.get("latency_ms")
    if lat:
        print("event -> handoff latency (ms)")
        for name in ("p50", "p95", "p99", "max"):
            goal = GOALS_MS.get(name)
            verdict = (
                ""
                if goal is None
                else (f"  (goal <= {goal:.0f}: {'ok' if lat[name] <= goal else 'MISS'})")
            )
            print(f"  {name:4} {lat[name]:8.1f}{verdict}")
    else:
        print("no handoffs measured")
    if not args.no_save:
        print(f"written to {write_result('latency', result)}")
    return 0 if lat or args.floor else 1


if __name__ == "__main__":
    sys.exit(main())
