"""Shared machinery of the reliability campaigns: traffic, produce with offsets, clean runs.

The campaigns compare a real worker (killed, restarted, starved of Redis) with
an uninterrupted in-process run of the same `Processor` over a
`MemoryLeadStore`. For the comparison to be exact, the clean run must see every
partition's records in the order the worker sees them, so `produce_records`
returns each record's real partition and offset, and `clean_run` replays them
partition by partition in offset order.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaProducer
from kafka.partitioner.default import murmur2

from leadpulse.scoring import LeadState, ScoringModel, engagement, parse_model
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Record, Topics
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import Commit, MemoryLeadStore, decode_state
from leadpulse.streams.store.redis import keys
from tests.component.conftest import FakePublisher
from tests.integration.harness import poll_topic

CAMPAIGN_MODEL_YAML = """
version: "reliability-1"
engagement:
  rules:
    - {name: pricing-page, event: page_view, when: {url_contains: /pricing}, points: 15,
       half_life: 14d, cap: 30}
    - {name: page-view, event: page_view, points: 1, half_life: 7d, cap: 8}
    - {name: careers-page, event: page_view, when: {url_contains: /careers}, points: -10,
       half_life: 30d, cap: 20}
    - {name: email-open, event: email_open, points: 1, half_life: 7d, cap: 4}
    - {name: email-click, event: email_click, points: 4, half_life: 14d, cap: 12}
    - {name: unsubscribe, event: email_unsubscribe, points: -60, half_life: 90d}
    - {name: hard-bounce, event: email_bounce, when: {property: bounce_type, equals: hard},
       points: -50, half_life: 180d}
    - {name: form-submit, event: form_submit, points: 12, half_life: 21d, cap: 24}
    - {name: content-download, event: content_download, points: 6, half_life: 21d, cap: 18}
    - {name: webinar-registered, event: webinar_registered, points: 4, half_life: 21d, cap: 8}
    - {name: webinar-attended, event: webinar_attended, points: 12, half_life: 21d, cap: 24}
    - {name: trial-signup, event: trial_signup, points: 25, half_life: 30d, cap: 25}
    - {name: product-usage, event: product_usage, points: 2, half_life: 7d, cap: 16}
    - {name: demo-request, event: demo_request, points: 45, half_life: 30d, cap: 90}
fit:
  rules:
    - {name: mid-market, trait: company_size, between: [50, 999], points: 20}
    - {name: enterprise, trait: company_size, between: [1000, 100000], points: 25}
    - {name: target-industry, trait: industry, in: [software, fintech], points: 15}
    - {name: decision-maker, trait: seniority, in: [vp, director, c-level], points: 20}
    - {name: student, trait: seniority, in: [intern, student], points: -30}
  grades: {A: 50, B: 30, C: 10}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
"""

CAMPAIGN_MODEL = parse_model(CAMPAIGN_MODEL_YAML, "reliability-campaign")

# (type, weight, properties builder) -- a B2B funnel's rough proportions
_URLS = [
    ("https://acme.io/pricing", 18),
    ("https://acme.io/blog/post", 40),
    ("https://acme.io/docs/start", 25),
    ("https://acme.io/careers", 4),
    ("https://acme.io/", 13),
]
_KINDS = [
    ("page_view", 380),
    ("email_open", 120),
    ("email_click", 50),
    ("form_submit", 45),
    ("content_download", 35),
    ("webinar_registered", 18),
    ("webinar_attended", 12),
    ("trial_signup", 12),
    ("product_usage", 90),
    ("demo_request", 40),
    ("email_unsubscribe", 28),
    ("email_bounce", 12),
    ("identify", 40),
    ("sales_qualified", 8),
    ("sales_rejected", 8),
    ("app.custom-event:v2", 10),  # a type no rule mentions: accepted, scores nothing
]


def partition_of(key: str, partitions: int) -> int:
    """The partition kafka-python's default partitioner sends `key` to."""
    return int(murmur2(key.encode()) & 0x7FFFFFFF) % partitions


@dataclass
class Traffic:
    bodies: list[dict[str, Any]]
    """In production order; re-sent duplicates are the same dict again."""
    leads: list[str]
    anonymous: list[str]
    merged: dict[str, str] = field(default_factory=dict)
    """anonymous id -> the lead an identify linked it to."""


