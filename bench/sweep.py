"""`python -m bench.sweep`: one decay-sweep tick over a million leads, and what a lead costs.

What it does, on the embedded stack (redis-server + Tansu on free ports of
127.0.0.1, stopped at the end whatever happens):

1. starts a real `leadpulse worker` and builds lead-state templates with the
   pure scoring code (the demo's persona mix, ~10 events per lead) while the
   worker joins its consumer group; reads the worker's RSS;
2. loads `--leads` leads into Redis in the store's exact format
   (`store_redis.lead_fields`, `keys`), pipelined: `--due` of them are MQL/SAL
   leads whose decay takes them below the recycle threshold by the tick time,
   every other lead has a due-index entry later than that;
3. measures Redis memory per lead (MEMORY USAGE over every key of a sample of
   leads, the due-index share, and the INFO used_memory delta) and the worker's
   RSS with the leads in Redis;
4. times `Processor.sweep(now)` with the real RedisLeadStore and a Kafka
   publisher (`--repeat` times, the due leads restored in between), a tick with
   nothing due, and a full SCAN over all lead state keys as the baseline of any
   sweep that visits every lead;
5. makes the due leads due in wall-clock time, lets the worker's own sweeper
   recycle them, and reads its RSS again;
6. measures leads with many events (the bounded idempotency window).

Results are printed and written to bench/results/sweep-<date>.json. Goals: a
tick with 1,000 due leads among 1,000,000 takes <= 100 ms; a lead costs
<= 1 KiB of Redis memory; the worker's memory does not grow with the leads.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis

from bench.common import machine
from leadpulse.schemas import BehaviorEvent
from leadpulse.scoring import (
    LeadState,
    ScoringModel,
    apply,
    default_model,
    new_lead,
    next_recycle_at,
)
from leadpulse.streams.dev.demo import PERSONAS, persona_events
from leadpulse.streams.dev.devstack import DevStack, free_port
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.http.auth import new_token
from leadpulse.streams.kafka.publisher import Outgoing
from leadpulse.streams.pipeline.app import freeze_heap
from leadpulse.streams.pipeline.processor import Processor
from leadpulse.streams.pipeline.records import Topics
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import (
    SEEN_WINDOW,
    Commit,
    LeadStore,
    Snapshot,
    Watermark,
    decode_state,
    encode_state,
)
from leadpulse.streams.store.redis import RedisLeadStore, connect, keys, lead_fields

DAY = 86400.0
TICK_GOAL_MS = 100.0
MEMORY_GOAL_BYTES = 1024
EVENTS_PER_LEAD = 10
CHUNK = 5000
"""Leads per pipelined write."""
TEMPLATE_MARKER = "~template~"
RESULTS = Path(__file__).parent / "results"
HEAVY_EVENTS = (10, 100, 128, 129, 500, 1000, 1001, 5000)
SITE = "https://example.com"


@dataclass(frozen=True)
class Options:
    leads: int = 1_000_000
    due: int = 1000
    repeat: int = 5
    sample: int = 1000
    templates: int = 2000
    seed: int = 11
    worker: bool = True
    redis_config: tuple[tuple[str, str], ...] = ()
    """CONFIG SET before loading, e.g. (("hash-max-listpack-value", "1024"),)."""
    out: Path | None = None


# --- building leads ---------------------------------------------------------------


def journey(rng: random.Random, n: int, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """~10 events of one demo persona, all credited to one known lead (no ids, no times)."""
    names, weights = zip(*PERSONAS, strict=True)
    kind = rng.choice(kinds) if kinds else rng.choices(names, weights)[0]
    events = persona_events(kind, n, rng)
    while len(events) < EVENTS_PER_LEAD:  # more browsing and reading, as leads do
        if rng.random() < 0.6:
            path = rng.choice(["/", "/blog/a", "/blog/b", "/product", "/docs", "/about"])
            events.append({"type": "page_view", "properties": {"url": SITE + path}})
        else:
            events.append({"type": "email_open"})
    for event in events:
        event.pop("anonymous_id", None)
        event.pop("event_id", None)
    return events


def score(
    lead: str, events: Sequence[dict[str, Any]], ids: Sequence[str], start: float, span: float
) -> LeadState:
    """The lead's state after its events, spread evenly over [start, start + span]."""
    model = _model()
    state = new_lead(lead)
    step = span / max(len(events) - 1, 1)
    for i, (body, event_id) in enumerate(zip(events, ids, strict=True)):
        occurred = datetime.fromtimestamp(start + i * step, UTC)
        event = BehaviorEvent.model_validate(
            {**body, "event_id": event_id, "lead_id": lead, "occurred_at": occurred}
        )
        state, _ = apply(state, event, model)
    return state


