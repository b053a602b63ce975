"""Events/s into Kafka through the collector's ``/v1/batch``, against its ceilings.

One run starts the embedded stack (Tansu + redis-server on free 127.0.0.1
ports), pre-generates the request bodies segment-analytics-python sends
(``{"batch": [100 track/page/identify messages], "sentAt", "writeKey"}``, as
JSON bytes, before any timing), then measures, one after the other:

  bare        a bare aiohttp app in its own process (``--bare-server PORT``)
              that only reads each body and ``json.loads`` it: the HTTP ceiling
  collector   the real ``leadpulse collect`` (one process, `CollectorProcess`)
  rate        the collector at a fixed rate (default 5,000 events/s = 50
              requests/s of 100), open loop: each request has its scheduled
              send time and its latency runs from then, so queuing counts
  direct      an aiokafka producer in this process sending the same events as
              the collector would (its own intake's BehaviorEvent bytes, keyed
              by subject), acks=all, 5 ms linger, as fast as it can

bare and collector are closed loop: `--clients` connections (keep-alive, one
aiohttp client session in this process) each post the next body as soon as
the previous one was answered, for `--seconds`; events/s counts the events
of the answers with status 200 (the collector's ``accepted``), latency runs
from the post to the answer read. Each has a short warm-up first (not
counted). At the end the collector's events topic is consumed from the
start and counted (Tansu under-reports end offsets, so this reads them all):
it must hold at least every event the collector acknowledged.

    python -m bench.collector [--clients 8] [--seconds 15] [--rate 5000] [--json]
    python -m bench.collector --bare-server PORT    (the baseline server alone)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.common import CpuMeter, machine, percentile, stack, unique, write_result
from leadpulse.streams.dev.devstack import DevStack, create_topics, free_port
from leadpulse.streams.dev.workerproc import CollectorProcess, stop_process

MEASURES = ("bare", "collector", "rate", "direct")
PER_REQUEST = 100
WRITE_KEY = "wk_bench_collector_0123456789abcdef"
SOURCE = "bench"
SDK_VERSION = "2.4.0"  # segment-analytics-python, as pinned in pyproject.toml
WARMUP_SECONDS = 1.5
CPU_OF = ("server", "tansu", "client")
GOAL_RATIO = 0.5
"""collector events/s >= this x the bare handler's"""
GOAL_EVENTS_PER_S = 20_000.0
GOAL_P99_MS = 50.0
"""at the fixed rate (5,000 events/s by default)"""

# -- the bodies, as segment-analytics-python builds them --------------------------------

SITE = "https://www.example.com"
PAGES = [
    ("/", "Home"),
    ("/pricing", "Pricing"),
    ("/product", "Product tour"),
    ("/blog/lead-scoring", "Lead scoring, explained"),
    ("/blog/intent-data", "What intent data tells you"),
    ("/docs/getting-started", "Getting started"),
    ("/customers", "Customers"),
    ("/careers", "Careers"),
]
REFERRERS = [
    "",
    "https://www.google.com/",
    "https://www.linkedin.com/",
    "https://news.ycombinator.com/",
]
TRACKS: list[tuple[str, dict[str, Any]]] = [
    ("Email Clicked", {"campaign": "nov-newsletter", "link": "cta-primary"}),
    ("Email Opened", {"campaign": "nov-newsletter"}),
    ("Content Downloaded", {"asset": "roi-guide", "format": "pdf"}),
    ("Webinar Registered", {"webinar": "scoring-101", "date": "2026-12-10"}),
    ("Trial Started", {"plan": "team", "seats": 5}),
    ("Feature Used", {"feature": "pipelines", "count": 3, "workspace": "ws-17"}),
    ("Demo Requested", {"source": "pricing-page", "company_size": "51-200"}),
]
USER_AGENTS = [
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
]
CAMPAIGNS: list[dict[str, str] | None] = [
    None,
    None,
    {"name": "nov-newsletter", "source": "newsletter", "medium": "email"},
    {"name": "brand", "source": "google", "medium": "cpc", "term": "lead scoring"},
    {"name": "retarget-q4", "source": "linkedin", "medium": "paid-social", "content": "video"},
]
INDUSTRIES = ["software", "financial-services", "healthcare", "education", "retail"]


