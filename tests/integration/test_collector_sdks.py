"""The collector end to end with the real tracker SDKs, unmodified, on the embedded stack.

segment-analytics-python and rudder-sdk-python post to a `leadpulse collect`
process; a real worker scores what lands on the events topic. Checks: the
lead's engagement in Redis is what `scoring` makes of the events on the topic,
and the handoff is published; an SDK retry (the same batch twice, with or
without messageIds) counts once; while Kafka is down the collector answers
503 + Retry-After and the SDK's own retries land every event once it is back;
bad input gets the answer the SDKs act on and never takes the process down;
sales-only events need a sales source's key.
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
import rudderstack.analytics as rudder
from rudderstack.analytics import request as rudder_request
from segment import analytics as segment
from segment.analytics import request as segment_request

from leadpulse.schemas import DeadLetter, original_payload
from leadpulse.schemas.segment import message_digest
from leadpulse.scoring import new_lead
from leadpulse.streams.dev.devstack import DevStack, TansuBroker, create_topics, free_port
from leadpulse.streams.dev.workerproc import CollectorProcess
from leadpulse.streams.settings import Settings
from tests.integration.collector_harness import (
    Recorder,
    Rig,
    drain,
    engagement_at,
    events_with_ids,
    post_body,
    recording,
    running_rig,
    scored,
    stop,
    topic_json,
)
from tests.integration.harness import read_state, wait_for


@pytest.fixture(scope="module")
def rig(stack: DevStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One worker and one collector (keys: website, crm = the sales source), both stopped."""
    with running_rig(stack, tmp_path_factory.mktemp("collector-sdks")) as started:
        yield started


def new_lead_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def applied(rig: Rig, lead: str) -> int:
    state = read_state(rig.settings, lead)[1]
    return (state or new_lead(lead)).events_applied


def handoffs_of(rig: Rig, lead: str) -> list[dict[str, Any]]:
    values = topic_json(
        rig.settings,
        rig.settings.handoffs_topic,
        lambda vs: any(v["lead_id"] == lead for v in vs),
        timeout=30,
    )
    return [v for v in values if v["lead_id"] == lead]


def assert_scored_like_scoring(rig: Rig, lead: str, events: list[dict[str, Any]]) -> None:
    """Redis holds what scoring makes of `events`; the handoff scoring decides was published."""
    unique = len({e["event_id"] for e in events})
    wait_for(lambda: applied(rig, lead) == unique, timeout=30, what=f"{unique} events of {lead}")
    state = read_state(rig.settings, lead)[1]
    assert state is not None
    expected, moves = scored(events, lead)
    assert state.events_applied == expected.events_applied == unique
    assert state.clock == expected.clock
    at = state.clock
    assert engagement_at(state, at) == pytest.approx(engagement_at(expected, at), rel=1e-9)
    assert state.stage == expected.stage == "sal"
    (to_sal,) = [m for m in moves if m.to_stage == "sal"]
    (handoff,) = handoffs_of(rig, lead)
    assert handoff["engagement"] == pytest.approx(to_sal.engagement, rel=1e-9)
    assert handoff["grade"] == "A"


def sent_in_batches(seen: Recorder) -> list[str]:
    """The messageIds an SDK posted, in order; every post was a 200 to /v1/batch."""
    assert [(e.method, e.path, e.status) for e in seen.exchanges] == [
        ("POST", "/v1/batch", 200)
    ] * len(seen.exchanges)
    return [m["messageId"] for e in seen.exchanges for m in e.body["batch"]]


# -- 1. segment-analytics-python ---------------------------------------------------------


