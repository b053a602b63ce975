"""Handoffs/s and added latency of `leadpulse deliver`, against a bare consumer in the same run.

One run starts the embedded stack (Tansu + redis-server on free 127.0.0.1
ports) and a webhook receiver in its own process (aiohttp; it answers 200
after `--delay-ms` and records when each request arrived). Then, for each
receiver delay (default 1 ms and 20 ms), on topics and a consumer group of
its own, a real `leadpulse deliver` process (one destination, `concurrency`
requests in flight) is measured twice:

  throughput  `--backlog` handoffs are produced at once; deliveries/s is the
              count over the time from the first to the last request the
              receiver got (every request is a signed, verified-shape POST)
  latency     `--rate` handoffs/s for `--seconds`, open loop; for each handoff,
              receiver arrival time minus the time it was produced (its
              `occurred_at` is set to the produce time): what delivery adds to
              the handoff's own event -> handoff latency (bench/latency.py)

Baseline, in the same run and on the same records: a bare aiokafka consumer
(its own group) in this process reading the same topic during the latency
phase; its produce -> consume latency is the Kafka floor the deliverer cannot
beat. `added` = deliverer p50/p99 minus floor p50/p99.

    python -m bench.delivery [--delays 1,20] [--backlog 5000] [--rate 200]
                             [--seconds 10] [--concurrency 64] [--no-save]
    python -m bench.delivery --receiver PORT --delay-ms D   (the receiver alone)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import CpuMeter, machine, percentile, stack, write_result
from leadpulse.schemas.codec import encode
from leadpulse.schemas.messages import Handoff, RuleContribution
from leadpulse.streams.dev.devstack import DevStack, create_topics, free_port
from leadpulse.streams.dev.workerproc import DeliverProcess, stop_process
from leadpulse.streams.settings import Settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
PARTITIONS = 4


# -- the receiver (its own process) ---------------------------------------------------


def receiver_main(port: int, delay_ms: float) -> None:
    from aiohttp import web

    arrivals: list[tuple[float, float]] = []  # (arrived, produced)

    async def hook(request: web.Request) -> web.Response:
        arrived = time.time()
        body = json.loads(await request.read())
        produced = datetime.fromisoformat(body["data"]["occurred_at"]).timestamp()
        arrivals.append((arrived, produced))
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        return web.Response(text="ok")

    async def results(request: web.Request) -> web.Response:
        return web.json_response(arrivals)

    async def reset(request: web.Request) -> web.Response:
        arrivals.clear()
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/results", results)
    app.router.add_post("/reset", reset)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


class ReceiverProcess:
    def __init__(self, delay_ms: float) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "bench.delivery", "--receiver", str(self.port)),
                *("--delay-ms", str(delay_ms)),
            ],
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.results()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise TimeoutError("receiver did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def results(self) -> list[tuple[float, float]]:
        url = f"http://127.0.0.1:{self.port}/results"
        with urllib.request.urlopen(url, timeout=10) as reply:
            return [tuple(pair) for pair in json.load(reply)]  # type: ignore[misc]

    def reset(self) -> None:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/reset", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def stop(self) -> None:
        stop_process(self.process, timeout=5)


# -- producing ----------------------------------------------------------------------------


def handoff(now: float) -> Handoff:
    return Handoff(
        handoff_id=f"h-{uuid.uuid4().hex}",
        lead_id=f"lead-{uuid.uuid4().hex[:10]}",
        engagement=80.0,
        fit=45.0,
        grade="A",
        occurred_at=datetime.fromtimestamp(now, UTC),
        model_version="bench",
        reasons=[RuleContribution(rule="demo-request", points=60.0)],
        profile={"name": "Bench Lead", "company": "Example", "title": "CTO"},
    )


async def produce_backlog(bootstrap: str, topic: str, count: int) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
    await producer.start()
    try:
        futures = []
        for _ in range(count):
            h = handoff(time.time())
            futures.append(await producer.send(topic, encode(h), key=h.lead_id.encode()))
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def steady(bootstrap: str, topic: str, rate: float, seconds: float) -> list[float]:
    """Produce at `rate`/s for `seconds` while a bare consumer reads; its latencies."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-floor-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="latest",
        session_timeout_ms=2000,
        heartbeat_interval_ms=600,
        fetch_max_wait_ms=10,
    )
    await consumer.start()
    deadline = time.monotonic() + 30
    while not consumer.assignment() and time.monotonic() < deadline:
        await consumer.getmany(timeout_ms=100)
    await asyncio.sleep(1.0)  # past the first fetches: start from the end
    floor: list[float] = []
    done = asyncio.Event()
    began = time.time()

    async def consume() -> None:
        while not done.is_set():
            batch = await consumer.getmany(timeout_ms=50)
            now = time.time()
            for records in batch.values():
                for r in records:
                    produced = datetime.fromisoformat(json.loads(r.value)["occurred_at"])
                    if produced.timestamp() >= began:  # not the backlog phase's records
                        floor.append(now - produced.timestamp())

    reading = asyncio.create_task(consume())
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=2, acks=1)
    await producer.start()
    try:
        start = time.monotonic()
        sent = 0
        total = int(rate * seconds)
        while sent < total:
            due = start + sent / rate
            pause = due - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
            h = handoff(time.time())
            await producer.send(topic, encode(h), key=h.lead_id.encode())
            sent += 1
        await producer.flush()
        await asyncio.sleep(2.0)
    finally:
        done.set()
        await reading
        await producer.stop()
        await consumer.stop()
    return floor


# -- one delay ----------------------------------------------------------------------------


