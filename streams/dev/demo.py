"""`leadpulse demo`: a simulated funnel on the embedded stack, in compressed time.

A few hundred simulated leads behave like a B2B funnel (buyers, evaluators,
browsers, students, job seekers, unsubscribers). Their events are sent in
real time through the front door, as a site would send them (Segment calls
from segment-analytics-python to `leadpulse collect`), while a worker scores
them with the demo model, whose half-lives are the default model's compressed
(a day becomes a couple of seconds), so leads become MQLs, are handed off,
go cold and are recycled within a minute.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

DEMO_MODEL = "demo_model.yaml"

SITE = "https://example.com"


@dataclass(frozen=True)
class DemoOptions:
    leads: int = 300
    duration: float = 45.0
    seed: int = 7
    model_file: Path | None = None
    kafka_port: int | None = None
    redis_port: int | None = None
    cooldown: float = 40.0
    """Seconds after the last event to let leads decay and recycle."""


@dataclass(order=True)
class Planned:
    at: float
    payload: dict[str, Any] = field(compare=False)


GOOD_FIT = {"company_size": 800, "industry": "software", "seniority": "vp", "country": "DE"}
OK_FIT = {"company_size": 120, "industry": "financial-services", "seniority": "manager"}
POOR_FIT = {"company_size": 3, "industry": "education", "seniority": "student"}


def _event(kind: str, lead: str | None, anon: str | None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"event_id": str(uuid.uuid4()), "type": kind}
    if lead:
        body["lead_id"] = lead
    if anon:
        body["anonymous_id"] = anon
    body.update(extra)
    return body


def _page(path: str, lead: str | None, anon: str | None) -> dict[str, Any]:
    return _event("page_view", lead, anon, properties={"url": SITE + path})


def persona_events(kind: str, n: int, rng: random.Random) -> list[dict[str, Any]]:
    """The ordered journey of one simulated lead of the given kind."""
    lead, anon = f"lead-{n:04d}", f"anon-{n:04d}"
    identify = _event(
        "identify",
        lead,
        anon,
        traits={**(GOOD_FIT if kind == "buyer" else OK_FIT), "email": f"{lead}@example.com"},
    )
    if kind == "buyer":
        return [
            _page("/", None, anon),
            _page("/blog/lead-scoring", None, anon),
            _page("/pricing", None, anon),
            identify,
            _event("email_click", lead, None, properties={"campaign": "nov"}),
            _event("webinar_registered", lead, None),
            _event("webinar_attended", lead, None),
            _page("/pricing", lead, None),
            _event("demo_request", lead, None),
        ]
    if kind == "evaluator":
        return [
            _page("/product", None, anon),
            identify,
            _event("content_download", lead, None, properties={"asset": "roi-guide"}),
            _event("trial_signup", lead, None),
            *[_event("product_usage", lead, None) for _ in range(rng.randint(1, 4))],
            _page("/pricing", lead, None),
        ]
    if kind == "student":
        return [
            _event("identify", lead, anon, traits={**POOR_FIT, "title": "Student"}),
            _event("content_download", lead, None),
            _event("webinar_registered", lead, None),
            _event("webinar_attended", lead, None),
            _event("trial_signup", lead, None),
        ]
    if kind == "job_seeker":
        return [_page("/careers", None, anon), _page("/careers/sdr", None, anon)]
    if kind == "unsubscriber":
        return [
            _event("email_open", lead, None),
            _event("email_click", lead, None),
            _event("email_unsubscribe", lead, None),
        ]
    return [
        _page(rng.choice(["/", "/blog/a", "/blog/b", "/about"]), None, anon)
        for _ in range(rng.randint(1, 4))
    ] + [_event("email_open", lead, None)]


PERSONAS = [
    ("buyer", 0.12),
    ("evaluator", 0.18),
    ("browser", 0.45),
    ("student", 0.09),
    ("job_seeker", 0.08),
    ("unsubscriber", 0.08),
]


def plan_traffic(leads: int, duration: float, seed: int) -> tuple[list[Planned], Counter[str]]:
    """Every event with its send offset (seconds from start), plus a persona count."""
    rng = random.Random(seed)
    kinds, weights = zip(*PERSONAS, strict=True)
    plan: list[Planned] = []
    personas: Counter[str] = Counter()
    for n in range(leads):
        kind = rng.choices(kinds, weights)[0]
        personas[kind] += 1
        journey = persona_events(kind, n, rng)
        start = rng.uniform(0, duration * 0.6)
        span = rng.uniform(duration * 0.05, duration * 0.35)
        step = span / max(len(journey) - 1, 1)
        plan.extend(Planned(start + i * step, body) for i, body in enumerate(journey))
    for i in range(max(leads // 50, 1)):  # trackers have bugs too: a name that maps to nothing
        bad: dict[str, Any] = {"event_id": f"bad-{i}", "type": "???", "lead_id": "x"}
        plan.append(Planned(rng.uniform(0, duration), bad))
    plan.sort()
    return plan, personas


TRACK_NAMES = {
    "demo_request": "Demo Requested",
    "trial_signup": "Trial Started",
    "email_open": "Email Opened",
    "email_click": "Email Link Clicked",
    "email_unsubscribe": "Unsubscribed",
    "content_download": "Content Downloaded",
    "product_usage": "Product Used",
    "webinar_registered": "Webinar Registered",
    "webinar_attended": "Webinar Attended",
}
"""The Segment names the simulated site tracks; the demo model's `events:` maps them back."""


