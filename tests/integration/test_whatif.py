"""`leadpulse model whatif` on the embedded stack: exact against live workers, writes nothing.

A known history goes through a live worker under the current model
(tests.integration.harness.MODEL_YAML): an old lead handed off 60 days ago
and recycled by decay since, recent leads handed off and answered by sales
(accepted and qualified, rejected, disqualified), a visitor merged into its
lead across partitions, a lead that only browsed. Then, with the worker
stopped, `whatif` replays the topic: its current column must equal the live
state (each lead's stage in Redis, the handoff ids on the handoffs topic,
the recycles on the transitions topic), and nothing may have been written
(Redis DBSIZE, every topic's end offsets, the group's committed offsets,
the list of groups). Then a fresh worker runs NEW over the same events topic
(its own group, Redis database and output topics): whatif's new column must
equal it exactly.

The history is built so that the partition interleaving cannot change a
decision (issue 16 item 8 is not solved here): the merged visitor's points
(plain page views) never decide a crossing, and merged leads are recent, so
no recycle time depends on when the merge happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from leadpulse.scoring import load_model
from leadpulse.streams.dev.devstack import DevStack, free_port
from leadpulse.streams.kafka.partitioner import default_partition
from leadpulse.streams.kafka.topics import create_topics
from leadpulse.streams.replay import run_whatif
from leadpulse.streams.settings import Settings
from tests.integration.harness import (
    MODEL_YAML,
    fresh_settings,
    poll_topic,
    produce,
    read_state,
    start_worker,
    wait_for,
    worker_settings,
)

NEW_YAML = (
    MODEL_YAML.replace('version: "integration-1"', 'version: "integration-2"')
    .replace("points: 60, half_life: 30d}", "points: 40, half_life: 30d}", 1)
    .replace("form_submit, points: 10,", "form_submit, points: 30,")
)
PARTITIONS = 4
RUN = uuid.uuid4().hex[:6]


def lead(name: str) -> str:
    return f"wi-{RUN}-{name}"


def ev(kind: str, subject: str, at: datetime, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "occurred_at": at.isoformat(),
        **extra,
    }
    body.setdefault("lead_id", subject)
    return body


def pricing(subject: str, at: datetime) -> dict[str, Any]:
    return ev("page_view", subject, at, properties={"url": "https://x.io/pricing"})


def other_partition(of: str) -> str:
    """An anonymous id whose events land on another partition than `of`'s."""
    mine = default_partition(of.encode(), list(range(PARTITIONS)))
    for n in range(1000):
        candidate = f"anon-{RUN}-{n}"
        if default_partition(candidate.encode(), list(range(PARTITIONS))) != mine:
            return candidate
    raise AssertionError("no anonymous id on another partition")


def behaviour(now: datetime) -> list[dict[str, Any]]:
    old = now - timedelta(days=60)
    recent = now - timedelta(hours=3)
    mid = {"company_size": 400}
    anon = other_partition(lead("merged"))
    events = [
        # handed off 60 days ago (81 points, half-life 30d): recycled by decay ~9 days ago;
        # NEW (demo 40): an MQL only, recycled too
        ev("identify", lead("old"), old, traits=mid),
        pricing(lead("old"), old + timedelta(minutes=1)),
        ev("demo_request", lead("old"), old + timedelta(minutes=2)),
        # a visitor's plain page views, merged into its lead (another partition)
        ev(
            "page_view",
            anon,
            recent,
            lead_id=None,
            anonymous_id=anon,
            properties={"url": "https://x.io/blog"},
        ),
        ev(
            "page_view",
            anon,
            recent + timedelta(minutes=1),
            lead_id=None,
            anonymous_id=anon,
            properties={"url": "https://x.io/docs"},
        ),
        ev(
            "identify", lead("merged"), recent + timedelta(minutes=5), anonymous_id=anon, traits=mid
        ),
        pricing(lead("merged"), recent + timedelta(minutes=6)),
        pricing(lead("merged"), recent + timedelta(minutes=7)),
        # 52 points: an MQL; NEW (form 30): 72, handed off (gained)
        ev("form_submit", lead("merged"), recent + timedelta(minutes=8)),
        ev("page_view", lead("browser"), recent, properties={"url": "https://x.io/"}),
    ]
    for name in ("accepted", "rejected", "disqualified"):
        events.append(ev("identify", lead(name), recent, traits=mid))
        events.append(pricing(lead(name), recent + timedelta(minutes=1)))
        if name != "accepted":  # 2 pricing views: NEW hands these off at the demo too
            events.append(pricing(lead(name), recent + timedelta(minutes=2)))
        events.append(ev("demo_request", lead(name), recent + timedelta(minutes=3)))
    return events