def _traits(rng: random.Random) -> dict[str, Any]:
    traits: dict[str, Any] = {"company_size": rng.choice([4, 30, 120, 600, 2500, 40000])}
    if rng.random() < 0.7:
        traits["seniority"] = rng.choice(["vp", "director", "manager", "engineer", "intern"])
    if rng.random() < 0.6:
        traits["industry"] = rng.choice(["software", "fintech", "retail", "education"])
    if rng.random() < 0.3:
        traits["title"] = rng.choice(["VP Sales", "Head of Growth", "Engineer"])
    return traits


def campaign_traffic(
    seed: int,
    events: int,
    leads: int,
    *,
    partitions: int,
    anonymous: int = 0,
    duplicate_rate: float = 0.01,
    span: timedelta = timedelta(hours=6),
) -> Traffic:
    """A seeded, realistic mix of behaviour over `leads` known leads.

    Known leads get a skewed share of events (a few are very busy), and enough
    strong and negative signals that many cross MQL, get handed off, are
    recycled by unsubscribes and bounces, and come back. Anonymous visitors
    browse; about half of them later identify as a known lead whose key hashes
    to the same partition, so the merge is ordered the same way in every run
    (cross-partition merge order is not deterministic, by design of Kafka).
    An anonymous id is not used after its identify: events credited through
    an alias from another partition would make the merge order depend on timing.
    A tracker retry re-sends about `duplicate_rate` of the events unchanged.
    Event times are increasing, in the past, within `span`.
    """
    rng = random.Random(seed)
    tag = uuid.uuid4().hex[:6]
    lead_ids = [f"rl-{tag}-{i}" for i in range(leads)]
    by_partition: dict[int, list[str]] = defaultdict(list)
    for lead in lead_ids:
        by_partition[partition_of(lead, partitions)].append(lead)
    anon_ids: list[str] = []
    link_target: dict[str, str] = {}
    for i in range(anonymous):
        anon = f"anon-{tag}-{i}"
        anon_ids.append(anon)
        if i % 2 == 0:
            target_partition = partition_of(anon, partitions)
            link_target[anon] = rng.choice(by_partition[target_partition])
    cum_leads = list(itertools.accumulate(1.0 / (1 + (i % 97)) ** 0.6 for i in range(leads)))
    kinds = [k for k, _ in _KINDS]
    cum_kinds = list(itertools.accumulate(w for _, w in _KINDS))
    urls = [u for u, _ in _URLS]
    cum_urls = list(itertools.accumulate(w for _, w in _URLS))
    start = datetime.now(UTC) - span - timedelta(minutes=5)
    step = span / max(events, 1)
    bodies: list[dict[str, Any]] = []
    merged: dict[str, str] = {}
    i = 0
    while len(bodies) < events:
        at = (start + step * len(bodies)).isoformat()
        if bodies and rng.random() < duplicate_rate:
            bodies.append(rng.choice(bodies[-2000:]))  # tracker retry: same bytes again
            continue
        i += 1
        event_id = f"{tag}-{i}"
        visitor = rng.choice(anon_ids) if anon_ids and rng.random() < 0.08 else None
        if visitor is not None and visitor not in merged:
            target = link_target.get(visitor)
            if target is not None and rng.random() < 0.15:
                body = {
                    "event_id": event_id,
                    "type": "identify",
                    "lead_id": target,
                    "anonymous_id": visitor,
                    "occurred_at": at,
                    "traits": _traits(rng),
                }
                merged[visitor] = target
            else:
                url = rng.choices(urls, cum_weights=cum_urls)[0]
                body = {
                    "event_id": event_id,
                    "type": "page_view",
                    "anonymous_id": visitor,
                    "occurred_at": at,
                    "properties": {"url": url},
                }
            bodies.append(body)
            continue
        lead = rng.choices(lead_ids, cum_weights=cum_leads)[0]
        kind = rng.choices(kinds, cum_weights=cum_kinds)[0]
        body = {"event_id": event_id, "type": kind, "lead_id": lead, "occurred_at": at}
        if kind == "page_view":
            body["properties"] = {"url": rng.choices(urls, cum_weights=cum_urls)[0]}
        elif kind == "email_bounce":
            body["properties"] = {"bounce_type": rng.choice(["hard", "soft"])}
        elif kind == "identify":
            body["traits"] = _traits(rng)
        elif kind == "product_usage":
            body["properties"] = {"feature": rng.choice(["reports", "api", "sso"]), "seconds": 30}
        bodies.append(body)
    return Traffic(bodies=bodies, leads=lead_ids, anonymous=anon_ids, merged=merged)


def subject(body: Mapping[str, Any]) -> str:
    return str(body.get("lead_id") or body.get("anonymous_id") or "")


