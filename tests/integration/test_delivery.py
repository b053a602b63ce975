"""`leadpulse deliver` on the embedded stack, to real HTTP receivers on 127.0.0.1.

One deliverer process (its own topics, group and Redis database) serves the
module; its destinations each point at a receiver path with a behaviour: ok,
fails 3 times then succeeds, times out, 429 with Retry-After, 410, Slack.
Every request is verified with the `standardwebhooks` package. Handoffs are
produced straight to the handoffs topic (the worker's part is covered by
test_delivery_crash.py).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.models.blocks import Block

from leadpulse.schemas.delivery import DeliveryFailure
from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import DeliverProcess, worker_command
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis import keys
from tests.integration.delivery_harness import (
    Receiver,
    always,
    deliver_settings,
    fails_first,
    ok,
    produce_handoffs,
    produce_transitions,
    receiver,
    sample,
    sleeps,
    start_deliverer,
    transition,
    wait_until,
    write_destinations,
)
from tests.integration.harness import poll_topic


@dataclass
class Scene:
    settings: Settings
    receiver: Receiver
    deliverer: DeliverProcess


@pytest.fixture(scope="module")
def scene(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    workdir = tmp_path_factory.mktemp("deliver")
    settings = deliver_settings(stack, workdir)
    behaviours = {
        "/ok": ok,
        "/flaky": fails_first(3),
        "/slow": sleeps(3.0),
        "/limited": fails_first(1, 429, {"Retry-After": "2"}),
        "/gone": always(410),
        "/slack": ok,
    }
    with receiver(behaviours) as server:
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

        def dest(name: str, path: str, **more: Any) -> dict[str, Any]:
            return {"name": name, "url": server.url(path), "secret": secret, **more}

        write_destinations(
            settings,
            [
                dest("ok", "/ok", retry_schedule=["0s", "1s"]),
                dest("flaky", "/flaky", retry_schedule=["0s", "1s", "1s", "1s", "1s"]),
                dest("slow", "/slow", timeout="1s", retry_schedule=["0s", "1s"]),
                dest("limited", "/limited", retry_schedule=["0s", "1h"]),
                dest("gone", "/gone", messages=["transitions"], retry_schedule=["0s", "1s"]),
                {
                    "name": "slack",
                    "url": server.url("/slack"),
                    "format": "slack",
                    "min_grade": "B",
                },
            ],
        )
        process = start_deliverer(settings, workdir / "deliver.log")
        try:
            yield Scene(settings, server, process)
        finally:
            process.stop()


def metrics(scene: Scene) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"{scene.deliverer.url}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric(scene: Scene, name: str, **labels: str) -> float:
    return metrics(scene).get((name, tuple(sorted(labels.items()))), 0.0)


def failures(scene: Scene, wanted: int, timeout: float = 30) -> list[DeliveryFailure]:
    values = poll_topic(
        scene.settings,
        scene.settings.deliveries_dlq_topic,
        done=lambda vs: len(vs) >= wanted,
        timeout=timeout,
    )
    return [DeliveryFailure.model_validate_json(v) for v in values]


def test_every_delivery_is_signed_and_one_slow_destination_delays_no_other(
    scene: Scene,
) -> None:
    handoffs = [sample() for _ in range(3)]
    produced = time.time()
    produce_handoffs(scene.settings, handoffs)
    ids = {h.handoff_id for h in handoffs}
    wait_until(lambda: {r.webhook_id for r in scene.receiver.at("/ok")} >= ids, 30, "ok got all")
    got = [r for r in scene.receiver.at("/ok") if r.webhook_id in ids]
    assert len(got) == 3
    assert all(r.verified for r in got), [r.headers for r in got if not r.verified]
    for r in got:
        body = r.json()
        assert body["type"] == "lead.handoff"
        assert body["data"]["handoff_id"] == r.webhook_id
        assert abs(int(r.timestamp) - r.at) < 5  # the send time, not the handoff's
    # the slow destination's requests were still hanging (1 s timeout) when ok had all three
    wait_until(lambda: all(scene.receiver.at("/slow", i) for i in ids), 30, "slow got all")
    first_slow = min(r.at for r in scene.receiver.at("/slow") if r.webhook_id in ids)
    assert max(r.at for r in got) < first_slow + 1.0
    assert max(r.at for r in got) - produced < 10


def test_a_receiver_failing_three_times_gets_the_message_on_the_fourth_attempt(
    scene: Scene,
) -> None:
    handoff = sample()
    produce_handoffs(scene.settings, [handoff])
    wait_until(lambda: scene.receiver.count("/flaky", handoff.handoff_id) >= 4, 30, "4 attempts")
    attempts = scene.receiver.at("/flaky", handoff.handoff_id)
    assert all(r.verified for r in attempts)
    assert {r.webhook_id for r in attempts} == {handoff.handoff_id}
    stamps = [int(r.timestamp) for r in attempts]
    assert stamps == sorted(stamps)
    assert stamps[-1] > stamps[0]  # each attempt is signed at its own send time
    gaps = [b.at - a.at for a, b in itertools.pairwise(attempts)]
    assert all(0.8 < gap < 5 for gap in gaps), gaps  # 1 s +-10 % jitter, plus claim latency
    time.sleep(2.5)  # no fifth attempt after the success
    assert scene.receiver.count("/flaky", handoff.handoff_id) == 4
    assert metric(scene, "leadpulse_deliveries_total", destination="flaky", status="delivered")


def test_a_receiver_that_times_out_ends_in_the_deliveries_dlq_with_every_attempt(
    scene: Scene,
) -> None:
    handoff = sample()
    produce_handoffs(scene.settings, [handoff])
    wait_until(
        lambda: any(
            f.webhook_id == handoff.handoff_id and f.destination == "slow"
            for f in failures(scene, 1, timeout=1)
        ),
        40,
        "dead letter of the slow destination",
    )
    (failure,) = [
        f
        for f in failures(scene, 1)
        if f.webhook_id == handoff.handoff_id and f.destination == "slow"
    ]
    assert failure.kind == "handoffs"
    assert failure.lead_id == handoff.lead_id
    assert failure.handoff == handoff
    assert [a.status for a in failure.attempts] == [None, None]
    assert all(a.error.startswith("timeout") for a in failure.attempts)
    assert all(0.9 < a.seconds < 2 for a in failure.attempts)
    assert scene.receiver.count("/slow", handoff.handoff_id) == 2
    assert metric(scene, "leadpulse_delivery_dead_letters_total", destination="slow") >= 1
    assert metric(scene, "leadpulse_delivery_attempts_total", destination="slow", outcome="timeout")


def test_429_with_retry_after_is_retried_after_that_many_seconds(scene: Scene) -> None:
    """The schedule says 1 h for the second attempt; Retry-After: 2 wins."""
    handoff = sample()
    produce_handoffs(scene.settings, [handoff])
    wait_until(lambda: scene.receiver.count("/limited", handoff.handoff_id) >= 2, 30, "retry")
    first, second = scene.receiver.at("/limited", handoff.handoff_id)[:2]
    assert 1.9 < second.at - first.at < 6
    assert first.webhook_id == second.webhook_id == handoff.handoff_id
    assert metric(scene, "leadpulse_delivery_attempts_total", destination="limited", outcome="429")


def test_410_disables_the_destination_until_enabled_again(scene: Scene) -> None:
    """`gone` is the only destination of transitions, so only this test's messages reach it."""
    first, later = transition(), transition()
    produce_transitions(scene.settings, [first])
    wait_until(lambda: scene.receiver.count("/gone", first.transition_id) == 1, 30, "one 410")
    client = redis.Redis.from_url(scene.settings.redis_url)
    try:
        wait_until(
            lambda: bool(client.exists(keys.DEFAULT.destination_disabled("gone"))), 10, "flag"
        )
        produce_transitions(scene.settings, [later])
        wait_until(
            lambda: metric(scene, "leadpulse_delivery_pending_messages", destination="gone") == 2,
            15,
            "both parked",
        )
        time.sleep(1.0)
        assert scene.receiver.count("/gone", first.transition_id) == 1  # not retried
        assert scene.receiver.count("/gone", later.transition_id) == 0  # not sent at all
        assert metric(scene, "leadpulse_destination_disabled", destination="gone") == 1
        # parked, not lost: both wait in the destination's queue
        parked = {i.decode() for i in client.zrange(keys.DEFAULT.delivery_due("gone"), 0, -1)}
        assert parked == {first.transition_id, later.transition_id}
        argv, env = worker_command(scene.settings, "--enable", "gone", command="deliver")
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "gone: enabled again" in done.stdout
    finally:
        client.close()
    # the receiver still answers 410: the parked messages are tried once more, then it is
    # disabled again
    wait_until(
        lambda: (
            scene.receiver.count("/gone", first.transition_id)
            + scene.receiver.count("/gone", later.transition_id)
            >= 2
        ),
        30,
        "a parked message sent after --enable",
    )