def _message(rng: random.Random, leads: int, at: datetime) -> dict[str, Any]:
    """One message as `segment.analytics.Client._enqueue` leaves it (None values kept)."""
    lead = rng.randrange(leads)
    anonymous_id = str(uuid.UUID(int=lead * 7919 + 1, version=4))
    path, title = rng.choice(PAGES)
    campaign = rng.choice(CAMPAIGNS)
    context: dict[str, Any] = {
        "page": {
            "path": path,
            "referrer": rng.choice(REFERRERS),
            "title": title,
            "url": SITE + path,
        },
        "userAgent": rng.choice(USER_AGENTS),
        "ip": f"203.0.113.{lead % 250 + 1}",
    }
    if campaign is not None:
        context["campaign"] = dict(campaign)
    context["library"] = {"name": "analytics-python", "version": SDK_VERSION}
    kind = rng.random()
    user_id = f"user-{lead:06d}" if kind < 0.1 or rng.random() < 0.4 else None
    timestamp = (at - timedelta(milliseconds=rng.randrange(5000))).isoformat(
        timespec="milliseconds"
    )
    message_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if kind < 0.1:
        return {
            "integrations": {},
            "anonymousId": anonymous_id,
            "timestamp": timestamp,
            "context": context,
            "type": "identify",
            "userId": user_id,
            "traits": {
                "email": f"user-{lead:06d}@example.org",
                "name": f"Person {lead}",
                "title": rng.choice(["VP Marketing", "Engineer", "Head of Sales", "Student"]),
                "company": {"name": f"Company {lead % 900}", "employee_count": 10 + lead % 2000},
                "industry": rng.choice(INDUSTRIES),
            },
            "messageId": message_id,
        }
    if kind < 0.5:
        event, properties = rng.choice(TRACKS)
        return {
            "integrations": {},
            "anonymousId": anonymous_id,
            "properties": dict(properties),
            "timestamp": timestamp,
            "context": context,
            "userId": user_id,
            "type": "track",
            "event": event,
            "messageId": message_id,
        }
    return {
        "integrations": {},
        "anonymousId": anonymous_id,
        "properties": {
            "path": path,
            "referrer": context["page"]["referrer"],
            "title": title,
            "url": SITE + path,
        },
        "timestamp": timestamp,
        "category": None,
        "context": context,
        "userId": user_id,
        "type": "page",
        "name": title,
        "messageId": message_id,
    }


def bodies(count: int, *, leads: int = 20_000, seed: int = 7) -> list[bytes]:
    """`count` /v1/batch bodies of `PER_REQUEST` messages each, as the SDK's `post` sends them."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for _ in range(count):
        batch = [_message(rng, leads, now) for _ in range(PER_REQUEST)]
        body = {"batch": batch, "sentAt": now.isoformat(), "writeKey": WRITE_KEY}
        out.append(json.dumps(body).encode())
    return out


def headers() -> dict[str, str]:
    basic = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    return {
        "Content-Type": "application/json",
        "User-Agent": f"analytics-python/{SDK_VERSION}",
        "Authorization": f"Basic {basic}",
    }


def kafka_records(sample: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The events the collector would produce for these bodies: its own intake, run here."""
    from leadpulse.scoring import default_model
    from leadpulse.streams.collector.auth import Source
    from leadpulse.streams.collector.intake import Limits, messages_of, take

    events = default_model().event_names
    records = []
    for body in sample:
        messages = messages_of(json.loads(body), "batch", Limits())
        intake = take(
            messages,
            source=Source(SOURCE),
            received_at=datetime.now(UTC),
            events=events,
            limits=Limits(),
        )
        if intake.rejected:
            raise RuntimeError(f"generated messages rejected: {intake.summary()}")
        records += [(a.key.encode(), a.value) for a in intake.accepted]
    return records


