"""`leadpulse demo`: a simulated funnel on the embedded stack, in compressed time.

A few hundred simulated leads behave like a B2B funnel (buyers, evaluators,
browsers, students, job seekers, unsubscribers). Their events are sent in
real time through the front door, as a site would send them (Segment calls
from segment-analytics-python to `leadpulse collect`), while a worker scores
them with the demo model, whose half-lives are the default model's compressed
(a day becomes a couple of seconds), so leads become MQLs, are handed off,
go cold and are recycled within a minute. A simulated sales team
(`streams.dev.sales`) answers the handoffs through the collector's sales key,
by who each lead really is, and the summary checks the worker applied them.
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from leadpulse.streams.dev.sales import OUTCOMES, SALES_SOURCE, SalesDesk

if TYPE_CHECKING:
    from leadpulse.streams.dev.devstack import DevStack
    from leadpulse.streams.settings import Settings

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
    sales: bool = True
    """Simulate sales answering the handoffs (`streams.dev.sales`)."""
    keep: bool = False
    """After the summary, keep the stack running until Ctrl-C (`stay`)."""


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


def persona_events(
    kind: str, n: int, rng: random.Random, *, hot: bool = False
) -> list[dict[str, Any]]:
    """The ordered journey of one simulated lead of the given kind.

    `hot` (evaluators, students, job seekers only) is a journey engaged
    enough for the demo model to hand the lead off: an evaluator who goes
    deep, a student or a job seeker who looks like a buyer to the model
    (`HOT_SHARE`). Without it, the journeys are the ones `bench/` sends.
    """
    lead, anon = f"lead-{n:04d}", f"anon-{n:04d}"
    if hot and kind in HOT_SHARE:
        return _hot_events(kind, lead, anon, rng)
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

HOT_SHARE = {"evaluator": 0.5, "student": 0.4, "job_seeker": 0.4}
"""The share of each kind whose demo journey is `hot`: handed off, though only some
evaluators (and no student or job seeker) are buyers, so the demo's sales
(`streams.dev.sales`) have wrong handoffs to reject."""

INTERN_PROFILE = {"company_size": 120, "industry": "software", "title": "Working Student"}
"""A student known by the company of their internship: no seniority, so fit grade B."""
EMPLOYEE_PROFILE = {"company_size": 300, "industry": "saas", "seniority": "manager"}
"""A job seeker known by their current employer: fit grade B."""


def _hot_events(kind: str, lead: str, anon: str, rng: random.Random) -> list[dict[str, Any]]:
    if kind == "evaluator":
        return [
            _page("/product", None, anon),
            _event("identify", lead, anon, traits={**OK_FIT, "email": f"{lead}@example.com"}),
            _event("content_download", lead, None, properties={"asset": "roi-guide"}),
            _event("webinar_registered", lead, None),
            _event("webinar_attended", lead, None),
            _event("trial_signup", lead, None),
            *[_event("product_usage", lead, None) for _ in range(rng.randint(2, 5))],
            _page("/pricing", lead, None),
            _event("content_download", lead, None, properties={"asset": "security"}),
            _page("/pricing", lead, None),
        ]
    if kind == "student":  # researching lead scoring for a thesis, with a work address
        return [
            _event(
                "identify", lead, anon, traits={**INTERN_PROFILE, "email": f"{lead}@example.com"}
            ),
            _event("content_download", lead, None, properties={"asset": "roi-guide"}),
            _event("webinar_registered", lead, None),
            _event("webinar_attended", lead, None),
            _page("/pricing", lead, None),
            _event("form_submit", lead, None, properties={"form": "contact"}),
            _event("trial_signup", lead, None),
        ]
    # a job seeker preparing an interview: tries the product, asks for a demo, then applies
    return [
        _page("/product", None, anon),
        _event("identify", lead, anon, traits={**EMPLOYEE_PROFILE, "email": f"{lead}@example.com"}),
        _page("/pricing", lead, None),
        _event("trial_signup", lead, None),
        _event("demo_request", lead, None),
        _page("/careers", lead, None),
        _page("/careers/sdr", lead, None),
    ]


@dataclass(frozen=True)
class Funnel:
    """The demo's traffic: every event with its send offset, and who each lead is."""

    plan: list[Planned]
    kinds: dict[str, str]
    """Lead id -> persona kind (`PERSONAS`), for every simulated lead."""
    hot: frozenset[str]
    """The leads whose journey is `hot` (see `persona_events`)."""

    @property
    def personas(self) -> Counter[str]:
        return Counter(self.kinds.values())


def plan_traffic(leads: int, duration: float, seed: int) -> tuple[list[Planned], Counter[str]]:
    """Every event with its send offset (seconds from start), plus a persona count."""
    funnel = plan_funnel(leads, duration, seed)
    return funnel.plan, funnel.personas