@dataclass(frozen=True, slots=True)
class Sent:
    key: bytes | None
    value: bytes | None
    partition: int
    offset: int


def produce_records(
    settings: Settings,
    records: Iterable[tuple[bytes | None, bytes | None]],
    *,
    max_request_size: int = 4 * 1024 * 1024,
) -> list[Sent]:
    """Produce (key, value) pairs to the events topic; return where each one landed."""
    producer = KafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        linger_ms=20,
        batch_size=256 * 1024,
        max_request_size=max_request_size,
        acks="all",
    )
    try:
        pending = [
            (key, value, producer.send(settings.events_topic, key=key, value=value))
            for key, value in records
        ]
        producer.flush(120)
        sent = []
        for key, value, future in pending:
            meta = future.get(timeout=60)
            sent.append(Sent(key, value, meta.partition, meta.offset))
    finally:
        producer.close(10)
    return sent


def encode_bodies(bodies: Iterable[Mapping[str, Any]]) -> list[tuple[bytes | None, bytes | None]]:
    return [(subject(b).encode(), json.dumps(b).encode()) for b in bodies]


class RecordingStore(MemoryLeadStore):
    """A MemoryLeadStore that remembers the earliest decay-recycle time ever committed."""

    def __init__(self) -> None:
        super().__init__()
        self.earliest_due: tuple[float, str] | None = None

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        lost = await super().commit(commits)
        for c in commits:
            if c.subject in lost or c.due_at is None:
                continue
            if self.earliest_due is None or c.due_at < self.earliest_due[0]:
                self.earliest_due = (c.due_at, c.subject)
        return lost


@dataclass
class CleanRun:
    store: RecordingStore
    publisher: FakePublisher
    topics: Topics

    def states(self) -> dict[str, LeadState]:
        return {s: decode_state(blob) for s, (_, blob) in self.store.states.items()}

    def transitions(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for message in self.publisher.on(self.topics.transitions):
            value = json.loads(message.value)
            found[value["transition_id"]] = value
        return found

    def handoffs(self) -> dict[str, dict[str, Any]]:
        found: dict[str, dict[str, Any]] = {}
        for message in self.publisher.on(self.topics.handoffs):
            value = json.loads(message.value)
            found[value["handoff_id"]] = value
        return found


async def clean_run(
    sent: Sequence[Sent],
    model: ScoringModel,
    settings: Settings,
    *,
    per_event: bool = True,
) -> CleanRun:
    """The same records through the same Processor, in memory, never interrupted.

    Per partition in offset order, one record per call by default, so the
    store sees every intermediate state (see `RecordingStore.earliest_due`).
    """
    topics = Topics(
        handoffs=settings.handoffs_topic,
        transitions=settings.transitions_topic,
        dlq=settings.dlq_topic,
    )
    store, publisher = RecordingStore(), FakePublisher()
    processor = Processor(store, publisher, model, topics=topics, clock=time.time)
    by_partition: dict[int, list[Record]] = defaultdict(list)
    for s in sorted(sent, key=lambda s: (s.partition, s.offset)):
        by_partition[s.partition].append(
            Record(s.key, s.value, settings.events_topic, s.partition, s.offset)
        )
    for records in by_partition.values():
        if per_event:
            for record in records:
                await processor.process([record])
        else:
            for at in range(0, len(records), 500):
                await processor.process(records[at : at + 500])
    return CleanRun(store, publisher, topics)


# -- reading the real run ---------------------------------------------------------------


def read_states(redis_url: str, subjects: Sequence[str]) -> dict[str, LeadState | None]:
    """Every subject's state in one pipelined round trip per 1000 subjects."""
    client = redis.Redis.from_url(redis_url)
    result: dict[str, LeadState | None] = {}
    try:
        for at in range(0, len(subjects), 1000):
            chunk = subjects[at : at + 1000]
            pipe = client.pipeline(transaction=False)
            for s in chunk:
                pipe.hget(keys.DEFAULT.state(s), "s")
            for s, blob in zip(chunk, pipe.execute(), strict=True):
                result[s] = decode_state(blob) if blob else None
    finally:
        client.close()
    return result


def read_topic(
    settings: Settings,
    topic: str,
    done: Callable[[list[bytes]], bool],
    *,
    timeout: float,
) -> list[bytes]:
    """Raw values of `topic` from the beginning, polled until `done` holds (else TimeoutError)."""
    values = poll_topic(settings, topic, done=done, timeout=timeout)
    if not done(values):
        raise TimeoutError(f"{topic}: condition not met, have {len(values)} messages")
    return values


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    check: Callable[[], None] | None = None,
) -> None:
    """Poll `condition`; `check` runs on every round and may raise to fail fast."""
    deadline = time.monotonic() + timeout
    while True:
        if check is not None:
            check()
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached in {timeout:.0f}s")
        time.sleep(interval)