def feedback(handoffs: dict[str, str], now: datetime) -> list[dict[str, Any]]:
    at = now - timedelta(minutes=30)
    return [
        ev("sales_accepted", lead("accepted"), at, properties={"handoff_id": handoffs["accepted"]}),
        ev(
            "sales_qualified",
            lead("accepted"),
            at + timedelta(minutes=1),
            properties={"handoff_id": handoffs["accepted"]},
        ),
        ev(
            "sales_rejected",
            lead("rejected"),
            at,
            properties={"handoff_id": handoffs["rejected"], "reason": "bad_fit"},
        ),
        ev(
            "disqualified",
            lead("disqualified"),
            at,
            properties={"handoff_id": handoffs["disqualified"], "reason": "student"},
        ),
    ]


def messages(settings: Settings, topic: str) -> list[dict[str, Any]]:
    return [json.loads(v) for v in poll_topic(settings, topic, done=lambda _: False, timeout=2)]


def decided(settings: Settings) -> tuple[list[str], int]:
    """(handoff ids on the handoffs topic, recycles on the transitions topic)."""
    handoffs = sorted(m["handoff_id"] for m in messages(settings, settings.handoffs_topic))
    recycles = sum(
        1
        for t in messages(settings, settings.transitions_topic)
        if t["to_stage"] == "nurture"
        and t["from_stage"] in ("mql", "sal")
        and "sales" not in t["reason"]
        and "rejected" not in t["reason"]
    )
    return handoffs, recycles


def live_stages(settings: Settings, leads: list[str]) -> dict[str, str]:
    found = {}
    for name in leads:
        state = read_state(settings, name)[1]
        if state is not None and not state.anonymous:
            found[name] = state.stage.value
    return found