def wait_count(receiver: ReceiverProcess, wanted: int, timeout: float) -> list[tuple[float, float]]:
    deadline = time.monotonic() + timeout
    while True:
        got = receiver.results()
        if len(got) >= wanted or time.monotonic() > deadline:
            return got
        time.sleep(0.25)


def measure(
    dev: DevStack, workdir: Path, delay_ms: float, args: argparse.Namespace
) -> dict[str, Any]:
    suffix = uuid.uuid4().hex[:8]
    receiver = ReceiverProcess(delay_ms)
    settings = Settings(
        app_id=f"bench-dlv-{suffix}",
        broker=f"kafka://{dev.bootstrap}",
        redis_url=dev.redis_url,
        handoffs_topic=f"bench.handoffs.{suffix}",
        transitions_topic=f"bench.transitions.{suffix}",
        deliveries_dlq_topic=f"bench.deliveries-dlq.{suffix}",
        partitions=PARTITIONS,
        deliver_web_port=free_port(),
        session_timeout=2.0,
        destinations_file=workdir / f"destinations-{suffix}.yaml",
        data_dir=workdir / suffix,
    )
    create_topics(
        dev.bootstrap,
        [settings.handoffs_topic, settings.transitions_topic, settings.deliveries_dlq_topic],
        PARTITIONS,
    )
    assert settings.destinations_file is not None
    settings.destinations_file.write_text(
        json.dumps(
            {
                "allow_hosts": ["127.0.0.1"],
                "destinations": [
                    {
                        "name": f"d{suffix}",
                        "url": receiver.url,
                        "secret": SECRET,
                        "concurrency": args.concurrency,
                        "timeout": "10s",
                    }
                ],
            }
        )
    )
    deliverer = DeliverProcess(settings, workdir / f"deliver-{suffix}.log", loglevel="warning")
    try:
        deliverer.start()
        deliverer.wait_ready(60)
        cpu = CpuMeter({"deliverer": deliverer.process.pid if deliverer.process else None})
        # throughput: a backlog, as fast as it goes
        cpu.start()
        asyncio.run(produce_backlog(dev.bootstrap, settings.handoffs_topic, args.backlog))
        got = wait_count(receiver, args.backlog, timeout=120)
        spent = cpu.stop()
        arrived = sorted(a for a, _ in got)
        span = arrived[-1] - arrived[0] if len(arrived) > 1 else float("nan")
        throughput = (len(arrived) - 1) / span if span > 0 else 0.0
        receiver.reset()
        began = time.time()
        # latency: a steady rate, against the bare consumer
        floor = asyncio.run(steady(dev.bootstrap, settings.handoffs_topic, args.rate, args.seconds))
        wanted = int(args.rate * args.seconds)
        latencies = [a - p for a, p in wait_count(receiver, wanted, timeout=60) if p >= began]
    finally:
        deliverer.stop()
        receiver.stop()
    warnings = [
        line
        for line in deliverer.log_path.read_text(errors="replace").splitlines()
        if "[WARNING]" in line or "[ERROR]" in line
    ]
    for line in warnings[:5]:
        print(f"  deliverer log: {line}", flush=True)
    result = {
        "deliverer_warnings": len(warnings),
        "delay_ms": delay_ms,
        "backlog": args.backlog,
        "delivered": len(arrived),
        "deliveries_per_s": round(throughput, 1),
        "deliverer_cpu_us_per_delivery": round(1e6 * spent["deliverer"] / max(1, len(arrived)), 1),
        "rate": args.rate,
        "seconds": args.seconds,
        "latency_count": len(latencies),
        "floor_count": len(floor),
    }
    for name, values in (("deliver", latencies), ("floor", floor)):
        for q in (0.5, 0.99):
            key = f"{name}_p{int(q * 100)}_ms"
            result[key] = round(1000 * percentile(values, q), 1) if values else None
    if latencies and floor:
        result["added_p50_ms"] = round(result["deliver_p50_ms"] - result["floor_p50_ms"], 1)
        result["added_p99_ms"] = round(result["deliver_p99_ms"] - result["floor_p99_ms"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--receiver", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--delays", default="1,20", help="receiver delays in ms (1,20)")
    parser.add_argument("--backlog", type=int, default=5000, help="handoffs for throughput")
    parser.add_argument("--rate", type=float, default=200.0, help="handoffs/s for latency")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds at --rate")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    if args.receiver:
        receiver_main(args.receiver, args.delay_ms)
        return
    delays = [float(d) for d in args.delays.split(",") if d]
    before = machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-delivery-") as tmp, stack(Path(tmp)) as dev:
        for delay in delays:
            run = measure(dev, Path(tmp), delay, args)
            runs.append(run)
            print(
                f"receiver {delay:g} ms: {run['deliveries_per_s']:,.0f} deliveries/s "
                f"({run['delivered']}/{run['backlog']}, "
                f"{run['deliverer_cpu_us_per_delivery']} us CPU each); at {args.rate:g}/s: "
                f"deliver p50 {run['deliver_p50_ms']} ms p99 {run['deliver_p99_ms']} ms, "
                f"bare consumer p50 {run['floor_p50_ms']} ms p99 {run['floor_p99_ms']} ms, "
                f"added p50 {run.get('added_p50_ms')} ms p99 {run.get('added_p99_ms')} ms",
                flush=True,
            )
    result = {"machine": before, "loadavg_after": machine()["loadavg"], "runs": runs}
    if not args.no_save:
        print(f"saved {write_result('delivery', result)}")


if __name__ == "__main__":
    main()