def test_segment_sdk_calls_are_scored_and_hand_off(rig: Rig) -> None:
    lead = new_lead_id("seg")
    key = rig.keys["website"]
    errors: list[object] = []
    client = segment.Client(key, host=rig.url, on_error=lambda e, batch: errors.append(e))
    with recording(segment_request._session) as seen:
        sent = [
            client.identify(lead, {"email": f"{lead}@example.com", "company_size": 400})[1],
            client.page(lead, name="Pricing", properties={"url": "https://x.io/pricing"})[1],
            client.track(lead, "Demo Request", {"plan": "growth"})[1],  # normalised
            client.track(lead, "Webinar Signed Up")[1],  # the model's events: table
            client.track(lead, "Form Submit")[1],
        ]
        drain(client, timeout=30)
    assert errors == []
    ids = [m["messageId"] for m in sent]
    # one batch for all five calls, auth twice over, sentAt for the skew correction
    # batches of what queued within 0.5 s (one, unless the machine is slow)
    assert sent_in_batches(seen) == ids
    for exchange in seen.exchanges:
        assert exchange.basic_user == key  # the key twice over: Basic auth and writeKey
        assert exchange.body["writeKey"] == key
        assert "sentAt" in exchange.body
        assert "X-Retry-Count" not in exchange.headers
        assert "Content-Encoding" not in exchange.headers  # gzip off by default

    events = events_with_ids(rig.settings, ids, timeout=30)
    by_id = {e["event_id"]: e for e in events}
    assert len(events) == len(ids)
    assert [by_id[i]["type"] for i in ids] == [
        "identify",
        "page_view",
        "demo_request",
        "form_submit",
        "form_submit",
    ]
    assert all(by_id[i]["lead_id"] == lead for i in ids)
    assert by_id[ids[0]]["traits"] == {"email": f"{lead}@example.com", "company_size": 400}
    assert by_id[ids[1]]["properties"]["url"] == "https://x.io/pricing"
    assert by_id[ids[2]]["properties"]["plan"] == "growth"
    assert_scored_like_scoring(rig, lead, [by_id[i] for i in ids])


# -- 2. rudder-sdk-python (gzip on) -------------------------------------------------------


def test_rudder_sdk_gzipped_calls_are_scored_and_hand_off(rig: Rig) -> None:
    lead = new_lead_id("rud")
    key = rig.keys["website"]
    errors: list[object] = []
    client = rudder.Client(key, host=rig.url, on_error=lambda e, batch: errors.append(e))
    with recording(rudder_request._session) as seen:
        sent = [
            client.identify(lead, {"email": f"{lead}@example.com", "company_size": 120})[1],
            client.page(lead, name="Pricing", properties={"url": "https://x.io/pricing"})[1],
            client.track(lead, "Demo Request")[1],
        ]
        drain(client, timeout=30)
    assert errors == []
    ids = [m["messageId"] for m in sent]
    assert sent_in_batches(seen) == ids
    for exchange in seen.exchanges:
        assert exchange.headers["Content-Encoding"] == "gzip"
        assert exchange.basic_user == key
        assert "writeKey" not in exchange.body  # Basic auth only
    # rudder puts identify traits in context.traits only, and adds "channel"
    identify = seen.exchanges[0].body["batch"][0]
    assert "traits" not in identify
    assert identify["context"]["traits"]["company_size"] == 120

    events = events_with_ids(rig.settings, ids, timeout=30)
    by_id = {e["event_id"]: e for e in events}
    assert len(events) == len(ids)
    assert [by_id[i]["type"] for i in ids] == ["identify", "page_view", "demo_request"]
    assert all(by_id[i]["lead_id"] == lead for i in ids)
    assert by_id[ids[0]]["traits"] == {"email": f"{lead}@example.com", "company_size": 120}
    assert_scored_like_scoring(rig, lead, [by_id[i] for i in ids])


# -- 3. a retried batch counts once ----------------------------------------------------------


def test_segment_retry_of_the_same_batch_counts_once(rig: Rig) -> None:
    """The SDK's own `post`, as its consumer calls it for an attempt and its retry."""
    lead = new_lead_id("retry")
    key = rig.keys["website"]
    builder = segment.Client(key, host=rig.url, send=False)  # builds messages, sends nothing
    batch = [
        builder.identify(lead, {"company_size": 400})[1],
        builder.page(lead, properties={"url": "https://x.io/pricing"})[1],
        builder.track(lead, "Demo Request")[1],
    ]
    ids = [m["messageId"] for m in batch]
    duplicates = rig.worker.stats()["duplicates"]
    with recording(segment_request._session) as seen:
        segment_request.post(key, rig.url, batch=batch, retry_count=0)
        segment_request.post(key, rig.url, batch=batch, retry_count=1)
    assert seen.statuses == [200, 200]
    assert seen.exchanges[1].headers["X-Retry-Count"] == "1"
    assert seen.exchanges[0].body["sentAt"] != seen.exchanges[1].body["sentAt"]

    events = events_with_ids(rig.settings, ids, copies=2, timeout=30)
    assert len(events) == 6
    wait_for(
        lambda: rig.worker.stats()["duplicates"] >= duplicates + 3,
        timeout=30,
        what="the retry seen as duplicates",
    )
    state = read_state(rig.settings, lead)[1]
    assert state is not None
    assert state.events_applied == 3
    assert_scored_like_scoring(rig, lead, events)


