"""Untrusted time and size, and state from the previous release, on a real worker.

- Future skew: an event whose ``occurred_at`` lies 2 h after its Kafka record
  timestamp is clamped to record time + ``max_future_skew`` (2 s here, so the
  test need not wait out the 300 s default): the lead's clock stays within the
  bound, and a real event at "now" (a short half-life rule) still scores and
  makes the lead an MQL instead of being judged at a clock 2 h ahead.
- Bounded state: a flood of identify events with 2,000 distinct traits leaves at
  most 100 traits on the lead, the worker keeps flowing, and the handoff carries
  only the model's profile traits (the harness model's fit reads company_size).
- Rolling upgrade: a state blob exactly as the previous release (main at
  a497588) wrote it is read, and a new event's engagement adds on top of it.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis import keys
from tests.integration.faults import Topic, alive_check, poll, produce_at, state_of
from tests.integration.harness import start_worker, worker_settings

SKEW = 2.0
"""max_future_skew of the worker under test (seconds)."""
MARGIN = 1.0
MAX_TRAITS = 100
THIRTY_DAYS = 30 * 86400.0


@pytest.fixture(scope="module")
def running_skew(
    stack: DevStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Settings, WorkerProcess]]:
    workdir = tmp_path_factory.mktemp("skew")
    settings = worker_settings(stack, workdir).replace(max_future_skew=SKEW)
    worker = start_worker(settings, workdir / "worker.log")
    try:
        yield settings, worker
    finally:
        worker.stop()


def lead(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def ev(kind: str, lead_id: str, at: float, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "lead_id": lead_id,
        "occurred_at": datetime.fromtimestamp(at, UTC).isoformat(),
    }
    body.update(extra)
    return body


def parse(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_future_skewed_event_is_clamped_and_later_events_still_count(
    running_skew: tuple[Settings, WorkerProcess],
) -> None:
    started = time.monotonic()
    settings, worker = running_skew
    check = alive_check(worker)
    who = lead("skew")
    problems: list[str] = []

    t1 = time.time()
    produce_at(
        settings,
        [ev("page_view", who, t1 + 2 * 3600, properties={"url": "https://x.io/"})],
        timestamp=t1,
    )
    assert poll(lambda: state_of(settings.redis_url, who) is not None, timeout=20, check=check), (
        "the skewed event was not applied"
    )
    first = state_of(settings.redis_url, who)
    assert first is not None
    if first.clock > t1 + SKEW + MARGIN:
        problems.append(
            f"clock {first.clock - t1:.0f}s after the record time, bound is {SKEW:.0f}s "
            f"(+{MARGIN:.0f}s): a tracker's clock moved the lead into the future"
        )

    time.sleep(max(0.0, t1 + SKEW + MARGIN - time.time()))  # "now" is past the clamped clock
    t2 = time.time()
    (real,) = produce_at(settings, [ev("quick_look", who, t2)], timestamp=t2)
    applied = poll(
        lambda: (s := state_of(settings.redis_url, who)) is not None and s.events_applied == 2,
        timeout=20,
        check=check,
    )
    assert applied is not None, "the real event was not applied"
    second = state_of(settings.redis_url, who)
    assert second is not None
    if second.stage != "mql":
        problems.append(
            f"the real event at now (60 points, half-life 3s) left the lead {second.stage}: "
            f"it was judged at clock {second.clock - t2:+.0f}s from now"
        )
    if second.clock > t2 + SKEW + MARGIN:
        problems.append(f"clock {second.clock - t2:+.0f}s from now after the real event")
    with Topic(settings, settings.transitions_topic) as topic:
        topic.until(
            lambda vs: any(v["lead_id"] == who and v["to_stage"] == "mql" for v in vs),
            timeout=10 if second.stage == "mql" else 2,
        )
        moves = [v for v in topic.values if v["lead_id"] == who]
    to_mql = [v for v in moves if v["to_stage"] == "mql"]
    if not to_mql:
        problems.append(f"no MQL transition published for {who}: {moves}")
    else:
        if to_mql[0]["event_id"] != real.body["event_id"]:
            problems.append(f"MQL transition caused by {to_mql[0]['event_id']}, not the real event")
        at = parse(to_mql[0]["occurred_at"])
        if not t2 - MARGIN <= at <= t2 + SKEW + MARGIN:
            problems.append(f"MQL transition dated {at - t2:+.0f}s from the real event")
    print(f"\nfuture skew: {time.monotonic() - started:.1f}s")
    assert not problems, "\n".join(problems)


def test_trait_flood_is_bounded_and_handoff_carries_profile_traits_only(
    running_skew: tuple[Settings, WorkerProcess],
) -> None:
    started = time.monotonic()
    settings, worker = running_skew
    check = alive_check(worker)
    who = lead("flood")
    marker = lead("after-flood")
    now = time.time() - 60
    flood = [
        ev("identify", who, now + i, traits={f"t{i}_{k}": f"v{k}" for k in range(200)})
        for i in range(1, 11)
    ]
    events = [
        ev("identify", who, now, traits={"company_size": 400}),
        *flood,
        ev("identify", who, now + 20, traits={"company_size": 400}),
        ev("demo_request", who, now + 21),
        ev("page_view", who, now + 22, properties={"url": "https://x.io/pricing"}),
    ]
    produce_at(settings, events)
    produce_at(settings, [ev("demo_request", marker, now + 23)])
    problems: list[str] = []
    # the last events make the lead SAL; the marker, produced after the flood, an MQL
    done = poll(
        lambda: (
            (s := state_of(settings.redis_url, who)) is not None
            and s.stage == "sal"
            and (m := state_of(settings.redis_url, marker)) is not None
            and m.stage == "mql"
        ),
        timeout=30,
        check=check,
    )
    assert done is not None, (
        f"the worker stopped flowing after the flood: lead {state_of(settings.redis_url, who)}, "
        f"marker {state_of(settings.redis_url, marker)}"
    )
    state = state_of(settings.redis_url, who)
    assert state is not None
    # the bound counts the traits the model does not read; company_size is a fit trait
    unread = [t for t in state.traits if t != "company_size"]
    if len(unread) > MAX_TRAITS:
        problems.append(f"{len(unread)} unread traits kept on one lead, bound is {MAX_TRAITS}")
    if state.traits.get("company_size") != 400:
        problems.append(f"the fit trait was lost: company_size={state.traits.get('company_size')}")
    with Topic(settings, settings.handoffs_topic) as topic:
        topic.until(lambda vs: any(v["lead_id"] == who for v in vs), timeout=10)
        handoffs = [v for v in topic.values if v["lead_id"] == who]
    if len(handoffs) != 1:
        problems.append(f"{len(handoffs)} handoffs for {who}, expected one")
    else:
        profile = handoffs[0].get("profile", {})
        if profile != {"company_size": 400}:
            problems.append(
                f"handoff profile has {len(profile)} traits ({sorted(profile)[:5]}...), "
                f"expected only the profile trait company_size"
            )
    print(f"\ntrait flood: {time.monotonic() - started:.1f}s")
    assert not problems, "\n".join(problems)


def previous_release_blob(lead_id: str, at: float) -> bytes:
    """A LeadState as main at a497588 stored it: `LeadState.model_dump_json()`, field `s`."""
    return (
        f'{{"lead_id":"{lead_id}","anonymous":false,"stage":"mql","armed":true,'
        f'"clock":{at!r},"transition_seq":1,"events_applied":3,'
        f'"rules":{{"demo-request":[60.0,{at!r}],"page-view":[2.0,{at!r}]}},'
        f'"traits":{{"company_size":400}},"merged_from":[]}}'
    ).encode()


def test_previous_release_state_is_read_and_extended(
    running_skew: tuple[Settings, WorkerProcess],
) -> None:
    started = time.monotonic()
    settings, worker = running_skew
    who = lead("upgraded")
    old = time.time() - 3600
    client = redis.Redis.from_url(settings.redis_url)
    try:
        client.hset(keys.DEFAULT.state(who), mapping={"v": 3, "s": previous_release_blob(who, old)})
    finally:
        client.close()
    at = time.time() - 1
    (sent,) = produce_at(
        settings, [ev("page_view", who, at, properties={"url": "https://x.io/pricing"})]
    )
    applied = poll(
        lambda: (s := state_of(settings.redis_url, who)) is not None and s.events_applied == 4,
        timeout=20,
        check=alive_check(worker),
    )
    assert applied is not None, (
        f"the event for the upgraded lead was not applied:\n{worker.log_tail()}"
    )
    state = state_of(settings.redis_url, who)
    assert state is not None
    assert state.stage == "sal", state
    assert state.transition_seq == 2, state
    assert state.traits == {"company_size": 400}
    decay = math.exp2(-(at - old) / THIRTY_DAYS)
    expected = 60.0 * decay + min(5.0, 2.0 * decay + 1.0) + 20.0
    with Topic(settings, settings.handoffs_topic) as topic:
        assert topic.until(lambda vs: any(v["lead_id"] == who for v in vs), timeout=10), (
            "no handoff for the upgraded lead"
        )
        (handoff,) = [v for v in topic.values if v["lead_id"] == who]
    assert handoff["from_stage"] == "mql"
    assert handoff["event_id"] == sent.body["event_id"]
    assert handoff["engagement"] == pytest.approx(expected, rel=1e-9)
    print(f"\nprevious-release state: {time.monotonic() - started:.1f}s")
