"""SIGKILL the deliverer mid-delivery: every handoff the worker decided is delivered at least
once with its own webhook-id, none is lost, what was finished is not sent again, and the
exhausted ones are in the deliveries DLQ.

The whole path runs: events -> worker -> handoffs topic -> deliverer -> receivers.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import redis

from leadpulse.schemas.delivery import DeliveryFailure
from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import DeliverProcess
from leadpulse.streams.store.redis import keys
from tests.integration.delivery_harness import (
    SECRET,
    always,
    deliver_settings,
    receiver,
    sleeps,
    start_deliverer,
    wait_until,
    write_destinations,
)
from tests.integration.harness import MODEL_YAML, TopicReader, poll_topic, produce, start_worker

LEADS = 16


def hot_events(lead: str) -> list[dict[str, Any]]:
    at = datetime.now(UTC).isoformat()

    def ev(kind: str) -> dict[str, Any]:
        return {"event_id": uuid.uuid4().hex, "type": kind, "lead_id": lead, "occurred_at": at}

    return [
        {**ev("identify"), "traits": {"company_size": 400}},
        {**ev("page_view"), "properties": {"url": "https://x.io/pricing"}},
        ev("demo_request"),
    ]


def test_sigkill_mid_delivery_loses_nothing_and_resends_nothing_finished(
    stack: DevStack, tmp_path: Any
) -> None:
    model = tmp_path / "model.yaml"
    model.write_text(MODEL_YAML)
    settings = deliver_settings(stack, tmp_path, model_file=model)
    with receiver({"/slow": sleeps(0.3), "/fail": always(500)}) as server:
        write_destinations(
            settings,
            [
                {
                    "name": "crm",
                    "url": server.url("/slow"),
                    "secret": SECRET,
                    "concurrency": 2,
                    "timeout": "2s",
                },
                {
                    "name": "broken",
                    "url": server.url("/fail"),
                    "secret": SECRET,
                    "timeout": "2s",
                    "retry_schedule": ["0s", "1s", "1s"],
                },
            ],
        )
        worker = start_worker(settings, tmp_path / "worker.log")
        deliverer = start_deliverer(settings, tmp_path / "deliver.log")
        restarted: DeliverProcess | None = None
        reader = TopicReader(settings, settings.handoffs_topic)
        client = redis.Redis.from_url(settings.redis_url)
        try:
            leads = [f"lead-{uuid.uuid4().hex[:10]}" for _ in range(LEADS)]
            produce(settings, [e for lead in leads for e in hot_events(lead)])
            handoffs = reader.until(lambda vs: len({v["lead_id"] for v in vs}) >= LEADS, 90)
            ids = {h["handoff_id"] for h in handoffs}
            assert len(ids) == LEADS

            def answered() -> set[str]:
                return {r.webhook_id for r in server.at("/slow")}

            wait_until(lambda: len(answered()) >= 4, 30, "a few deliveries")
            deliverer.kill()  # SIGKILL, mid-way: 2 requests in flight, most still queued
            assert len(answered()) < LEADS, "all delivered before the kill: nothing tested"
            finished = {i for i in ids if client.get(keys.DEFAULT.delivered("crm", i)) == b"ok"}
            counts_at_kill = {i: server.count("/slow", i) for i in finished}
            assert finished, "nothing finished before the kill"

            restarted = start_deliverer(settings, tmp_path / "deliver-2.log")
            wait_until(lambda: answered() >= ids, 60, "every handoff delivered")
            wait_until(
                lambda: all(client.get(keys.DEFAULT.delivered("crm", i)) == b"ok" for i in ids),
                30,
                "every delivery finished",
            )
            received = [r for r in server.at("/slow") if r.webhook_id in ids]
            assert all(r.verified for r in received)
            assert {r.json()["data"]["handoff_id"] for r in received} == ids
            assert all(r.json()["data"]["handoff_id"] == r.webhook_id for r in received)
            # what was finished before the kill was not sent again after the restart
            assert {i: server.count("/slow", i) for i in finished} == counts_at_kill
            assert not server.at("/slow", "")

            # the broken destination: every handoff exhausted, in the deliveries DLQ
            values = poll_topic(
                settings,
                settings.deliveries_dlq_topic,
                done=lambda vs: (
                    len({DeliveryFailure.model_validate_json(v).webhook_id for v in vs}) >= LEADS
                ),
                timeout=60,
            )
            failures = [DeliveryFailure.model_validate_json(v) for v in values]
            assert {f.webhook_id for f in failures} == ids
            assert {f.destination for f in failures} == {"broken"}
            for f in failures:
                assert f.handoff is not None
                assert f.handoff.handoff_id == f.webhook_id
                assert [a.status for a in f.attempts] == [500, 500, 500]
            time.sleep(1.0)
            assert client.zcard(keys.DEFAULT.delivery_due("crm")) == 0
            assert client.zcard(keys.DEFAULT.delivery_due("broken")) == 0
        finally:
            client.close()
            reader.close()
            deliverer.stop()
            if restarted is not None:
                restarted.stop()
            worker.stop()


def test_sigkill_of_worker_and_deliverer_together_delivers_every_handoff_once(
    stack: DevStack, tmp_path: Any
) -> None:
    """Both processes die at once while handoffs are being decided and delivered; after the
    restart every handoff in the topic (a replayed one included) reaches the receiver, each
    id once unless its request was in flight at the kill."""
    model = tmp_path / "model.yaml"
    model.write_text(MODEL_YAML)
    settings = deliver_settings(stack, tmp_path, model_file=model)
    with receiver({"/hook": sleeps(0.2)}) as server:
        write_destinations(
            settings,
            [
                {
                    "name": "crm",
                    "url": server.url("/hook"),
                    "secret": SECRET,
                    "concurrency": 2,
                    "timeout": "2s",
                }
            ],
        )
        worker = start_worker(settings, tmp_path / "worker.log")
        deliverer = start_deliverer(settings, tmp_path / "deliver.log")
        again: list[Any] = []
        reader = TopicReader(settings, settings.handoffs_topic)
        try:
            first = [f"lead-{uuid.uuid4().hex[:10]}" for _ in range(LEADS)]
            produce(settings, [e for lead in first for e in hot_events(lead)])
            wait_until(lambda: len(server.at("/hook")) >= 3, 60, "deliveries under way")
            worker.kill()
            deliverer.kill()
            received_before_kill = len(server.at("/hook"))
            assert received_before_kill < LEADS, "all delivered before the kill: nothing tested"
            second = [f"lead-{uuid.uuid4().hex[:10]}" for _ in range(LEADS)]
            again.append(start_worker(settings, tmp_path / "worker-2.log"))
            again.append(start_deliverer(settings, tmp_path / "deliver-2.log"))
            produce(settings, [e for lead in second for e in hot_events(lead)])
            leads = set(first) | set(second)
            values = reader.until(lambda vs: {v["lead_id"] for v in vs} >= leads, 120)
            ids = {v["handoff_id"] for v in values}
            assert len(ids) == len(leads)  # one crossing each, however often it was published
            wait_until(
                lambda: {r.webhook_id for r in server.at("/hook")} >= ids,
                90,
                "every handoff delivered",
            )
            received = server.at("/hook")
            assert all(r.verified for r in received)
            assert all(r.json()["data"]["handoff_id"] == r.webhook_id for r in received)
            repeats = len(received) - len({r.webhook_id for r in received})
            assert repeats <= 2, repeats  # at most the two requests in flight at the kill
        finally:
            reader.close()
            for process in (*again, deliverer, worker):
                process.stop()