def test_slack_gets_text_and_blocks_and_only_grades_at_least_b(scene: Scene) -> None:
    good, poor = sample(grade="A"), sample(grade="C")
    produce_handoffs(scene.settings, [good, poor])
    wait_until(lambda: scene.receiver.count("/ok", poor.handoff_id) == 1, 30, "ok got C")
    wait_until(lambda: scene.receiver.count("/slack", good.handoff_id) == 1, 30, "slack got A")
    (message,) = scene.receiver.at("/slack", good.handoff_id)
    body = message.json()
    assert isinstance(body["text"], str)
    assert "Test Lead" in body["text"]
    for block in body["blocks"]:
        parsed = Block.parse(block)
        assert parsed is not None
        parsed.validate_json()
    assert "webhook-signature" not in message.headers  # no secret configured for Slack
    time.sleep(1.0)
    assert scene.receiver.count("/slack", poor.handoff_id) == 0


def test_a_replayed_handoff_is_not_delivered_again(scene: Scene) -> None:
    handoff = sample()
    produce_handoffs(scene.settings, [handoff])
    wait_until(lambda: scene.receiver.count("/ok", handoff.handoff_id) == 1, 30, "delivered")
    before = metric(scene, "leadpulse_delivery_messages_consumed_total", kind="handoffs")
    produce_handoffs(scene.settings, [handoff])  # the same id again, as after a replay
    wait_until(
        lambda: (
            metric(scene, "leadpulse_delivery_messages_consumed_total", kind="handoffs") > before
        ),
        30,
        "the replay was read",
    )
    time.sleep(1.0)
    assert scene.receiver.count("/ok", handoff.handoff_id) == 1