_MODEL: list[ScoringModel] = []


def _model() -> ScoringModel:
    if not _MODEL:
        _MODEL.append(default_model())
    return _MODEL[0]


def event_ids(rng: random.Random, count: int) -> list[str]:
    """UUID-shaped event ids, as trackers send them."""
    ids = []
    for _ in range(count):
        h = rng.randbytes(16).hex()
        ids.append(f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{h[16:20]}-{h[20:]}")
    return ids


@dataclass(frozen=True)
class Template:
    """A scored lead whose encoded state takes any lead id (split at the id)."""

    head: bytes
    tail: bytes
    events: int

    def blob(self, lead: str) -> bytes:
        return self.head + json.dumps(lead).encode() + self.tail


def build_templates(count: int, wall: float, seed: int) -> list[Template]:
    rng = random.Random(seed)
    templates = []
    for n in range(count):
        events = journey(rng, n)
        start = wall - rng.uniform(1, 30) * DAY
        state = score(TEMPLATE_MARKER, events, event_ids(rng, len(events)), start, 7 * DAY)
        blob = encode_state(state)
        head, tail = blob.split(json.dumps(TEMPLATE_MARKER).encode())
        template = Template(head, tail, len(events))
        # the split template must encode exactly what encode_state would
        lead = f"check-{n}"
        if template.blob(lead) != encode_state(state.model_copy(update={"lead_id": lead})):
            raise AssertionError("template encoding differs from encode_state")
        if decode_state(template.blob(lead)).lead_id != lead:
            raise AssertionError("template does not decode")
        templates.append(template)
    return templates


@dataclass
class DueLead:
    """An MQL/SAL lead placed in time so that decay recycles it at a chosen moment."""

    lead: str
    events: list[dict[str, Any]]
    ids: list[str]
    span: float
    offset: float
    """Seconds from the first event to the moment decay alone recycles the lead."""

    def at(self, dip: float) -> tuple[bytes, float]:
        """State and due time with the recycle at about `dip` (decay is shift-invariant)."""
        state = score(self.lead, self.events, self.ids, dip - self.offset, self.span)
        due = next_recycle_at(state, _model())
        if due is None:
            raise AssertionError(f"{self.lead} is not recyclable")
        return encode_state(state), due


def build_due(names: Sequence[str], wall: float, seed: int) -> list[DueLead]:
    """Leads that became MQL or SAL (buyers, evaluators) and will cool down."""
    rng = random.Random(seed + 1)
    leads: list[DueLead] = []
    attempts = 0
    while len(leads) < len(names):
        attempts += 1
        if attempts > 20 * len(names) + 100:
            raise RuntimeError("could not build enough recyclable leads")
        lead = names[len(leads)]
        events = journey(rng, attempts, kinds=("buyer", "evaluator"))
        ids = event_ids(rng, len(events))
        span = rng.uniform(1, 10) * DAY
        start = wall - 30 * DAY
        due = next_recycle_at(score(lead, events, ids, start, span), _model())
        if due is None:
            continue
        leads.append(DueLead(lead, events, ids, span, due - start))
    return leads


# --- writing to Redis ---------------------------------------------------------------


def _resp(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    out.extend(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
    return b"".join(out)


def send_pipelined(client: redis.Redis, commands: Sequence[bytes]) -> None:
    """Write RESP-encoded commands in one go and read (and check) every reply."""
    connection = client.connection_pool.get_connection()
    try:
        # redis-py leaves this one untyped
        connection.send_packed_command([b"".join(commands)], check_health=False)  # type: ignore[no-untyped-call]
        for _ in commands:
            reply = connection.read_response()  # raises on an error reply
            if isinstance(reply, redis.ResponseError):
                raise reply
    except BaseException:
        connection.disconnect()  # type: ignore[no-untyped-call]  # replies may be unread
        raise
    finally:
        client.connection_pool.release(connection)


def hset_command(lead: str, state: bytes, ids: Sequence[str]) -> bytes:
    parts = [b"HSET", keys.DEFAULT.state(lead).encode()]
    for name, value in lead_fields(1, state, ids).items():
        parts += [name.encode(), value]
    return _resp(*parts)


def zadd_commands(entries: Mapping[str, float], shards: int) -> list[bytes]:
    by_shard: dict[int, list[bytes]] = {}
    for lead, due in entries.items():
        by_shard.setdefault(keys.shard_of(lead, shards), []).extend(
            [repr(due).encode(), lead.encode()]
        )
    return [
        _resp(b"ZADD", keys.DEFAULT.due_shard(shard).encode(), *members)
        for shard, members in sorted(by_shard.items())
    ]


def lead_name(i: int) -> str:
    return f"lead-{i:07d}"


def load(
    client: redis.Redis,
    options: Options,
    templates: Sequence[Template],
    due_leads: Mapping[str, tuple[bytes, float, Sequence[str]]],
    not_before: float,
    shards: int,
) -> float:
    """Write every lead and its due-index entry; returns seconds taken."""
    rng = random.Random(options.seed + 2)
    started = time.perf_counter()
    for first in range(0, options.leads, CHUNK):
        commands: list[bytes] = []
        due_at: dict[str, float] = {}
        for i in range(first, min(first + CHUNK, options.leads)):
            lead = lead_name(i)
            special = due_leads.get(lead)
            if special is not None:
                blob, due, ids = special
            else:
                template = templates[rng.randrange(len(templates))]
                blob, ids = template.blob(lead), event_ids(rng, template.events)
                due = not_before + rng.uniform(3600, 30 * DAY)
            commands.append(hset_command(lead, blob, ids))
            due_at[lead] = due
        commands += zadd_commands(due_at, shards)
        send_pipelined(client, commands)
    return time.perf_counter() - started


# --- measuring ----------------------------------------------------------------------


def lead_keys(lead: str) -> list[str]:
    """Every key a lead (or an anonymous id) can have, see streams/keys.py."""
    return [
        keys.DEFAULT.state(lead),
        keys.DEFAULT.outbox(lead),
        keys.DEFAULT.alias(lead),
        keys.DEFAULT.detached(lead),
    ]


def memory_per_lead(client: redis.Redis, leads: Sequence[str], shards: int) -> dict[str, Any]:
    pipe = client.pipeline(transaction=False)
    for lead in leads:
        for key in lead_keys(lead):
            pipe.memory_usage(key, samples=0)
    replies = pipe.execute()
    width = len(lead_keys("x"))
    per_lead = []
    present: dict[str, int] = {}
    for n, lead in enumerate(leads):
        sizes = replies[n * width : (n + 1) * width]
        per_lead.append(sum(size or 0 for size in sizes))
        for key, size in zip(lead_keys(lead), sizes, strict=True):
            if size is not None:
                kind = key.rsplit(":", 1)[-1]
                present[kind] = present.get(kind, 0) + 1
    due_bytes = sum(
        client.memory_usage(keys.DEFAULT.due_shard(shard), samples=0) or 0
        for shard in range(shards)
    )
    members = sum(int(client.zcard(keys.DEFAULT.due_shard(shard))) for shard in range(shards))
    ordered = sorted(per_lead)
    return {
        "sampled_leads": len(leads),
        "keys_present": present,
        "lead_keys_bytes": {
            "mean": round(statistics.fmean(per_lead), 1),
            "p50": ordered[len(ordered) // 2],
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))],
            "max": ordered[-1],
        },
        "due_index_bytes_per_member": round(due_bytes / max(members, 1), 1),
        "due_index_members": members,
        "encodings": {
            "state": _decode(client.object("encoding", keys.DEFAULT.state(leads[0]))),
            "due_shard": _decode(client.object("encoding", keys.DEFAULT.due_shard(0))),
        },
    }


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def rss_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak) of a process, in KiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