# -- comparing ---------------------------------------------------------------------------


def assert_same_states(
    real: Mapping[str, LeadState | None],
    clean: Mapping[str, LeadState],
    model: ScoringModel,
    subjects: Iterable[str],
) -> None:
    """Each subject's real state equals the clean one (engagement to 1e-9 relative)."""
    problems: list[str] = []
    for s in subjects:
        got, want = real.get(s), clean.get(s)
        if want is None:
            if got is not None:
                problems.append(f"{s}: expected no state (merged away), found one")
            continue
        if got is None:
            problems.append(f"{s}: no state in Redis")
            continue
        fields = ("events_applied", "stage", "transition_seq", "armed", "anonymous", "clock")
        problems.extend(
            f"{s}: {name} {getattr(got, name)!r} != {getattr(want, name)!r}"
            for name in fields
            if getattr(got, name) != getattr(want, name)
        )
        if got.traits != want.traits or set(got.merged_from) != set(want.merged_from):
            problems.append(f"{s}: traits/merged_from differ")
        at = want.clock
        if engagement(got, at, model) != pytest.approx(
            engagement(want, at, model), rel=1e-9, abs=1e-12
        ):
            problems.append(
                f"{s}: engagement {engagement(got, at, model)!r} != {engagement(want, at, model)!r}"
            )
    assert not problems, f"{len(problems)} differences, first ones:\n" + "\n".join(problems[:20])


def assert_published(
    clean: Mapping[str, dict[str, Any]], published: Iterable[bytes], id_field: str
) -> int:
    """Every clean message was published at least once with the same id; duplicates identical.

    Returns the number of duplicate deliveries seen.
    """
    by_id: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for raw in published:
        value = json.loads(raw)
        by_id[value[id_field]].append(value)
    problems: list[str] = []
    duplicates = 0
    for message_id, want in clean.items():
        got = by_id.get(message_id)
        if not got:
            problems.append(f"{message_id} ({want['lead_id']}) never published")
            continue
        duplicates += len(got) - 1
        for other in got[1:]:
            if other != got[0]:
                fields = sorted(k for k in {*other, *got[0]} if other.get(k) != got[0].get(k))
                shown = {k: (got[0].get(k), other.get(k)) for k in fields}
                problems.append(f"{message_id}: re-deliveries differ in {shown}")
                break
        first = got[0]
        problems.extend(
            f"{message_id}: {name} {first.get(name)!r} != {want.get(name)!r}"
            for name in ("lead_id", "from_stage", "to_stage", "event_id", "occurred_at", "grade")
            if first.get(name) != want.get(name)
        )
        if first["engagement"] != pytest.approx(want["engagement"], rel=1e-9, abs=1e-12):
            problems.append(
                f"{message_id}: engagement {first['engagement']} != {want['engagement']}"
            )
    extra = set(by_id) - set(clean)
    if extra:
        example = by_id[min(extra)][0]
        shown = {k: example.get(k) for k in ("lead_id", "from_stage", "to_stage", "occurred_at")}
        problems.append(
            f"{len(extra)} published ids the clean run never decided, e.g. {min(extra)}: "
            f"{shown} ({example.get('reason')})"
        )
    assert not problems, f"{len(problems)} problems, first ones:\n" + "\n".join(problems[:20])
    return duplicates


def write_model(workdir: Path, text: str = CAMPAIGN_MODEL_YAML) -> Path:
    path = workdir / "campaign-model.yaml"
    path.write_text(text)
    return path


class CleanRunThread(threading.Thread):
    """Computes the uninterrupted run on the other core while the worker is being killed."""

    def __init__(self, sent: list[Sent], settings: Settings) -> None:
        super().__init__(name="clean-run", daemon=True)
        self.sent = sent
        self.settings = settings
        self.result: CleanRun | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = asyncio.run(clean_run(self.sent, CAMPAIGN_MODEL, self.settings))
        except BaseException as error:  # handed to the test thread
            self.error = error

    def wait(self, timeout: float = 300) -> CleanRun:
        self.join(timeout=timeout)
        if self.error is not None:
            raise self.error
        assert self.result is not None, "clean run did not finish"
        return self.result