def send_call(client: Any, body: dict[str, Any]) -> None:
    """One planned event as the Segment call a site would make (the SDK stamps the time)."""
    ids = {
        "user_id": body.get("lead_id"),
        "anonymous_id": body.get("anonymous_id"),
        "message_id": body["event_id"],
    }
    kind = body["type"]
    if kind == "identify":
        client.identify(traits=body.get("traits", {}), **ids)
    elif kind == "page_view":
        client.page(properties=body.get("properties", {}), **ids)
    else:
        name = TRACK_NAMES.get(kind, kind)
        client.track(event=name, properties=body.get("properties", {}), **ids)


def send_through_collector(
    url: str, write_key: str, plan: list[Planned], sent_at: dict[str, float]
) -> int:
    """Send the plan in real time with segment-analytics-python, `host=` the collector."""
    from leadpulse.streams.dev.devstack import check_dev_extra

    check_dev_extra("segment-analytics-python")
    from segment.analytics.client import Client

    failures: list[str] = []
    client = Client(
        write_key,
        host=url,
        upload_interval=0.02,  # the SDK's 0.5 s default would dominate the latency shown
        on_error=lambda error, _batch: failures.append(str(error)),
    )
    start = time.monotonic()
    try:
        for item in plan:
            delay = item.at - (time.monotonic() - start)
            if delay > 0:
                time.sleep(delay)
            sent_at[item.payload["event_id"]] = time.time()
            send_call(client, item.payload)
        client.flush()
    finally:
        client.join()
    if failures:
        print(f"  the SDK reported {len(failures)} failed uploads: {failures[0]}", file=sys.stderr)
    return len(plan)