class KafkaPublisher:
    """Sends to Kafka and returns once every message is acknowledged (acks=all)."""

    def __init__(self, bootstrap: str) -> None:
        from aiokafka import AIOKafkaProducer

        self.producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")

    async def start(self, topics: Sequence[str]) -> None:
        await self.producer.start()
        for topic in topics:  # metadata now, not inside the first timed tick
            await self.producer.partitions_for(topic)

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        futures = [await self.producer.send(m.topic, m.value, key=m.key.encode()) for m in messages]
        await asyncio.gather(*futures)

    async def stop(self) -> None:
        await self.producer.stop()


class Timed:
    """Adds up the wall time spent in each store and publisher call."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = {}

    def reset(self) -> None:
        self.spent = {}

    def add(self, name: str, started: float) -> None:
        self.spent[name] = self.spent.get(name, 0.0) + time.perf_counter() - started


class TimedStore:
    """A LeadStore that records how long the sweep spends in each call."""

    def __init__(self, inner: RedisLeadStore, timed: Timed) -> None:
        self.inner, self.timed = inner, timed

    def __getattr__(self, name: str) -> Any:
        """What the sweep uses and this class does not time (`partitions`, ...)."""
        return getattr(self.inner, name)

    async def snapshot(self, wanted: Mapping[str, Collection[str]]) -> dict[str, Snapshot]:
        started = time.perf_counter()
        try:
            return await self.inner.snapshot(wanted)
        finally:
            self.timed.add("snapshot", started)

    async def commit(self, commits: Sequence[Commit]) -> set[str]:
        started = time.perf_counter()
        try:
            return await self.inner.commit(commits)
        finally:
            self.timed.add("commit", started)

    async def clear_outbox(self, published: Mapping[str, Collection[str]]) -> None:
        started = time.perf_counter()
        try:
            await self.inner.clear_outbox(published)
        finally:
            self.timed.add("clear_outbox", started)

    def pending_outboxes(self, shards: Collection[int]) -> Any:
        return self.inner.pending_outboxes(shards)

    async def pending_count(self, shards: Collection[int]) -> int:
        return await self.inner.pending_count(shards)

    async def due(self, now: float, limit: int, shards: Collection[int]) -> dict[str, float]:
        started = time.perf_counter()
        try:
            return await self.inner.due(now, limit, shards)
        finally:
            self.timed.add("due", started)

    async def detach(self, links: Sequence[tuple[str, str]]) -> list[bytes | None]:
        return await self.inner.detach(links)

    async def forget_detached(self, anonymous_ids: Collection[str]) -> None:
        await self.inner.forget_detached(anonymous_ids)

    async def record_progress(self, topic: str, offsets: Mapping[int, int]) -> None:
        await self.inner.record_progress(topic, offsets)

    async def progress(self, topic: str) -> dict[int, int]:
        return await self.inner.progress(topic)

    async def publish_watermarks(self, topic: str, marks: Mapping[int, Watermark]) -> None:
        await self.inner.publish_watermarks(topic, marks)

    async def watermarks(self, topic: str) -> dict[int, Watermark]:
        return await self.inner.watermarks(topic)

    async def ping(self) -> None:
        await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


class TimedPublisher:
    def __init__(self, inner: KafkaPublisher, timed: Timed) -> None:
        self.inner, self.timed = inner, timed

    async def publish(self, messages: Sequence[Outgoing]) -> None:
        started = time.perf_counter()
        try:
            await self.inner.publish(messages)
        finally:
            self.timed.add("publish", started)


async def restore(store: LeadStore, originals: Mapping[str, tuple[bytes, float]]) -> None:
    """Put the due leads back as they were before a tick recycled them."""
    snaps = await store.snapshot(dict.fromkeys(originals, ()))
    commits = [
        Commit(lead, snaps[lead].version, blob, (), due_at=due)
        for lead, (blob, due) in originals.items()
    ]
    if await store.commit(commits):
        raise RuntimeError("restoring the due leads lost a race")


async def time_ticks(
    url: str,
    bootstrap: str,
    settings: Settings,
    originals: Mapping[str, tuple[bytes, float]],
    tick_at: float,
    empty_at: float,
    repeat: int,
) -> dict[str, Any]:
    # the worker's own client and heap treatment (streams.cli.run_worker)
    client = connect(settings.replace(redis_url=url))
    store = RedisLeadStore(client, partitions=settings.partitions)
    publisher = KafkaPublisher(bootstrap)
    await publisher.start([settings.transitions_topic, settings.handoffs_topic])
    timed = Timed()
    topics = Topics(
        handoffs=settings.handoffs_topic,
        transitions=settings.transitions_topic,
        dlq=settings.dlq_topic,
    )
    processor = Processor(
        TimedStore(store, timed),
        TimedPublisher(publisher, timed),
        _model(),
        topics=topics,
        clock=lambda: tick_at,
        sweep_limit=settings.sweep_limit,
    )
    freeze_heap()
    try:
        ticks, phases, published, left = [], [], [], []
        for _ in range(repeat):
            await restore(store, originals)
            gc.collect()
            timed.reset()
            started = time.perf_counter()
            report = await processor.sweep(tick_at)
            ticks.append((time.perf_counter() - started) * 1000)
            phases.append({k: v * 1000 for k, v in timed.spent.items()})
            published.append(report.published)
            left.append(
                len(await store.due(tick_at, settings.sweep_limit, range(settings.partitions)))
            )
        by_due: dict[str, float] = {}
        for count in (10, 100):  # the cost follows the number of due leads
            if count >= len(originals):
                continue
            subset = dict(list(originals.items())[:count])
            runs = []
            for _ in range(repeat):
                await restore(store, subset)
                gc.collect()
                started = time.perf_counter()
                report = await processor.sweep(tick_at)
                runs.append((time.perf_counter() - started) * 1000)
                if report.published != count:
                    raise AssertionError(f"{report.published} published, {count} due")
            by_due[str(count)] = round(statistics.median(runs), 2)
        empty = []
        for _ in range(repeat):
            gc.collect()
            started = time.perf_counter()
            report = await processor.sweep(empty_at)
            empty.append((time.perf_counter() - started) * 1000)
            if report.published:
                raise AssertionError("the empty tick found due leads")
        started = time.perf_counter()
        scanned = 0
        cursor = 0
        for _ in range(10_000_000):  # bounded: SCAN ends when the cursor comes back to 0
            cursor, found = await client.scan(cursor, match="lp:{*}:state", count=1000)
            scanned += len(found)
            if cursor == 0:
                break
        scan_s = time.perf_counter() - started
    finally:
        await publisher.stop()
        await store.close()
    median = statistics.median(ticks)
    by_due[str(len(originals))] = round(median, 2)
    return {
        "due": len(originals),
        "runs_ms": [round(t, 2) for t in ticks],
        "median_ms": round(median, 2),
        "min_ms": round(min(ticks), 2),
        "max_ms": round(max(ticks), 2),
        "phases_median_ms": {
            name: round(statistics.median(p.get(name, 0.0) for p in phases), 2)
            for name in ("due", "snapshot", "commit", "publish", "clear_outbox")
        },
        "median_ms_by_due": by_due,
        "published_per_tick": published,
        "still_due_after_tick": left,
        "empty_tick_ms": {
            "runs": [round(t, 2) for t in empty],
            "median": round(statistics.median(empty), 2),
        },
        "scan_baseline": {
            "keys": scanned,
            "seconds": round(scan_s, 3),
            "scan_over_tick": round(scan_s * 1000 / median, 1),
        },
        "goal_ms": TICK_GOAL_MS,
        "holds": median <= TICK_GOAL_MS,
    }


async def heavy_leads(url: str, shards: int, rng: random.Random) -> list[dict[str, Any]]:
    """Leads with many events, written through commits of ~10 events each."""
    client = aioredis.Redis.from_url(url)
    store = RedisLeadStore(client, partitions=shards)
    rows = []
    blob = encode_state(new_lead("heavy"))
    try:
        for count in HEAVY_EVENTS:
            lead = f"heavy-{count}"
            ids = event_ids(rng, count)
            commits = [ids[i : i + 10] for i in range(0, count, 10)]
            for version, chunk in enumerate(commits):
                lost = await store.commit([Commit(lead, version, blob, chunk)])
                if lost:
                    raise RuntimeError(f"{lead} lost a race")
            snap = (await store.snapshot({lead: ids}))[lead]
            rows.append(
                {
                    "events": count,
                    "memory_usage_bytes": await client.memory_usage(
                        keys.DEFAULT.state(lead), samples=0
                    ),
                    "state_bytes": len(blob),
                    "window_bytes": await client.hstrlen(keys.DEFAULT.state(lead), "w"),
                    "ids_recognized": len(snap.seen),
                    "newest_recognized": ids[-1] in snap.seen,
                    "encoding": _decode(await client.object("encoding", keys.DEFAULT.state(lead))),
                }
            )
    finally:
        await store.close()
    return rows


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.1)
    raise TimeoutError(f"{what} not reached in {timeout:.0f}s")


def recycled(stats: Mapping[str, Any]) -> int:
    transitions = stats.get("transitions", {})
    return sum(n for name, n in transitions.items() if name.endswith("->nurture"))


# --- the run ------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, flush=True)


def run(options: Options) -> dict[str, Any]:
    wall = time.time()
    # The measured tick runs at `tick_at`, two days ahead of wall time, so the
    # worker's own sweeper (wall clock) leaves the due leads to it. Every other
    # lead is due after `tick_at`.
    tick_at = wall + 2 * DAY
    rng = random.Random(options.seed)
    due_names = sorted(rng.sample(range(options.leads), options.due))
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="leadpulse-sweep-") as tmp, DevStack() as stack:
        settings = Settings(
            broker=f"kafka://{stack.bootstrap}",
            redis_url=stack.redis_url,
            partitions=4,
            web_port=free_port(),
            data_dir=Path(tmp) / "worker",
            session_timeout=2.0,
            api_tokens=f"bench={new_token()}:admin",  # for the worker's /stats
        )
        say(f"embedded stack: redis {stack.redis_url}, kafka {stack.bootstrap}")
        worker = WorkerProcess(settings, Path(tmp) / "worker.log", loglevel="warning")
        if options.worker:
            worker.start()
        client = redis.Redis.from_url(stack.redis_url)
        try:
            started = time.perf_counter()
            templates = build_templates(options.templates, wall, options.seed)
            due_leads = build_due([lead_name(i) for i in due_names], wall, options.seed)
            placed = {}
            for d in due_leads:
                blob, due = d.at(tick_at - rng.uniform(60, DAY))
                placed[d.lead] = (blob, due, d.ids)
            originals = {lead: (blob, due) for lead, (blob, due, _) in placed.items()}
            say(
                f"built {len(templates)} templates and {len(due_leads)} due leads "
                f"in {time.perf_counter() - started:.1f}s"
            )
            rss: dict[str, Any] = {}
            if options.worker:
                worker.wait_assigned(timeout=180)
                time.sleep(3 * settings.sweep_interval)
                rss["before_load"] = rss_kib(_pid(worker))
                say(f"worker pid {_pid(worker)} RSS before loading: {rss['before_load']} KiB")
            for name, value in options.redis_config:
                client.config_set(name, value)
            before = used_memory(client)
            say(f"loading {options.leads:,} leads ({options.due} due) ...")
            seconds = load(client, options, templates, placed, tick_at, settings.partitions)
            after = used_memory(client)
            result["load"] = {
                "leads": options.leads,
                "seconds": round(seconds, 1),
                "leads_per_s": round(options.leads / seconds),
            }
            say(f"loaded in {seconds:.1f}s ({options.leads / seconds:,.0f} leads/s)")

            sample = [lead_name(i) for i in rng.sample(range(options.leads), options.sample)]
            memory = memory_per_lead(client, sample, settings.partitions)
            per_lead = memory["lead_keys_bytes"]["mean"] + memory["due_index_bytes_per_member"]
            memory.update(
                {
                    "per_lead_bytes": round(per_lead, 1),
                    "used_memory_delta_per_lead": round((after - before) / options.leads, 1),
                    "used_memory_before": before,
                    "used_memory_after": after,
                    "goal_bytes": MEMORY_GOAL_BYTES,
                    "holds": per_lead <= MEMORY_GOAL_BYTES,
                    "redis_config": {
                        k: _decode(v) for k, v in client.config_get("hash-max-listpack-*").items()
                    }
                    | {k: _decode(v) for k, v in client.config_get("zset-max-listpack-*").items()},
                    "redis_version": client.info("server")["redis_version"],
                    "seen_window": SEEN_WINDOW,
                }
            )
            result["memory"] = memory
            say(
                f"memory per lead: {memory['lead_keys_bytes']['mean']:.0f} B in the lead's keys "
                f"+ {memory['due_index_bytes_per_member']:.0f} B due index = {per_lead:.0f} B "
                f"(MEMORY USAGE, {options.sample} leads); used_memory delta "
                f"{memory['used_memory_delta_per_lead']:.0f} B/lead"
            )
            if options.worker:
                time.sleep(3 * settings.sweep_interval)  # a few worker ticks over the full store
                rss["after_load"] = rss_kib(_pid(worker))
                say(f"worker RSS with the leads in Redis: {rss['after_load']} KiB")

            say(f"timing {options.repeat} sweep ticks with {options.due} due leads ...")
            tick = asyncio.run(
                time_ticks(
                    stack.redis_url,
                    stack.bootstrap,
                    settings,
                    originals,
                    tick_at,
                    wall,
                    options.repeat,
                )
            )
            result["tick"] = tick
            say(
                f"tick: median {tick['median_ms']} ms (runs {tick['runs_ms']}; by due "
                f"{tick['median_ms_by_due']}), phases "
                f"{tick['phases_median_ms']}; empty tick {tick['empty_tick_ms']['median']} ms; "
                f"full SCAN of {tick['scan_baseline']['keys']:,} state keys "
                f"{tick['scan_baseline']['seconds']} s"
            )

            if options.worker:
                rounds = []
                for name in ("after_sweep", "after_second_sweep"):
                    rounds.append(worker_tick(stack.redis_url, worker, due_leads, rng))
                    time.sleep(3 * settings.sweep_interval)
                    rss[name] = rss_kib(_pid(worker))
                    say(
                        f"worker recycled {rounds[-1]['recycled']} leads in its own sweep; "
                        f"RSS {rss[name]} KiB"
                    )
                result["worker_sweeps"] = rounds
                result["worker_rss_kib"] = rss
            result["heavy_leads"] = asyncio.run(
                heavy_leads(stack.redis_url, settings.partitions, rng)
            )
            for row in result["heavy_leads"]:
                say(
                    f"lead with {row['events']:>5} events: {row['memory_usage_bytes']:>6} B "
                    f"(window {row['window_bytes']} B, {row['ids_recognized']} ids recognized, "
                    f"{row['encoding']})"
                )
        finally:
            client.close()
            if options.worker:
                worker.stop()
    return result


def _pid(worker: WorkerProcess) -> int:
    if worker.process is None:
        raise RuntimeError("worker not started")
    return worker.process.pid


def worker_tick(
    url: str, worker: WorkerProcess, due_leads: Sequence[DueLead], rng: random.Random
) -> dict[str, Any]:
    """Make the due leads due in wall time and wait until the worker's sweeper took them."""
    baseline = recycled(worker.stats())
    now = time.time()
    originals = {}
    for d in due_leads:
        blob, due = d.at(now - rng.uniform(1, 600))
        originals[d.lead] = (blob, min(due, now))

    async def put_back() -> None:
        store = RedisLeadStore(aioredis.Redis.from_url(url))
        try:
            await restore(store, originals)
        finally:
            await store.close()

    asyncio.run(put_back())
    seconds = wait_until(
        lambda: recycled(worker.stats()) - baseline >= len(due_leads),
        timeout=120,
        what="the worker's sweeper recycling the due leads",
    )
    return {
        "recycled": recycled(worker.stats()) - baseline,
        "seconds_until_seen": round(seconds, 2),
    }


