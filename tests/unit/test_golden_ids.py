"""Golden ids: fixed inputs give these exact id strings, in this release and every later one.

KEEP THESE LITERALS ACROSS RELEASES. Consumers de-duplicate on them: a webhook
receiver on ``webhook-id`` (the handoff or transition id), a CRM on
``handoff_id``, the worker's seen window on its event-id digests, identity on
its merge markers. An upgrade that changed one of them would deliver, count or
merge the same thing twice. A failure here is a compatibility break, not a
stale test: never update a literal to make it pass; keep the old derivation
(a new one may only be added beside it, under a new name).

The literals were computed once, from the release that introduced this file.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

from leadpulse.schemas import BehaviorEvent, Handoff, Stage, from_segment
from leadpulse.schemas.segment import message_digest
from leadpulse.scoring import (
    TRANSITION_NAMESPACE,
    apply,
    evaluate,
    new_lead,
    parse_model,
    transition_id,
)
from leadpulse.streams.delivery.payloads import message_id
from leadpulse.streams.delivery.signing import secret_key, sign_headers
from leadpulse.streams.pipeline.identity import merge_markers
from leadpulse.streams.store.redis.wire import id_digest

MODEL = parse_model(
    """\
version: "golden-1"
engagement:
  rules:
    - {name: demo, event: demo_request, points: 80, half_life: 1d}
fit:
  rules:
    - {name: big, trait: company_size, between: [50, 5000], points: 40}
  grades: {A: 40, B: 20}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
""",
    "golden.yaml",
)
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)

MQL_ID = "0d8add57-9b6b-55e5-8ab6-d682fa6a3def"
"""lead-42, caused by event evt-1, IQL -> MQL."""
HANDOFF_ID = "e66f7d43-6c11-5e10-b7ab-22ee5e8b265a"
"""lead-42, caused by event evt-1, MQL -> SAL: the transition id is the handoff id."""
RECYCLE_ID = "3e8b8ece-3f73-5480-8b91-b1520ed5a189"
"""lead-42's recycle by decay after evt-1 alone: named by the crossing time."""


def test_the_transition_namespace_never_changes() -> None:
    assert str(TRANSITION_NAMESPACE) == "bc54d973-9b26-5bdc-91f5-eda419cb376f"


def test_transition_ids_caused_by_an_event() -> None:
    assert transition_id("lead-42", Stage.IQL, Stage.MQL, event_id="evt-1") == MQL_ID
    assert transition_id("lead-42", Stage.MQL, Stage.SAL, event_id="evt-1") == HANDOFF_ID


def test_transition_id_caused_by_decay_is_named_by_the_crossing_time() -> None:
    made = transition_id("lead-42", Stage.SAL, Stage.NURTURE, crossing=1795341600.25)
    assert made == "38da347e-8768-591e-8fbb-35db6b93df3e"


def test_the_engine_gives_the_golden_ids_and_the_handoff_carries_its_transitions() -> None:
    """Through `apply`/`evaluate`: also pins the crossing time the recycle search finds."""
    demo = BehaviorEvent(
        event_id="evt-1",
        type="demo_request",
        lead_id="lead-42",
        occurred_at=T0,
        traits={"company_size": 800},
    )
    state, made = apply(new_lead("lead-42"), demo, MODEL)
    assert [(t.from_stage, t.to_stage, t.transition_id) for t in made] == [
        (Stage.IQL, Stage.MQL, MQL_ID),
        (Stage.MQL, Stage.SAL, HANDOFF_ID),
    ]
    handoff = Handoff.from_transition(made[1])
    assert handoff.handoff_id == HANDOFF_ID
    assert state.handoff_id == HANDOFF_ID  # what sales feedback must name
    assert message_id(handoff) == HANDOFF_ID  # the webhook-id
    assert message_id(made[0]) == MQL_ID
    _, recycled = evaluate(state, T0 + timedelta(days=3), MODEL)
    assert [(t.from_stage, t.to_stage, t.transition_id) for t in recycled] == [
        (Stage.SAL, Stage.NURTURE, RECYCLE_ID)
    ]
    assert recycled[0].occurred_at == datetime(2026, 11, 24, 2, 16, 25, 583496, tzinfo=UTC)


SEGMENT_TRACK = {
    "type": "track",
    "event": "Demo Requested",
    "userId": "lead-42",
    "originalTimestamp": "2026-11-22T10:00:00Z",
    "properties": {"plan": "pro", "seats": 12},
}
SEGMENT_DIGEST = "seg-3dc43a37c58e9532cf2a01614fe33d1d384389402c23c54920ca78a1534cbad1"


def test_a_message_without_message_id_gets_the_golden_digest() -> None:
    assert message_digest(SEGMENT_TRACK) == SEGMENT_DIGEST
    # the fields an SDK or the server sets per upload are not part of it
    retry = {**SEGMENT_TRACK, "sentAt": "2026-11-22T10:00:01Z", "receivedAt": "x", "writeKey": "k"}
    for message in (retry, {**retry, "messageId": ""}, {**retry, "messageId": None}):
        event = from_segment(message, received_at=T0 + timedelta(seconds=30))
        assert event.event_id == SEGMENT_DIGEST


def test_the_seen_window_digest_of_an_event_id() -> None:
    """What Redis holds per applied event id: a new digest would re-apply re-deliveries."""
    assert id_digest("evt-1").hex() == "7bb2bee4f6ad31608f20fbf9"


def test_merge_markers_of_a_detached_history() -> None:
    link = BehaviorEvent(
        event_id="id-1", type="identify", lead_id="lead-42", anonymous_id="anon-7", occurred_at=T0
    )
    assert merge_markers(link, b"history-blob") == (
        "merge:anon-7:0a9c103085ab4bcab840a8b8",
        "merge:anon-7",
    )
    assert merge_markers(link, None) == ("merge:anon-7",)


def test_the_webhook_signature_of_a_handoff() -> None:
    """Standard Webhooks: receivers verify ``v1,`` + HMAC-SHA256 of ``id.timestamp.body``."""
    key = secret_key("whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode())
    headers = sign_headers([key], HANDOFF_ID, 1795431600, b'{"type":"handoff.created"}')
    assert headers == {
        "webhook-id": HANDOFF_ID,
        "webhook-timestamp": "1795431600",
        "webhook-signature": "v1,yvTPQ0y/y04HcAYu7qd5ynO9P9C+6e/foY6JHm2T5gY=",
    }


def test_the_model_version_of_a_model_file() -> None:
    """States and handoffs name it; the same file content must keep naming the same version."""
    assert MODEL.model_version == "golden-1+966964dbbe18"