def settled(settings: Settings, events: int, what: str) -> None:
    """The worker scored every event, and nothing new came out for a few sweeps."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        wait_for(lambda: _scored(settings) >= events, timeout=120, what=what)
    finally:
        client.close()
    last: tuple[list[str], int] | None = None
    for _ in range(20):
        now = decided(settings)
        if now == last:
            return
        last = now
        time.sleep(1.5)
    raise AssertionError(f"{what}: the worker's output kept changing")


def _scored(settings: Settings) -> int:
    import urllib.request

    from tests.integration.harness import ADMIN_TOKEN

    url = f"http://127.0.0.1:{settings.web_port}/stats"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=3) as reply:
            stats = json.load(reply)
    except OSError:
        return 0
    return int(stats["scored"]) + int(stats["duplicates"]) + int(stats["dead_lettered"])


def footprint(settings: Settings) -> dict[str, Any]:
    """What a replay must not change: Redis keys, topic end offsets, group offsets, groups."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        keyspace = {  # avg_ttl moves with the clock
            db: (info["keys"], info["expires"]) for db, info in client.info("keyspace").items()
        }
        size = client.dbsize()
    finally:
        client.close()
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        topics = [
            settings.events_topic,
            settings.handoffs_topic,
            settings.transitions_topic,
            settings.dlq_topic,
        ]
        tps = [
            TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t))
        ]
        ends = {f"{tp.topic}/{tp.partition}": o for tp, o in consumer.end_offsets(tps).items()}
        group = repr(admin.list_group_offsets({settings.app_id: None}))
        groups = sorted(repr(g) for g in admin.list_groups())
    finally:
        consumer.close()
        admin.close()
    return {"dbsize": size, "keyspace": keyspace, "ends": ends, "group": group, "groups": groups}


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    """The LEADPULSE_* variables of `settings`, as `leadpulse dev`'s export lines give them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
    env.update(
        LEADPULSE_BROKER=settings.broker,
        LEADPULSE_REDIS_URL=settings.redis_url,
        LEADPULSE_EVENTS_TOPIC=settings.events_topic,
        LEADPULSE_HANDOFFS_TOPIC=settings.handoffs_topic,
        LEADPULSE_TRANSITIONS_TOPIC=settings.transitions_topic,
        LEADPULSE_DLQ_TOPIC=settings.dlq_topic,
        LEADPULSE_PARTITIONS=str(settings.partitions),
        LEADPULSE_MODEL_FILE=str(settings.model_file),
    )
    env.update(extra)
    return env


def whatif_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "leadpulse.streams.cli", "model", "whatif", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def history(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, Path, int]:
    """The known history, processed by a live worker under the current model, then stopped."""
    workdir = tmp_path_factory.mktemp("whatif")
    settings = worker_settings(stack, workdir, partitions=PARTITIONS)
    new_file = workdir / "new.yaml"
    new_file.write_text(NEW_YAML)
    now = datetime.now(UTC)
    worker = start_worker(settings, workdir / "worker.log")
    try:
        events = play_history(settings, behaviour(now), now)
        settled(settings, events, "the live worker")
    finally:
        worker.stop()
    return settings, new_file, events


def play_history(settings: Settings, history: list[dict[str, Any]], now: datetime) -> int:
    """Produce `history` (`behaviour`'s, and more), wait for the current model's handoffs,
    answer them as sales (`feedback`); the number of events produced."""
    produce(settings, history)
    wanted = {lead("old"), lead("accepted"), lead("rejected"), lead("disqualified")}
    found: dict[str, str] = {}

    def handed_off() -> bool:
        for m in messages(settings, settings.handoffs_topic):
            found[m["lead_id"]] = m["handoff_id"]
        return wanted <= set(found)

    wait_for(handed_off, timeout=90, what="the current model's handoffs")
    answers = feedback({k.rsplit("-", 1)[1]: v for k, v in found.items()}, now)
    produce(settings, answers)
    return len(history) + len(answers)


LEADS = ["old", "merged", "browser", "accepted", "rejected", "disqualified"]


def test_whatif_current_equals_live_and_new_equals_a_fresh_worker(
    history: tuple[Settings, Path, int], stack: DevStack, tmp_path: Path
) -> None:
    settings, new_file, events = history
    leads = [lead(n) for n in LEADS]
    live_handoffs, live_recycles = decided(settings)
    stages = live_stages(settings, leads)
    # the history is what it was built to be
    assert stages == {
        lead("old"): "nurture",
        lead("merged"): "mql",
        lead("browser"): "iql",
        lead("accepted"): "sql",
        lead("rejected"): "nurture",
        lead("disqualified"): "disqualified",
    }
    assert live_recycles == 1

    before = footprint(settings)
    done = whatif_cli(environment(settings), str(new_file), "--json")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when stderr is not a terminal, no warnings
    after = footprint(settings)
    assert after == before  # no Redis key, record, committed offset or group more

    body = json.loads(done.stdout)
    assert body["events"] == events
    current = body["current"]
    assert current["stages"] == {"disqualified": 1, "iql": 1, "mql": 1, "nurture": 2, "sql": 1}
    assert current["handoffs"] == len(live_handoffs) == 4
    assert current["recycles"] == live_recycles
    assert current["outcomes"] == {"accepted": 1, "rejected": 1, "sql": 1, "disqualified": 1}
    assert body["gained"] == [lead("merged")]
    assert body["lost"] == sorted([lead("old"), lead("accepted")])
    # NEW hands off rejected and disqualified at the same demo request: the same crossings
    assert body["new"]["outcomes"] == {"accepted": 0, "rejected": 1, "sql": 0, "disqualified": 1}
    assert body["backtest"]["rejected"] == {"handoffs": 1, "also": 1, "median_shift_s": 0.0}

    # in process, for the per-lead view: the same replay's runs
    result = run_whatif(settings, load_model(settings.model_file), load_model(new_file))
    replay_current, replay_new = result.runs
    assert replay_current.lead_stages == stages
    assert sorted(h.handoff_id for h in replay_current.handoffs) == live_handoffs
    assert replay_current.recycles == live_recycles

    # a fresh worker under NEW over the same events topic
    fresh = fresh_settings(settings, stack, tmp_path, new_file, "new")
    worker = start_worker(fresh, tmp_path / "worker-new.log")
    try:
        settled(fresh, events, "the fresh worker under NEW")
    finally:
        worker.stop()
    new_handoffs, new_recycles = decided(fresh)
    assert replay_new.lead_stages == live_stages(fresh, leads)
    assert sorted(h.handoff_id for h in replay_new.handoffs) == new_handoffs
    assert replay_new.recycles == new_recycles == 1
    assert body["new"]["handoffs"] == len(new_handoffs) == 3
    # accepted: an MQL only under NEW (61 points), its feedback answers no handoff of NEW
    assert body["new"]["stages"] == {"disqualified": 1, "iql": 1, "mql": 1, "nurture": 2, "sal": 1}


def test_since_before_the_history_says_it_starts_later(
    history: tuple[Settings, Path, int],
) -> None:
    settings, new_file, events = history
    done = whatif_cli(environment(settings), str(new_file), "--since", "3650d", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["events"] == events
    assert body["since"] == body["history_starts"]
    assert body["since_asked"] < body["history_starts"]
    text = whatif_cli(environment(settings), str(new_file), "--since", "3650d")
    assert text.returncode == 0, text.stderr
    assert "but the retained history starts later" in text.stdout
    recent = whatif_cli(environment(settings), str(new_file), "--since", "1s", "--json")
    assert recent.returncode == 1
    assert "no records since the requested start" in recent.stderr


def test_clear_errors(history: tuple[Settings, Path, int], stack: DevStack, tmp_path: Path) -> None:
    settings, new_file, _ = history
    bad = tmp_path / "bad.yaml"
    bad.write_text(NEW_YAML.replace("mql: 50", "mql: fifty"))
    done = whatif_cli(environment(settings), str(bad))
    assert done.returncode == 1
    assert f"{bad}: 1 problem(s); model rejected" in done.stderr
    assert "mql" in done.stderr

    empty = f"empty.{uuid.uuid4().hex[:8]}"
    create_topics(stack.bootstrap, [empty], 2)
    done = whatif_cli(environment(settings, LEADPULSE_EVENTS_TOPIC=empty), str(new_file))
    assert done.returncode == 1
    assert f"topic {empty} is empty" in done.stderr

    nobody = f"kafka://127.0.0.1:{free_port()}"
    done = whatif_cli(environment(settings, LEADPULSE_BROKER=nobody), str(new_file))
    assert done.returncode == 1
    assert f"no Kafka broker answers at {nobody}" in done.stderr


def test_the_current_model_is_the_one_the_namespace_records(
    history: tuple[Settings, Path, int],
) -> None:
    """No LEADPULSE_MODEL_FILE: whatif takes the model the worker recorded in Redis."""
    settings, new_file, events = history
    env = environment(settings)
    del env["LEADPULSE_MODEL_FILE"]  # the shipped default would differ from the worker's
    done = whatif_cli(env, str(new_file), "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["current"]["source"].startswith(
        f"the namespace's recorded model (from {settings.model_file}, recorded "
    )
    assert body["current"]["model_version"] == load_model(settings.model_file).model_version
    assert body["current"]["handoffs"] == 4
    assert body["events"] == events

    # a Redis that does not answer: the settings' model file, and why
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    done = whatif_cli(environment(settings, LEADPULSE_REDIS_URL=nobody), str(new_file), "--json")
    assert done.returncode == 0, done.stderr
    source = json.loads(done.stdout)["current"]["source"]
    assert source.startswith(f"{settings.model_file} (Redis did not say: ")