# -- the bare handler (its own process) ---------------------------------------------


def bare_server(port: int) -> int:
    """Serve POST /v1/batch (read the body, json.loads it, answer success) until SIGTERM."""
    from aiohttp import web

    from leadpulse.streams.cli.run import event_loop

    async def batch(request: web.Request) -> web.StreamResponse:
        json.loads(await request.read())
        return web.Response(text='{"success": true}', content_type="application/json")

    async def health(request: web.Request) -> web.StreamResponse:
        return web.Response(text='{"status": "ok"}', content_type="application/json")

    async def run() -> None:
        app = web.Application()
        app.router.add_post("/v1/batch", batch)
        app.router.add_get("/health", health)
        runner = web.AppRunner(app, auto_decompress=False, access_log=None)  # as the collector
        await runner.setup()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        try:
            await web.TCPSite(runner, "127.0.0.1", port).start()
            await stop.wait()
        finally:
            await runner.cleanup()

    loop = event_loop()  # the collector's loop (uvloop)
    try:
        loop.run_until_complete(run())
    finally:
        loop.close()
    return 0


class BareProcess:
    """`python -m bench.collector --bare-server PORT` as a child; ready once /health answers."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> BareProcess:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.collector", "--bare-server", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"bare server exited: {self.log_path.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("bare server not serving")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


# -- the load generator (this process) ------------------------------------------------


def _latency_ms(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    return {
        "p50": 1000 * percentile(latencies, 0.50),
        "p99": 1000 * percentile(latencies, 0.99),
        "max": 1000 * max(latencies),
    }


def _per_second(timeline: list[tuple[float, float]]) -> list[dict[str, float]]:
    """Latency percentiles of the requests scheduled in each second of the run."""
    seconds: dict[int, list[float]] = {}
    for at, latency in timeline:
        seconds.setdefault(int(at), []).append(latency)
    return [{"second": k, **_latency_ms(v)} for k, v in sorted(seconds.items())]


class Load:
    """An aiohttp client session posting the pre-generated bodies to one server."""

    def __init__(self, url: str, payloads: list[bytes], connections: int) -> None:
        self.url = f"{url}/v1/batch"
        self.payloads = payloads
        self.connections = connections
        self.next = 0
        self.headers = headers()

    def body(self) -> bytes:
        body = self.payloads[self.next % len(self.payloads)]
        self.next += 1
        return body

    async def post(self, session: Any, body: bytes, tally: dict[str, Any]) -> float | None:
        """Post one body; the events it acknowledged are added to `tally`; None unless 200."""
        async with session.post(self.url, data=body, headers=self.headers) as reply:
            answer = await reply.read()
            status = reply.status
        if status != 200:
            tally["statuses"][str(status)] += 1
            return None
        tally["statuses"]["200"] += 1
        accepted = json.loads(answer).get("accepted", PER_REQUEST)  # bare: all of them
        tally["acked"] += accepted
        if accepted != PER_REQUEST:
            tally["short_answers"] += 1
        return time.perf_counter()

    def session(self) -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=self.connections, force_close=False)
        timeout = aiohttp.ClientTimeout(total=30)
        return aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def closed_loop(self, seconds: float, meter: CpuMeter | None = None) -> dict[str, Any]:
        """`connections` clients, each posting again as soon as it was answered."""
        tally: dict[str, Any] = {"acked": 0, "statuses": Counter(), "short_answers": 0}
        latencies: list[float] = []
        async with self.session() as session:
            await self.post(session, self.body(), tally)  # connect before timing
            untimed = tally["acked"]
            tally = {"acked": 0, "statuses": Counter(), "short_answers": 0}

            async def client(stop_at: float) -> None:
                while time.perf_counter() < stop_at:
                    sent = time.perf_counter()
                    done = await self.post(session, self.body(), tally)
                    if done is not None:
                        latencies.append(done - sent)

            if meter is not None:
                meter.start()
            started = time.perf_counter()
            stop_at = started + seconds
            await asyncio.gather(*(client(stop_at) for _ in range(self.connections)))
            elapsed = time.perf_counter() - started
            if meter is not None:
                meter.stop()
        return {
            "events": tally["acked"],
            "untimed_events": untimed,
            "requests": len(latencies),
            "seconds": elapsed,
            "events_per_s": tally["acked"] / elapsed,
            "latency_ms": _latency_ms(latencies),
            "statuses": dict(tally["statuses"]),
            "short_answers": tally["short_answers"],
        }

    async def open_loop(
        self, rate: float, seconds: float, meter: CpuMeter | None = None
    ) -> dict[str, Any]:
        """`rate` requests/s on a fixed schedule, whether or not the earlier ones were answered.

        A request's latency runs from its scheduled time, so time spent waiting
        for a free connection or behind a late scheduler counts.
        """
        tally: dict[str, Any] = {"acked": 0, "statuses": Counter(), "short_answers": 0}
        latencies: list[float] = []
        late: list[float] = []
        timeline: list[tuple[float, float]] = []
        total = int(rate * seconds)
        async with self.session() as session:
            await self.post(session, self.body(), tally)
            untimed = tally["acked"]
            tally = {"acked": 0, "statuses": Counter(), "short_answers": 0}

            async def one(scheduled: float, body: bytes) -> None:
                done = await self.post(session, body, tally)
                if done is not None:
                    latencies.append(done - scheduled)
                    timeline.append((scheduled - started, done - scheduled))

            if meter is not None:
                meter.start()
            started = time.perf_counter() + 0.01
            tasks = []
            for i in range(total):
                scheduled = started + i / rate
                pause = scheduled - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                late.append(time.perf_counter() - scheduled)
                tasks.append(asyncio.create_task(one(scheduled, self.body())))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
            if meter is not None:
                meter.stop()
        return {
            "events": tally["acked"],
            "untimed_events": untimed,
            "requests": total,
            "seconds": elapsed,
            "events_per_s": tally["acked"] / elapsed,
            "offered_events_per_s": rate * PER_REQUEST,
            "latency_ms": _latency_ms(latencies),
            "scheduler_late_ms": _latency_ms(late),
            "per_second_ms": _per_second(timeline),
            "statuses": dict(tally["statuses"]),
            "short_answers": tally["short_answers"],
        }


def run_load(coro_factory: Any) -> Any:
    """Run a coroutine on the collector's kind of event loop (uvloop), in this process."""
    from leadpulse.streams.cli.run import event_loop

    loop = event_loop()
    try:
        return loop.run_until_complete(coro_factory())
    finally:
        loop.close()