def test_health_ready_and_metrics(scene: Scene) -> None:
    ready = scene.deliverer.ready()
    assert ready["ready"] is True, ready
    assert ready["assigned_partitions"] == 2 * scene.settings.partitions  # two topics
    with urllib.request.urlopen(f"{scene.deliverer.url}/health", timeout=5) as reply:
        assert json.load(reply)["healthy"] is True
    names = {name for name, _ in metrics(scene)}
    assert "leadpulse_delivery_attempt_seconds_bucket" in names
    assert all(n.startswith("leadpulse_") for n in names)


def test_deliver_test_sends_a_signed_sample_and_prints_the_answer(scene: Scene) -> None:
    argv, env = worker_command(scene.settings, "--test", "ok", command="deliver")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "HTTP 200" in done.stdout
    sent = [r for r in scene.receiver.at("/ok") if r.webhook_id.startswith("test-")]
    assert sent
    assert sent[-1].verified
    assert sent[-1].json()["data"]["lead_id"] == "sample-lead"
    assert '"accepted"' in done.stdout  # the receiver's answer is printed


def test_deliver_test_with_an_unknown_name_says_which_exist(scene: Scene) -> None:
    argv, env = worker_command(scene.settings, "--test", "nope", command="deliver")
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode != 0
    assert "no destination named 'nope'" in done.stderr
    assert "ok, flaky" in done.stderr
