"""`leadpulse demo`: a simulated funnel on the embedded stack, in compressed time.

A few hundred simulated leads behave like a B2B funnel (buyers, evaluators,
browsers, students, job seekers, unsubscribers). Their events are produced in
real time while a worker scores them with the demo model, whose half-lives
are the default model's compressed (a day becomes a couple of seconds), so
leads become MQLs, are handed off, go cold and are recycled within a minute.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    for i in range(max(leads // 50, 1)):  # trackers have bugs too
        bad: dict[str, Any] = {"event_id": f"bad-{i}", "type": "Page View", "lead_id": "x"}
        plan.append(Planned(rng.uniform(0, duration), bad))
    plan.sort()
    return plan, personas


def produce(bootstrap: str, topic: str, plan: list[Planned], sent_at: dict[str, float]) -> int:
    """Send the plan in real time; occurred_at is the moment of sending."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=2)
    start = time.monotonic()
    try:
        for item in plan:
            delay = item.at - (time.monotonic() - start)
            if delay > 0:
                time.sleep(delay)
            body = dict(item.payload)
            if "occurred_at" not in body and not body["event_id"].startswith("bad-"):
                body["occurred_at"] = datetime.now(UTC).isoformat()
            key = body.get("lead_id") or body.get("anonymous_id") or ""
            sent_at[body["event_id"]] = time.time()
            producer.send(topic, key=key.encode(), value=json.dumps(body).encode())
        producer.flush(30)
    finally:
        producer.close(5)
    return len(plan)


class Watcher(threading.Thread):
    """Consumes handoffs and transitions, prints them live, keeps counts."""

    def __init__(self, bootstrap: str, topics: list[str], sent_at: dict[str, float]) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.sent_at = bootstrap, topics, sent_at
        self.counts: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.handoffs: set[str] = set()
        self.stop_flag = threading.Event()

    def run(self) -> None:
        from kafka import KafkaConsumer

        from schemas import decode_handoff, decode_transition

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
                        if h.event_id in self.sent_at:
                            self.latencies.append(received - self.sent_at[h.event_id])
                        why = ", ".join(f"{r.rule} {r.points:+.0f}" for r in h.reasons[:3])
                        print(
                            f"  HANDOFF  {h.lead_id}  engagement {h.engagement:5.1f}  "
                            f"grade {h.grade}  why: {why}",
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
    from streams.dev.devstack import DevStack, free_port
    from streams.dev.workerproc import WorkerProcess
    from streams.settings import Settings

    model_file = options.model_file or Path(str(resources.files("streams.dev") / DEMO_MODEL))
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
        settings = settings.replace(
            broker=f"kafka://{stack.bootstrap}",
            redis_url=stack.redis_url,
            web_port=web_port,
            data_dir=Path(stack.redis.workdir) / "worker",
            session_timeout=2.0,
        )
        print(f"  kafka {stack.bootstrap}   redis {stack.redis_url}   http :{web_port}/stats")
        worker = WorkerProcess(settings, Path(stack.redis.workdir) / "worker.log").start()
        try:
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
            sent = produce(stack.bootstrap, settings.events_topic, plan, sent_at)
            print(f"\nall {sent} events sent; letting leads cool down ...", flush=True)
            time.sleep(options.cooldown)
            watcher.stop_flag.set()
            watcher.join(10)
            elapsed = time.monotonic() - started
            stats = worker.stats()
        finally:
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
        f"  events sent         {sent} in {elapsed:.0f}s",
        f"  events scored       {stats.get('scored', '?')}",
        f"  dead-lettered       {stats.get('dead_lettered', '?')}",
        f"  became MQL          {counts.get('iql->mql', 0) + counts.get('nurture->mql', 0)}",
        f"  handed off (SAL)    {len(watcher.handoffs)}",
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
    """Traffic-only mode for docker compose: produce the simulated funnel to a broker."""
    parser = argparse.ArgumentParser(description="leadpulse demo traffic generator")
    parser.add_argument("--traffic-only", action="store_true", help="only produce events")
    parser.add_argument("--leads", type=int, default=300)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    from streams.settings import Settings

    settings = Settings()
    plan, _ = plan_traffic(args.leads, args.duration, args.seed)
    sent = produce(",".join(settings.bootstrap_servers), settings.events_topic, plan, {})
    print(f"sent {sent} events to {settings.events_topic}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