# -- direct Kafka production ----------------------------------------------------------


async def direct_kafka(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes, bytes]],
    seconds: float,
    meter: CpuMeter | None = None,
) -> dict[str, Any]:
    """Send `records` over and over for `seconds` (acks=all, 5 ms linger); acked events/s."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="bench-direct",
        acks="all",
        enable_idempotence=False,
        linger_ms=5,
        max_batch_size=512 * 1024,  # the collector's producer settings
        max_request_size=1_048_576,
    )
    await producer.start()
    chunk, window = 1000, 10  # up to 10,000 events in flight, acknowledged 1,000 at a time
    acked = 0
    in_flight: collections.deque[asyncio.Future[Any]] = collections.deque()
    try:
        for key, value in records[:chunk]:  # warm-up: metadata, connections
            await producer.send(topic, value, key=key)
        await producer.flush()
        if meter is not None:
            meter.start()
        started = time.perf_counter()
        stop_at = started + seconds
        i = 0
        while time.perf_counter() < stop_at:
            futures = []
            for _ in range(chunk):
                key, value = records[i % len(records)]
                i += 1
                futures.append(await producer.send(topic, value, key=key))
            in_flight.append(asyncio.gather(*futures))
            if len(in_flight) >= window:
                acked += len(await in_flight.popleft())
        while in_flight:
            acked += len(await in_flight.popleft())
        elapsed = time.perf_counter() - started
        if meter is not None:
            meter.stop()
    finally:
        for pending in in_flight:
            pending.cancel()
        await producer.stop()
    return {"events": acked, "seconds": elapsed, "events_per_s": acked / elapsed}


async def count_topic(bootstrap: str, topic: str, expected: int, idle: float = 3.0) -> int:
    """Every record of `topic`, read from the start until none came for `idle` s past `expected`."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        await consumer.seek_to_beginning()
        count = 0
        quiet_since = time.monotonic()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=20_000)
            got = sum(len(m) for m in batches.values())
            count += got
            if got:
                quiet_since = time.monotonic()
            elif count >= expected and time.monotonic() - quiet_since >= idle / 3:
                break
            elif time.monotonic() - quiet_since >= idle * 3:
                break  # short of expected, and nothing more is coming
        return count
    finally:
        await consumer.stop()