def test_batch_without_message_ids_retried_counts_once(rig: Rig) -> None:
    """A hand-made tracker without messageIds: the digest gives the retry the same ids."""
    lead = new_lead_id("digest")
    key = rig.keys["website"]
    start = datetime.now(UTC)
    items: list[dict[str, Any]] = [
        {
            "type": "identify",
            "userId": lead,
            "traits": {"company_size": 400},
            "timestamp": start.isoformat(),
        },
        {
            "type": "page",
            "userId": lead,
            "properties": {"url": "https://x.io/pricing"},
            "timestamp": (start + timedelta(milliseconds=10)).isoformat(),
        },
        {
            "type": "track",
            "userId": lead,
            "event": "Demo Request",
            "timestamp": (start + timedelta(milliseconds=20)).isoformat(),
        },
    ]
    ids = [message_digest(item) for item in items]
    assert len(set(ids)) == 3
    for _attempt in range(2):
        sent_at = datetime.now(UTC).isoformat()  # another sentAt per attempt, as SDKs do
        body = json.dumps({"batch": items, "sentAt": sent_at}).encode()
        reply = post_body(rig.url, body, key=key)
        assert reply.status_code == 200, reply.text
        assert reply.json() == {"success": True, "accepted": 3}

    events = events_with_ids(rig.settings, ids, copies=2, timeout=30)
    assert len(events) == 6
    assert {e["event_id"] for e in events} == set(ids)
    assert_scored_like_scoring(rig, lead, events)


# -- 4. Kafka down: 503, and the SDK's retries land everything --------------------------------


@pytest.fixture
def private_broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A Tansu of this test's own, on a fixed port so it can come back where it was."""
    broker = TansuBroker(free_port(), workdir=tmp_path / "tansu")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def on_private_broker(rig: Rig, broker: TansuBroker, **changes: Any) -> tuple[Settings, list[str]]:
    """The rig's settings for a collector of its own on `broker`, whose topics are made."""
    settings = rig.settings.replace(
        broker=f"kafka://{broker.bootstrap}",
        collector_port=free_port(),
        collector_metrics_port=free_port(),
        **changes,
    )
    topics = [settings.events_topic, settings.dlq_topic]
    create_topics(broker.bootstrap, topics, settings.partitions)
    return settings, topics


def test_broker_outage_answers_503_and_sdk_retries_land_everything(
    rig: Rig, private_broker: TansuBroker, tmp_path: Path
) -> None:
    settings, topics = on_private_broker(rig, private_broker, collector_produce_timeout=2.0)
    key = rig.keys["website"]
    lead = new_lead_id("outage")
    errors: list[object] = []
    with CollectorProcess(settings, tmp_path / "collector.log") as collector:
        assert collector.health()["broker"] == "connected"
        private_broker.stop()
        body = json.dumps(
            {"batch": [{"type": "track", "userId": lead, "event": "Form Submit"}]}
        ).encode()
        reply = post_body(collector.url, body, key=key)
        assert reply.status_code == 503, reply.text
        assert reply.headers["Retry-After"].isdigit()
        assert collector.health()["broker"] == "unreachable"

        client = segment.Client(
            key, host=collector.url, max_retries=50, on_error=lambda e, b: errors.append(e)
        )
        try:
            with recording(segment_request._session) as seen:
                sent = [client.track(lead, "Form Submit", {"n": n})[1] for n in range(10)]
                wait_for(lambda: 503 in seen.statuses, timeout=20, what="a 503 to the SDK")
                sent += [client.track(lead, "Demo Request", {"n": n})[1] for n in range(5)]
                time.sleep(1.0)
                assert collector.alive()
                private_broker.start()  # memory storage: the topics are gone, make them again
                create_topics(private_broker.bootstrap, topics, settings.partitions)
                drain(client, timeout=60)
        finally:
            stop(client)
        assert errors == []
        assert seen.statuses[0] == 503
        assert seen.statuses[-1] == 200
        assert set(seen.statuses) == {200, 503}
        # a 503 with Retry-After is a rate-limit pause to segment: it waits it out
        first_ok = seen.statuses.index(200)
        waited = seen.exchanges[first_ok].at - seen.exchanges[first_ok - 1].at
        assert waited >= int(reply.headers["Retry-After"]) - 0.5
        assert collector.alive()
        ids = {m["messageId"] for m in sent}
        landed = events_with_ids(settings, ids, timeout=30)
        assert {e["event_id"] for e in landed} == ids
        assert collector.health()["broker"] == "connected"
    retries = [e.headers.get("X-Retry-Count") for e in seen.exchanges]
    print(
        f"outage: SDK statuses {seen.statuses}, X-Retry-Count {retries}, waited {waited:.1f}s; "
        f"{len(landed)} records for {len(ids)} messages"
    )