def parse(argv: Sequence[str] | None) -> tuple[Options, list[str]]:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sweep", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--leads", type=int, default=None, help="leads in Redis (1,000,000)")
    parser.add_argument("--due", type=int, default=1000, help="of them due at the tick (1,000)")
    parser.add_argument("--quick", action="store_true", help="50,000 leads")
    parser.add_argument("--repeat", type=int, default=5, help="timed ticks (5)")
    parser.add_argument("--sample", type=int, default=1000, help="leads sampled for MEMORY USAGE")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-worker", action="store_true", help="skip the worker RSS part")
    parser.add_argument(
        "--redis-config",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="CONFIG SET on the bench's redis-server before loading (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    leads = args.leads if args.leads is not None else (50_000 if args.quick else 1_000_000)
    if not 0 < args.due <= leads or args.repeat < 1 or not 0 < args.sample <= leads:
        parser.error("need 0 < --due <= leads, --repeat >= 1 and 0 < --sample <= leads")
    if any("=" not in item for item in args.redis_config):
        parser.error("--redis-config takes NAME=VALUE")
    options = Options(
        leads=leads,
        due=args.due,
        repeat=args.repeat,
        sample=args.sample,
        seed=args.seed,
        worker=not args.no_worker,
        redis_config=tuple((n, v) for n, _, v in (i.partition("=") for i in args.redis_config)),
        out=args.out,
    )
    return options, list(argv if argv is not None else sys.argv[1:])


def main(argv: Sequence[str] | None = None) -> int:
    options, given = parse(argv)
    host = machine()  # load averages at the start tell how noisy the machine was
    started = time.time()
    result = run(options)
    date = datetime.fromtimestamp(started, UTC)
    document = {
        "benchmark": "sweep",
        "date": date.isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.sweep", *given]),
        "wall_seconds": round(time.time() - started, 1),
        "host": {**host, "loadavg_at_end": list(os.getloadavg()), "platform": platform.platform()},
        "options": {
            "leads": options.leads,
            "due": options.due,
            "repeat": options.repeat,
            "sample": options.sample,
            "seed": options.seed,
            "templates": options.templates,
            "events_per_lead": EVENTS_PER_LEAD,
            "redis_config_set": dict(options.redis_config),
            "lead_id_example": lead_name(options.leads - 1),
        },
        **result,
    }
    suffix = "" if options.leads == 1_000_000 and options.due == 1000 else f"-{options.leads}"
    if options.redis_config:
        suffix += "-config"
    out = options.out or RESULTS / f"sweep-{date:%Y-%m-%d}{suffix}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=2) + "\n")
    say(f"\nwrote {out} ({document['wall_seconds']} s in all)")
    goals = [
        f"tick <= {TICK_GOAL_MS:.0f} ms: {'holds' if result['tick']['holds'] else 'MISSED'}",
        f"memory <= {MEMORY_GOAL_BYTES} B/lead: "
        f"{'holds' if result['memory']['holds'] else 'MISSED'}",
    ]
    if "worker_rss_kib" in result:
        r = result["worker_rss_kib"]
        goals.append(
            "worker RSS KiB before/after load/after sweep: "
            f"{r['before_load']['VmRSS']} / {r['after_load']['VmRSS']} / "
            f"{r['after_sweep']['VmRSS']} / {r['after_second_sweep']['VmRSS']} (second sweep)"
        )
    say("\n".join(goals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