# -- the run ------------------------------------------------------------------------


def collector_settings(dev: DevStack, topic: str) -> Any:
    from pydantic import SecretStr

    from leadpulse.streams.settings import Settings

    suffix = topic.rsplit("-", 1)[-1]
    return Settings(
        broker=f"kafka://{dev.bootstrap}",
        redis_url=dev.redis_url,
        events_topic=topic,
        dlq_topic=f"bench.collector.dlq-{suffix}",
        collector_host="127.0.0.1",
        collector_port=free_port(),
        collector_metrics_port=free_port(),
        write_keys=SecretStr(f"{SOURCE}={WRITE_KEY}"),
    )


def _py_spy(pid: int, out: Path, seconds: float) -> subprocess.Popen[bytes]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "250",  # blocking (pauses the collector per sample): --nonblocking tears stacks
            "--duration",
            str(int(seconds) + 1),
            "--format",
            "raw",
            "-o",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def measure(args: argparse.Namespace, dev: DevStack, workdir: Path, payloads: list[bytes]) -> Any:
    results: dict[str, dict[str, Any]] = {}
    topic = unique("bench.collector.events")
    direct_topic = unique("bench.collector.direct")
    settings = collector_settings(dev, topic)
    create_topics(dev.bootstrap, [topic, settings.dlq_topic, direct_topic], args.partitions)
    acked_total = 0

    def note(name: str, result: dict[str, Any]) -> None:
        results[name] = result
        lat = result.get("latency_ms", {})
        shown = f"  p50 {lat['p50']:.1f} ms  p99 {lat['p99']:.1f} ms" if lat else ""
        say(f"  {name:10} {result['events_per_s']:10,.0f} events/s{shown}")

    only = args.only
    if "bare" in only:
        say("measuring bare (aiohttp + json.loads, own process) ...")
        bare = BareProcess(workdir / "bare.log")
        try:
            bare.start()
            assert bare.process is not None
            load = Load(bare.url, payloads, args.clients)
            run_load(lambda: load.closed_loop(WARMUP_SECONDS))
            meter = CpuMeter({"server": bare.process.pid, "client": None})
            result = run_load(lambda: load.closed_loop(args.seconds, meter))
            result["cpu_us_per_event"] = meter.per_event_us(result["events"])
            note("bare", result)
        finally:
            bare.stop()

    if "collector" in only or "rate" in only:
        collector = CollectorProcess(settings, workdir / "collector.log", loglevel="warning")
        try:
            collector.start()
            assert collector.process is not None
            pid = collector.process.pid
            servers = {"server": pid, "tansu": dev.kafka.pid, "client": None}
            load = Load(collector.url, payloads, args.clients)
            warm = run_load(lambda: load.closed_loop(WARMUP_SECONDS))
            acked_total += warm["events"] + warm["untimed_events"]
            if "collector" in only:
                say(f"measuring collector ({args.clients} clients, {args.seconds:.0f} s) ...")
                spy = None
                if args.profile is not None:
                    spy = _py_spy(pid, args.profile / "collector.folded.txt", args.seconds)
                meter = CpuMeter(servers)
                result = run_load(lambda: load.closed_loop(args.seconds, meter))
                result["cpu_us_per_event"] = meter.per_event_us(result["events"])
                acked_total += result["events"] + result["untimed_events"]
                note("collector", result)
                if spy is not None:
                    try:
                        spy.wait(30)
                    except subprocess.TimeoutExpired:
                        spy.kill()
                        spy.wait(5)
            if "rate" in only:
                rps = args.rate / PER_REQUEST
                say(f"measuring rate ({args.rate:,.0f} events/s, open loop) ...")
                rate_load = Load(collector.url, payloads, max(64, args.clients))
                meter = CpuMeter(servers)
                result = run_load(lambda: rate_load.open_loop(rps, args.seconds, meter))
                result["cpu_us_per_event"] = meter.per_event_us(result["events"])
                acked_total += result["events"] + result["untimed_events"]
                note("rate", result)
            results["collector_stats"] = collector.stats()
        finally:
            collector.stop()

    if "direct" in only:
        say("measuring direct (aiokafka producer, acks=all) ...")
        records = kafka_records(payloads[: args.direct_bodies])
        meter = CpuMeter({"client": None, "tansu": dev.kafka.pid})
        result = run_load(
            lambda: direct_kafka(dev.bootstrap, direct_topic, records, args.seconds, meter)
        )
        result["cpu_us_per_event"] = meter.per_event_us(result["events"])
        note("direct", result)

    if acked_total:
        say("counting the events topic ...")
        on_topic: int = run_load(lambda: count_topic(dev.bootstrap, topic, acked_total))
        results["verify"] = {
            "acknowledged": acked_total,
            "on_topic": on_topic,
            "ok": on_topic >= acked_total,
        }
        say(f"  {on_topic:,} events on the topic, {acked_total:,} acknowledged")
    return results