UNAVAILABLE_AFTER = 1.0
PRODUCE_TIMEOUT = 30.0
SOON = 3.0
"""The bound on a 503 once the broker is gone: UNAVAILABLE_AFTER plus a margin, far below
the produce timeout."""


def test_a_broker_gone_after_serving_gets_each_request_its_503_within_unavailable_after(
    rig: Rig, private_broker: TansuBroker, tmp_path: Path
) -> None:
    settings, topics = on_private_broker(
        rig,
        private_broker,
        collector_produce_timeout=PRODUCE_TIMEOUT,
        collector_unavailable_after=UNAVAILABLE_AFTER,
    )
    key = rig.keys["website"]
    lead = new_lead_id("gone")

    def post(n: int) -> tuple[requests.Response, float]:
        body = json.dumps(
            {"batch": [{"type": "track", "userId": lead, "event": "Form Submit", "n": n}]}
        ).encode()
        started = time.monotonic()
        reply = post_body(collector.url, body, key=key, timeout=PRODUCE_TIMEOUT + 10)
        return reply, time.monotonic() - started

    with CollectorProcess(settings, tmp_path / "collector.log") as collector:
        reply, _ = post(0)
        assert reply.status_code == 200, reply.text  # connected, and acknowledged
        private_broker.stop()
        took = []
        for n in range(1, 5):  # the first finds it gone, the next ones know it is
            reply, seconds = post(n)
            assert reply.status_code == 503, reply.text
            assert reply.headers["Retry-After"].isdigit()
            took.append(seconds)
        assert max(took) < SOON, took
        assert collector.health()["broker"] == "unreachable"
        assert collector.alive()
        private_broker.start()  # memory storage: the topics are gone, make them again
        create_topics(private_broker.bootstrap, topics, settings.partitions)
        wait_for(lambda: post(9)[0].status_code == 200, timeout=60, what="a 200 once it is back")
        assert collector.health()["broker"] == "connected"
    print(f"broker gone: 503 after {', '.join(f'{t:.2f}' for t in took)} s")


def test_past_its_rate_the_sdk_is_answered_429_waits_retry_after_and_everything_lands(
    rig: Rig, tmp_path: Path
) -> None:
    settings = rig.settings.replace(
        collector_port=free_port(),
        collector_metrics_port=free_port(),
        collector_rate=1.0,  # one request a second, none saved up
        collector_rate_burst=1,
    )
    key = rig.keys["website"]
    lead = new_lead_id("rate")
    errors: list[object] = []
    with CollectorProcess(settings, tmp_path / "collector.log") as collector:
        client = segment.Client(
            key, host=collector.url, upload_size=2, on_error=lambda e, b: errors.append(e)
        )
        try:
            with recording(segment_request._session) as seen:
                sent = [client.track(lead, "Form Submit", {"n": n})[1] for n in range(8)]
                drain(client, timeout=60)
        finally:
            stop(client)
        assert errors == []
        assert 429 in seen.statuses
        assert set(seen.statuses) == {200, 429}
        assert seen.statuses[-1] == 200
        for before, after in zip(seen.exchanges, seen.exchanges[1:], strict=False):
            if before.status == 429:
                assert before.answer["code"] == "too_many_requests"
                assert after.at - before.at >= 1.0  # it waited out Retry-After: 1
        stats = collector.stats()
        assert stats["status_429"] == seen.statuses.count(429)
        assert stats["status_200"] == seen.statuses.count(200)
        ids = {m["messageId"] for m in sent}
        landed = events_with_ids(settings, ids, timeout=30)
        assert sorted(e["event_id"] for e in landed) == sorted(
            ids
        )  # each once: a 429 stores nothing
    print(f"rate: SDK statuses {seen.statuses}")