class Watcher(threading.Thread):
    """Consumes handoffs and transitions, prints them live, keeps counts."""

    def __init__(self, bootstrap: str, topics: list[str], sent_at: dict[str, float]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.sent_at = bootstrap, topics, sent_at
        self.counts: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.handoffs: set[str] = set()
        self.tiers: Counter[str] = Counter()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer

        from leadpulse.schemas import decode_handoff, decode_transition

        consumer = KafkaConsumer(
            *self.topics,
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=500,
            fetch_max_wait_ms=10,  # the default 500 ms would dominate the latency shown
        )
        try:
            while not self.stop_flag.is_set():
                for message in consumer:
                    received = time.time()
                    if message.topic == self.topics[0]:
                        h = decode_handoff(message.value)
                        if h.handoff_id in self.handoffs:
                            continue
                        self.handoffs.add(h.handoff_id)
                        self.tiers[h.tier or "none"] += 1
                        if h.event_id in self.sent_at:
                            self.latencies.append(received - self.sent_at[h.event_id])
                        why = ", ".join(f"{r.rule} {r.points:+.0f}" for r in h.reasons[:3])
                        tier = f"  tier {h.tier}" if h.tier is not None else ""
                        print(
                            f"  HANDOFF  {h.lead_id}  engagement {h.engagement:5.1f}  "
                            f"grade {h.grade}{tier}  why: {why}",
                            flush=True,
                        )
                    else:
                        t = decode_transition(message.value)
                        self.counts[f"{t.from_stage}->{t.to_stage}"] += 1
                        if t.to_stage == "nurture":
                            print(
                                f"  RECYCLE  {t.lead_id}  {t.from_stage.upper()} -> NURTURE  "
                                f"engagement {t.engagement:5.1f}  "
                                f"({'decay' if t.event_id is None else 'event'})",
                                flush=True,
                            )
                    if self.stop_flag.is_set():
                        break
        finally:
            consumer.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_demo(options: DemoOptions) -> int:
    from leadpulse.streams.collector.auth import new_write_key
    from leadpulse.streams.dev.devstack import DevStack, free_port
    from leadpulse.streams.dev.workerproc import CollectorProcess, WorkerProcess
    from leadpulse.streams.http.auth import new_token
    from leadpulse.streams.settings import Settings

    model_file = options.model_file or Path(
        str(resources.files("leadpulse.streams.dev") / DEMO_MODEL)
    )
    settings = Settings(model_file=model_file, partitions=4, sweep_interval=0.5)
    topics = {
        settings.events_topic: settings.partitions,
        settings.handoffs_topic: settings.partitions,
        settings.transitions_topic: settings.partitions,
        settings.dlq_topic: settings.partitions,
    }
    plan, personas = plan_traffic(options.leads, options.duration, options.seed)
    print(f"leadpulse demo: {options.leads} leads, {len(plan)} events over {options.duration:.0f}s")
    print("starting the embedded stack (Tansu broker + redis-server) ...", flush=True)
    with DevStack(options.kafka_port, options.redis_port, topics=topics) as stack:
        web_port = free_port()
        write_key = new_write_key()
        settings = settings.replace(
            broker=f"kafka://{stack.bootstrap}",
            redis_url=stack.redis_url,
            web_port=web_port,
            data_dir=Path(stack.redis.workdir) / "worker",
            session_timeout=2.0,
            collector_port=free_port(),
            collector_metrics_port=free_port(),
            write_keys=f"website={write_key}",
            api_tokens=f"demo={new_token()}:admin",
            cookie_secure=False,  # its pages are plain http on 127.0.0.1
        )
        logs = Path(stack.redis.workdir)
        worker = WorkerProcess(settings, logs / "worker.log").start()
        collector: CollectorProcess | None = None
        try:
            try:
                collector = CollectorProcess(settings, logs / "collector.log").start()
            except (TimeoutError, RuntimeError) as error:
                print(f"collector not ready: {error}", file=sys.stderr)
                return 1
            print(f"  kafka {stack.bootstrap}   redis {stack.redis_url}   http :{web_port}/stats")
            print(f"  collector {collector.url}   write key {write_key}")
            print(f"  page http://127.0.0.1:{web_port}/ui?token={settings.local_api_token()}")
            print(f"waiting for the worker to join the consumer group (log: {worker.log_path})")
            try:
                worker.wait_assigned()
            except (TimeoutError, RuntimeError) as error:
                print(f"worker not ready: {error}", file=sys.stderr)
                return 1
            sent_at: dict[str, float] = {}
            watcher = Watcher(
                stack.bootstrap, [settings.handoffs_topic, settings.transitions_topic], sent_at
            )
            watcher.start()
            print("simulating traffic; handoffs and recycles as they happen:\n", flush=True)
            started = time.monotonic()
            sent = send_through_collector(collector.url, write_key, plan, sent_at)
            print(f"\nall {sent} events sent; letting leads cool down ...", flush=True)
            time.sleep(options.cooldown)
            watcher.stop_flag.set()
            watcher.join(10)
            elapsed = time.monotonic() - started
            stats = worker.stats()
            stats["collector"] = collector.stats()
        finally:
            if collector is not None:
                collector.stop()
            worker.stop()
    _summary(
        options=options,
        personas=personas,
        sent=sent,
        elapsed=elapsed,
        watcher=watcher,
        stats=stats,
    )
    return 0


def _summary(
    *,
    options: DemoOptions,
    personas: Counter[str],
    sent: int,
    elapsed: float,
    watcher: Watcher,
    stats: dict[str, Any],
) -> None:
    counts = watcher.counts
    recycled = sum(v for k, v in counts.items() if k.endswith("->nurture"))
    lines = [
        "",
        "summary",
        f"  leads simulated     {options.leads}  ("
        + ", ".join(f"{k} {v}" for k, v in personas.most_common())
        + ")",
        f"  events sent         {sent} in {elapsed:.0f}s, by segment-analytics-python",
        f"  collector accepted  {stats['collector'].get('accepted', '?')}, "
        f"rejected {stats['collector'].get('rejected', '?')} (dead-lettered with reasons)",
        f"  events scored       {stats.get('scored', '?')}",
        f"  became MQL          {counts.get('iql->mql', 0) + counts.get('nurture->mql', 0)}",
        f"  handed off (SAL)    {len(watcher.handoffs)}"
        + (
            "  (tiers: " + ", ".join(f"{t} {n}" for t, n in watcher.tiers.most_common()) + ")"
            if watcher.tiers
            else ""
        ),
        f"  recycled to nurture {recycled}",
    ]
    if watcher.latencies:
        lat = [x * 1000 for x in watcher.latencies]
        lines.append(
            f"  event->handoff      p50 {statistics.median(lat):.0f} ms, "
            f"p95 {_percentile(lat, 0.95):.0f} ms, max {max(lat):.0f} ms"
        )
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    """Traffic-only mode for docker compose: send the simulated funnel to a collector."""
    parser = argparse.ArgumentParser(description="leadpulse demo traffic generator")
    parser.add_argument("--traffic-only", action="store_true", help="only send events")
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--collector", default="http://127.0.0.1:8088", help="collector URL (the SDK's host)"
    )
    parser.add_argument(
        "--write-key", help="write key (default: the first of LEADPULSE_WRITE_KEYS)"
    )
    args = parser.parse_args(argv)
    from leadpulse.streams.settings import Settings

    write_key = args.write_key or next(iter(Settings().write_key_sources), None)
    if write_key is None:
        parser.error("a write key is needed: --write-key KEY or LEADPULSE_WRITE_KEYS")
    plan, _ = plan_traffic(args.leads, args.duration, args.seed)
    sent = send_through_collector(args.collector, write_key, plan, {})
    print(f"sent {sent} events to {args.collector}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