def ratios_and_goals(results: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    rate = {k: v["events_per_s"] for k, v in results.items() if "events_per_s" in v}
    ratios = {}
    for a, b in (("collector", "bare"), ("collector", "direct")):
        if a in rate and b in rate:
            ratios[f"{a}/{b}"] = rate[a] / rate[b]
    cpu = {
        k: v["cpu_us_per_event"].get("server")
        for k, v in results.items()
        if isinstance(v, dict) and "cpu_us_per_event" in v
    }
    if cpu.get("collector") and cpu.get("bare"):
        ratios["collector/bare by server CPU"] = cpu["bare"] / cpu["collector"]
    goals: dict[str, Any] = {}
    if "collector/bare" in ratios:
        value = ratios["collector/bare"]
        goals["collector/bare"] = {
            "goal": f">= {GOAL_RATIO}",
            "value": value,
            "met": value >= GOAL_RATIO,
        }
    if "collector" in rate:
        value = rate["collector"]
        goals["collector events/s"] = {
            "goal": f">= {GOAL_EVENTS_PER_S:,.0f}",
            "value": value,
            "met": value >= GOAL_EVENTS_PER_S,
        }
    if "rate" in results and results["rate"].get("latency_ms"):
        value = results["rate"]["latency_ms"]["p99"]
        goals["rate p99 ms"] = {
            "goal": f"<= {GOAL_P99_MS:.0f} at {results['rate']['offered_events_per_s']:,.0f}/s",
            "value": value,
            "met": value <= GOAL_P99_MS,
        }
    if "verify" in results:
        goals["topic holds every acknowledged event"] = {
            "goal": "on_topic >= acknowledged",
            "value": results["verify"]["on_topic"],
            "met": results["verify"]["ok"],
        }
    return ratios, goals


def report(results: dict[str, Any], ratios: dict[str, float], goals: dict[str, Any]) -> None:
    say(
        "\n               events/s   p50 ms   p99 ms   max ms   CPU us/event: server, tansu, client"
    )
    for name in MEASURES:
        result = results.get(name)
        if result is None:
            continue
        lat = result.get("latency_ms", {})
        cpu = result.get("cpu_us_per_event", {})
        lats = "".join(f"{lat[k]:9.1f}" if k in lat else f"{'-':>9}" for k in ("p50", "p99", "max"))
        cpus = ", ".join(f"{cpu[k]:.1f}" if k in cpu else "-" for k in CPU_OF)
        say(f"  {name:10} {result['events_per_s']:10,.0f}{lats}   {cpus}")
        statuses = {k: v for k, v in result.get("statuses", {}).items() if k != "200"}
        if statuses or result.get("short_answers"):
            say(f"    non-200 answers {statuses}, short answers {result.get('short_answers', 0)}")
    if "rate" in results:
        r = results["rate"]
        late = r.get("scheduler_late_ms", {})
        say(
            f"  rate: offered {r['offered_events_per_s']:,.0f} events/s, got "
            f"{r['events_per_s']:,.0f}; scheduler late p99 {late.get('p99', 0):.1f} ms"
        )
    say("ratios")
    for name, value in ratios.items():
        say(f"  {name:30} {value:6.2f}")
    say("goals")
    for name, goal in goals.items():
        verdict = "MET" if goal["met"] else "MISSED"
        say(f"  {name:38} {goal['value']:12,.2f}  ({goal['goal']}) {verdict}")


_OUT = sys.stdout


def say(text: str) -> None:
    print(text, file=_OUT, flush=True)


def main(argv: list[str] | None = None) -> int:
    global _OUT  # noqa: PLW0603 -- progress goes to stderr when stdout is the JSON
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections (8)")
    parser.add_argument("--seconds", type=float, default=15.0, help="per measure (15)")
    parser.add_argument("--rate", type=float, default=5000.0, help="events/s of `rate` (5000)")
    parser.add_argument("--bodies", type=int, default=600, help="distinct bodies, cycled (600)")
    parser.add_argument("--direct-bodies", type=int, default=200, help="of those, for direct")
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--only", default=",".join(MEASURES), help=f"comma-separated subset of {MEASURES}"
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="py-spy record the collector into this dir (slows it: not a run to record)",
    )
    parser.add_argument("--json", action="store_true", help="print the result JSON on stdout")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results")
    args = parser.parse_args(argv)
    if args.bare_server is not None:
        return bare_server(args.bare_server)
    args.only = [m.strip() for m in args.only.split(",") if m.strip()]
    unknown = set(args.only) - set(MEASURES)
    if unknown:
        parser.error(f"unknown measures {sorted(unknown)}; choose from {MEASURES}")
    if args.json:
        _OUT = sys.stderr

    began = time.monotonic()
    info = machine()
    payloads = bodies(args.bodies, seed=args.seed)
    size = sum(map(len, payloads)) / len(payloads)
    say(
        f"{len(payloads)} bodies of {PER_REQUEST} messages ({size / 1024:.1f} KiB each) "
        f"generated in {time.monotonic() - began:.1f}s; load {info['loadavg']}"
    )
    workdir = Path(tempfile.mkdtemp(prefix="leadpulse-bench-collector-"))
    try:
        with stack(workdir / "stack") as dev:
            results = measure(args, dev, workdir, payloads)
    finally:
        if args.keep:
            say(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    ratios, goals = ratios_and_goals(results)
    report(results, ratios, goals)
    document = {
        "clients": args.clients,
        "seconds": args.seconds,
        "rate": args.rate,
        "bodies": args.bodies,
        "body_bytes_mean": size,
        "per_request": PER_REQUEST,
        "partitions": args.partitions,
        "results": results,
        "ratios": ratios,
        "goals": goals,
        "machine": info,
        "loadavg_after": list(__import__("os").getloadavg()),
        "total_seconds": time.monotonic() - began,
    }
    if not args.no_save:
        say(f"written to {write_result('collector', document)}")
    if args.json:
        print(json.dumps(document, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