# -- 5. bad input on the real process ------------------------------------------------------------


def status_and_code(reply: requests.Response) -> tuple[int, str]:
    """The status and the ``code`` the SDKs read (every error body has ``message`` too)."""
    body = reply.json()
    assert body["success"] is False
    assert body["message"]
    return reply.status_code, body["code"]


def test_bad_requests_get_the_answers_sdks_act_on(rig: Rig) -> None:
    key = rig.keys["website"]
    url = rig.url
    good = json.dumps({"batch": [{"type": "track", "userId": "x", "event": "Form Submit"}]})
    unauthorized = (401, "unauthorized")

    reply = post_body(url, good.encode(), key="wk_not-a-key-of-this-collector")
    assert status_and_code(reply) == unauthorized
    unknown_in_body = json.dumps({**json.loads(good), "writeKey": "wk_unknown-key-0123456789"})
    assert status_and_code(post_body(url, unknown_in_body.encode())) == unauthorized
    assert status_and_code(post_body(url, good.encode())) == unauthorized  # no key at all

    reply = post_body(url, b'{"batch": [{"type": "track",', key=key)
    assert status_and_code(reply) == (400, "bad_request")
    assert "JSON" in reply.json()["error"]

    limit = rig.settings.collector_max_batch_bytes
    oversized = json.dumps({"batch": [], "pad": "x" * (limit + 1024)}).encode()
    assert status_and_code(post_body(url, oversized, key=key)) == (413, "payload_too_large")

    bomb = gzip.compress(b'{"batch": [], "pad": "' + b"0" * (40 * 1024 * 1024) + b'"}')
    assert len(bomb) < limit // 4
    reply = post_body(url, bomb, key=key, gzipped=True)
    assert status_and_code(reply) == (413, "payload_too_large")
    assert "decompressed" in reply.json()["message"]

    reply = post_body(url, b"\x1f\x8b not gzip at all", key=key, gzipped=True)
    assert status_and_code(reply) == (400, "bad_request")
    assert rig.collector.alive()
    assert rig.collector.health()["status"] == "ok"
    assert post_body(url, good.encode(), key=key).json() == {"success": True, "accepted": 1}


def bad_message(i: int, marker: str) -> dict[str, Any]:
    """Ten kinds of tracker bugs; each carries `marker` so its dead letter can be found."""
    base: dict[str, Any] = {
        "type": "track",
        "userId": f"{marker}-bad",
        "event": "Form Submit",
        "messageId": f"{marker}-bad-{i}",
    }
    broken: list[dict[str, Any]] = [
        {**base, "userId": None, "anonymousId": ""},  # no identity
        {**base, "timestamp": "2026-12-01T10:00:00"},  # no timezone
        {**base, "type": "purchase"},  # unknown call type
        {**base, "event": None},  # a track without its event
        {**base, "event": "日本"},  # nothing of the name survives normalising
        {**base, "event": "Identify"},  # the identify call's type
        {**base, "properties": ["not", "an", "object"]},
        {**base, "userId": {"id": 1}},
        {**base, "properties": {"blob": "y" * (40 * 1024)}},  # over the 32 KB message limit
        {**base, "timestamp": "yesterday"},
    ]
    return broken[i % 10]