def plan_funnel(leads: int, duration: float, seed: int) -> Funnel:
    """The demo's traffic for `seed`: the same plan, kinds and hot leads every time."""
    rng = random.Random(seed)
    kinds, weights = zip(*PERSONAS, strict=True)
    plan: list[Planned] = []
    people: dict[str, str] = {}
    hot: set[str] = set()
    for n in range(leads):
        kind = rng.choices(kinds, weights)[0]
        people[f"lead-{n:04d}"] = kind
        is_hot = kind in HOT_SHARE and rng.random() < HOT_SHARE[kind]
        if is_hot:
            hot.add(f"lead-{n:04d}")
        journey = persona_events(kind, n, rng, hot=is_hot)
        start = rng.uniform(0, duration * 0.6)
        span = rng.uniform(duration * 0.05, duration * 0.35)
        step = span / max(len(journey) - 1, 1)
        plan.extend(Planned(start + i * step, body) for i, body in enumerate(journey))
    for i in range(max(leads // 50, 1)):  # trackers have bugs too: a name that maps to nothing
        bad: dict[str, Any] = {"event_id": f"bad-{i}", "type": "???", "lead_id": "x"}
        plan.append(Planned(rng.uniform(0, duration), bad))
    plan.sort()
    return Funnel(plan, people, frozenset(hot))


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
    failures: list[str] = []
    client = segment_client(url, write_key, failures)
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


def segment_client(url: str, write_key: str, failures: list[str]) -> Any:
    """A segment-analytics-python client sending to the collector at `url` with `write_key`."""
    from leadpulse.streams.dev.devstack import check_dev_extra

    check_dev_extra("segment-analytics-python")
    from segment.analytics.client import Client

    return Client(
        write_key,
        host=url,
        upload_interval=0.02,  # the SDK's 0.5 s default would dominate the latency shown
        on_error=lambda error, _batch: failures.append(str(error)),
    )


class Watcher(threading.Thread):
    """Consumes handoffs and transitions, prints them live, keeps counts."""

    def __init__(
        self,
        bootstrap: str,
        topics: list[str],
        sent_at: dict[str, float],
        desk: SalesDesk | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.topics, self.sent_at, self.desk = bootstrap, topics, sent_at, desk
        self.kinds: Counter[str] = Counter()
        """Handoffs per persona kind (with a desk: it knows who each lead is)."""
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
                        if self.desk is not None:
                            self.kinds[self.desk.kinds.get(h.lead_id, "unknown")] += 1
                            self.desk.handoff(h.lead_id, h.handoff_id)
                    else:
                        t = decode_transition(message.value)
                        if self.desk is not None and t.event_id in self.desk.event_ids:
                            self.counts[f"sales:{t.from_stage}->{t.to_stage}"] += 1
                            continue  # a move sales made, printed as the desk sent it
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


@dataclass
class DemoRun:
    """What one demo run did, for its summary (and the tests)."""

    personas: Counter[str]
    sent: int
    elapsed: float
    watcher: Watcher
    stats: dict[str, Any]
    desk: SalesDesk | None = None
    check: AnswerCheck | None = None


@dataclass
class AnswerCheck:
    """What the worker made of the sales answers: `applied` of `sent` feedback events.

    `refused` lists the others' outcomes as the lead's history states them
    (stale, not applied, ...), `missing` those the history does not show;
    `stages` is each answered lead's stage at the end.
    """

    sent: int
    applied: int = 0
    refused: list[str] = field(default_factory=list)
    missing: int = 0
    stages: dict[str, str] = field(default_factory=dict)


def check_answers(
    lead_url: str, token: str | None, sent: dict[str, list[str]], timeout: float = 20.0
) -> AnswerCheck:
    """Read each answered lead from the worker (`lead_url` + id) until it shows every answer."""
    from leadpulse.streams.dev.workerproc import get_json

    check = AnswerCheck(sent=sum(len(ids) for ids in sent.values()))
    deadline = time.monotonic() + timeout
    for lead_id, event_ids in sent.items():
        view: dict[str, Any] = {}
        seen: dict[str, dict[str, Any]] = {}
        while True:
            view = get_json(lead_url + quote(lead_id, safe=""), token)
            history = view.get("sales", {}).get("history", [])
            seen = {entry["event_id"]: entry for entry in history if "event_id" in entry}
            if all(i in seen for i in event_ids) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        stage = view.get("explanation", {}).get("stage")
        if stage is not None:
            check.stages[lead_id] = str(stage)
        for event_id in event_ids:
            entry = seen.get(event_id)
            if entry is None:
                check.missing += 1
            elif entry.get("applied"):
                check.applied += 1
            else:
                check.refused.append(f"{lead_id} {entry.get('type')}: {entry.get('outcome')}")
    return check


def run_demo(options: DemoOptions) -> int:
    def keep(run: DemoRun, settings: Settings) -> None:
        _summary(options=options, run=run)
        stay(settings)

    run = simulate(options, before_stop=keep if options.keep else None)
    if isinstance(run, int):
        return run
    if not options.keep:
        _summary(options=options, run=run)
    return 0


def stay(settings: Settings, wait: Callable[[], object] = signal.pause) -> None:
    """Keep the demo's stack up until Ctrl-C: its pages, and its history for `whatif`.

    Prints what `leadpulse dev` prints for the shell (the export lines), so
    `leadpulse model whatif` and `leadpulse lead` in another terminal find the
    stack and the model the worker recorded by themselves.
    """
    model = settings.model_file
    print(
        "\nthe stack stays up (Ctrl-C stops it). In another terminal:\n"
        f"  export LEADPULSE_BROKER=kafka://{settings.bootstrap_servers[0]}\n"
        f"  export LEADPULSE_REDIS_URL={settings.redis_url}\n"
        f"  cp {model} new.yaml      # the demo's model: change a rule or a threshold\n"
        "  leadpulse model whatif new.yaml      # what it would have done (writes nothing)\n"
        "  leadpulse model apply new.yaml       # switch to it, the history rescored\n"
        "  leadpulse model status\n"
        f"  page http://127.0.0.1:{settings.web_port}/ui?token={settings.local_api_token()}",
        flush=True,
    )
    with suppress(KeyboardInterrupt):
        wait()
    print("stopping the demo's stack ...", flush=True)


def simulate(
    options: DemoOptions, *, before_stop: Callable[[DemoRun, Settings], None] | None = None
) -> DemoRun | int:
    """The demo up to its summary: a `DemoRun`, or the exit status if the stack did not start.

    `before_stop` runs with the finished run while the stack still runs.
    """
    from leadpulse.scoring import ModelError, load_model
    from leadpulse.streams.collector.auth import new_write_key
    from leadpulse.streams.dev.workerproc import CollectorProcess, Restarting, WorkerProcess
    from leadpulse.streams.settings import Settings

    model_file = options.model_file or Path(
        str(resources.files("leadpulse.streams.dev") / DEMO_MODEL)
    )
    settings = Settings(model_file=model_file, partitions=4, sweep_interval=0.5)
    try:
        model = load_model(model_file)
    except ModelError as error:
        print(f"leadpulse demo: {error}", file=sys.stderr)
        return 2
    funnel = plan_funnel(options.leads, options.duration, options.seed)
    events = len(funnel.plan)
    print(f"leadpulse demo: {options.leads} leads, {events} events over {options.duration:.0f}s")
    print("starting the embedded stack (Tansu broker + redis-server) ...", flush=True)
    stack = _demo_stack(options, settings)
    with stack:
        write_key, sales_key = new_write_key(), new_write_key()
        settings = _stack_settings(settings, stack, write_key=write_key, sales_key=sales_key)
        web_port = settings.web_port
        logs = Path(stack.redis.workdir)
        worker = WorkerProcess(settings, logs / "worker.log").start()
        # a worker `leadpulse model apply` switches exits to be started again in the new namespace
        restarting = Restarting(worker, say=lambda line: print(f"leadpulse demo: {line}")).start()
        collector: CollectorProcess | None = None
        desk: SalesDesk | None = None
        try:
            try:
                collector = CollectorProcess(settings, logs / "collector.log").start()
            except (TimeoutError, RuntimeError) as error:
                print(f"collector not ready: {error}", file=sys.stderr)
                return 1
            sales = f"   sales ({SALES_SOURCE}) key {sales_key}" if options.sales else ""
            print(
                f"  kafka {stack.bootstrap}   redis {stack.redis_url}   http :{web_port}/stats\n"
                f"  collector {collector.url}   write key {write_key}{sales}\n"
                f"  page http://127.0.0.1:{web_port}/ui?token={settings.local_api_token()}\n"
                f"waiting for the worker to join the consumer group (log: {worker.log_path})"
            )
            try:
                worker.wait_assigned()
            except (TimeoutError, RuntimeError) as error:
                print(f"worker not ready: {error}", file=sys.stderr)
                return 1
            if options.sales:
                desk = SalesDesk(
                    segment_client(collector.url, sales_key, []),
                    funnel.kinds,
                    seed=options.seed,
                    model=model,
                )
            run = _traffic(
                options,
                settings=settings,
                bootstrap=stack.bootstrap,
                collector_url=collector.url,
                write_key=write_key,
                desk=desk,
                funnel=funnel,
            )
            run.stats.update(worker.stats())
            run.stats["collector"] = collector.stats()
            if before_stop is not None:
                before_stop(run, settings)
        finally:
            if desk is not None and desk.is_alive():
                desk.close(timeout=1.0)
            if collector is not None:
                collector.stop()
            restarting.stop()  # and the worker
    return run


def _demo_stack(options: DemoOptions, settings: Settings) -> DevStack:
    """Tansu and redis-server with the demo's topics; the events topic keeps its history."""
    from leadpulse.streams.dev.devstack import DevStack
    from leadpulse.streams.kafka.topics import topic_configs

    names = [
        settings.events_topic,
        settings.handoffs_topic,
        settings.transitions_topic,
        settings.dlq_topic,
    ]
    return DevStack(
        options.kafka_port,
        options.redis_port,
        topics=dict.fromkeys(names, settings.partitions),
        topic_configs=topic_configs(settings),  # the retention a `whatif` replay needs
    )


def _stack_settings(
    settings: Settings, stack: DevStack, *, write_key: str, sales_key: str
) -> Settings:
    """The demo's processes' settings on its stack: free ports, both write keys, a token."""
    from leadpulse.streams.dev.devstack import free_port
    from leadpulse.streams.http.auth import new_token

    return settings.replace(
        broker=f"kafka://{stack.bootstrap}",
        redis_url=stack.redis_url,
        web_port=free_port(),
        data_dir=Path(stack.redis.workdir) / "worker",
        session_timeout=2.0,
        collector_port=free_port(),
        collector_metrics_port=free_port(),
        write_keys=f"website={write_key},{SALES_SOURCE}={sales_key}",
        sales_sources=SALES_SOURCE,
        api_tokens=f"demo={new_token()}:admin",
        cookie_secure=False,  # its pages are plain http on 127.0.0.1
    )


def _traffic(
    options: DemoOptions,
    *,
    settings: Settings,
    bootstrap: str,
    collector_url: str,
    write_key: str,
    desk: SalesDesk | None,
    funnel: Funnel,
) -> DemoRun:
    """Send the funnel, watch handoffs (answered by `desk`), let leads cool down."""
    if desk is not None:
        desk.start()
    sent_at: dict[str, float] = {}
    watcher = Watcher(
        bootstrap, [settings.handoffs_topic, settings.transitions_topic], sent_at, desk
    )
    watcher.start()
    print("simulating traffic; handoffs and recycles as they happen:\n", flush=True)
    started = time.monotonic()
    sent = send_through_collector(collector_url, write_key, funnel.plan, sent_at)
    print(f"\nall {sent} events sent; letting leads cool down ...", flush=True)
    time.sleep(options.cooldown)
    watcher.stop_flag.set()
    watcher.join(10)
    check: AnswerCheck | None = None
    if desk is not None:
        desk.close()
        check = check_answers(
            f"http://127.0.0.1:{settings.web_port}/leads/", settings.local_api_token(), desk.sent
        )
    elapsed = time.monotonic() - started
    return DemoRun(funnel.personas, sent, elapsed, watcher, {}, desk, check)


def _summary(*, options: DemoOptions, run: DemoRun) -> None:
    watcher, stats, personas, sent, elapsed = (
        run.watcher,
        run.stats,
        run.personas,
        run.sent,
        run.elapsed,
    )
    counts = watcher.counts
    recycled = sum(v for k, v in counts.items() if k.endswith("->nurture") and ":" not in k)
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
    if run.desk is not None:
        lines += sales_lines(run.desk, run.check, watcher.kinds, counts)
    print("\n".join(lines))


def sales_lines(
    desk: SalesDesk, check: AnswerCheck | None, handed: Counter[str], moves: Counter[str]
) -> list[str]:
    """The summary's lines about the simulated sales: answers per outcome and persona.

    `moves` are the watcher's transition counts; those sales caused are ``sales:FROM->TO``.
    """
    outcomes = desk.outcomes
    lines = [
        "  handed off, who     " + ", ".join(f"{k} {v}" for k, v in handed.most_common()),
        f"  sales answered      {sum(outcomes.values()) - outcomes['unanswered']} handoffs: "
        + ", ".join(f"{outcome} {outcomes[outcome]}" for outcome in OUTCOMES),
    ]
    for kind, _ in handed.most_common():
        mine = [(o, desk.by_kind[(kind, o)]) for o in OUTCOMES if desk.by_kind[(kind, o)]]
        lines.append(f"    {kind:<17} " + ", ".join(f"{o} {n}" for o, n in mine))
    made = [
        (k.removeprefix("sales:"), n) for k, n in sorted(moves.items()) if k.startswith("sales:")
    ]
    if made:
        lines.append("  sales moved         " + ", ".join(f"{k} {n}" for k, n in made))
    if check is not None:
        applied = f"  feedback applied    {check.applied} of {check.sent} events sent"
        if check.missing:
            applied += f" ({check.missing} not seen by the worker in time)"
        lines.append(applied)
        lines += [f"    not applied: {why}" for why in check.refused[:5]]
    return lines


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