def test_batch_with_ten_bad_of_a_hundred_dead_letters_exactly_those(rig: Rig) -> None:
    key = rig.keys["website"]
    marker = uuid.uuid4().hex[:12]
    bad_at = set(range(5, 100, 10))
    batch = []
    good_ids = []
    for i in range(100):
        if i in bad_at:
            batch.append(bad_message(i // 10, marker))
        else:
            message_id = f"{marker}-good-{i}"
            good_ids.append(message_id)
            batch.append(
                {
                    "type": "track",
                    "userId": f"{marker}-lead-{i % 7}",
                    "event": "Form Submit",
                    "messageId": message_id,
                }
            )
    reply = post_body(rig.url, json.dumps({"batch": batch}).encode(), key=key)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["success"] is True
    assert answer["accepted"] == 90
    rejected = answer["rejected"]
    assert [r["index"] for r in rejected] == sorted(bad_at)
    assert [r["messageId"] for r in rejected] == [batch[i].get("messageId") for i in sorted(bad_at)]
    assert all(r["errors"] for r in rejected)

    def mine(values: list[dict[str, Any]]) -> list[DeadLetter]:
        letters = [DeadLetter.model_validate(v) for v in values]
        return [d for d in letters if marker.encode() in original_payload(d)]

    letters = mine(
        topic_json(rig.settings, rig.settings.dlq_topic, lambda vs: len(mine(vs)) >= 10, timeout=30)
    )
    assert len(letters) == 10
    assert all(d.reason and d.source_topic == "collector:website" for d in letters)
    errors_by_id = {r["messageId"]: r["errors"] for r in rejected}
    assert {json.loads(original_payload(d))["messageId"]: d.errors for d in letters} == errors_by_id
    landed = events_with_ids(rig.settings, good_ids, timeout=30)
    assert len(landed) == 90
    assert {e["event_id"] for e in landed} == set(good_ids)
    assert not any(marker + "-bad" in json.dumps(e) for e in landed)
    assert rig.collector.alive()
    assert rig.collector.health()["status"] == "ok"


SDKS = {"segment": (segment, segment_request._session), "rudder": (rudder, rudder_request._session)}


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_sdk_with_a_wrong_key_gives_up_at_once(rig: Rig, sdk: str) -> None:
    """401 is final: the SDK reports it once instead of retrying (it reads code and message)."""
    module, session = SDKS[sdk]
    errors: list[Exception] = []
    client = module.Client(
        "wk_not-a-key-of-this-collector", host=rig.url, on_error=lambda e, b: errors.append(e)
    )
    try:
        with recording(session) as seen:
            client.track("someone", "Form Submit")
            wait_for(lambda: bool(errors), timeout=10, what=f"{sdk}'s on_error")
            time.sleep(0.5)  # room for a retry that should not come
    finally:
        stop(client)
    assert seen.statuses == [401]
    assert seen.exchanges[0].answer["code"] == "unauthorized"
    (error,) = errors
    assert getattr(error, "status", None) == 401, repr(error)


# -- 6. sales-only events need a sales source's key ----------------------------------------------


def test_sales_only_event_needs_the_sales_source_key(rig: Rig) -> None:
    """A handed-off lead: the website's "Sales Qualified" is refused, the CRM's moves it to SQL."""
    lead = new_lead_id("sales")
    website = segment.Client(rig.keys["website"], host=rig.url, sync_mode=True)
    crm = segment.Client(rig.keys["crm"], host=rig.url, sync_mode=True)
    with recording(segment_request._session) as seen:
        hot = [
            website.identify(lead, {"company_size": 400})[1],
            website.page(lead, properties={"url": "https://x.io/pricing"})[1],
            website.track(lead, "Demo Request")[1],
        ]
        wait_for(lambda: applied(rig, lead) == 3, timeout=30, what="the hot lead scored")
        forged = website.track(lead, "Sales Qualified")[1]
        assert seen.exchanges[-1].status == 200  # a batch answers 200, naming its rejects
        (reject,) = seen.exchanges[-1].answer["rejected"]
        assert reject["messageId"] == forged["messageId"]
        assert "sales_qualified" in reject["errors"][0]
        assert "sales tool" in reject["errors"][0]
        verdict = crm.track(lead, "Sales Qualified")[1]
        assert seen.exchanges[-1].answer == {"success": True, "accepted": 1}
    assert seen.statuses == [200] * 5  # sync mode: one request per call
    ids = [m["messageId"] for m in [*hot, verdict]]
    values = topic_json(
        rig.settings,
        rig.settings.events_topic,
        lambda vs: sum(v.get("lead_id") == lead for v in vs) >= 4,
        timeout=30,
    )
    events = [v for v in values if v.get("lead_id") == lead]
    assert [e["event_id"] for e in events] == ids  # the forged verdict never reached Kafka
    assert [e["type"] for e in events] == [
        "identify",
        "page_view",
        "demo_request",
        "sales_qualified",
    ]
    wait_for(lambda: applied(rig, lead) == 4, timeout=30, what="the verdict applied")
    state = read_state(rig.settings, lead)[1]
    assert state is not None
    assert state.stage == "sql"
    expected, _ = scored(events, lead)
    assert expected.stage == "sql"
