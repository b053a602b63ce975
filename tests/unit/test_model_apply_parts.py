"""The pure and local parts of `leadpulse model apply`: rescore moves and their ids,
namespace names, the fence a worker checks, and `leadpulse model status`'s text."""

from __future__ import annotations

import uuid

import pytest

from leadpulse.schemas import Stage
from leadpulse.scoring import TRANSITION_NAMESPACE, LeadState, parse_model, rescore_move
from leadpulse.streams.cli.apply import render_status
from leadpulse.streams.pipeline.progress import NamespaceSwitchedError, Progress
from leadpulse.streams.store import MemoryLeadStore
from leadpulse.streams.store.models import DRAINING, FENCED, Fence
from leadpulse.streams.store.redis.keys import Keys, namespace_of

TEXT = """\
version: "r-1"
engagement:
  rules:
    - {name: view, event: page_view, points: 5, half_life: 1d}
fit:
  rules:
    - {name: big, trait: company_size, between: [100, 100000], points: 40}
  grades: {A: 40}
lifecycle: {mql: 50, handoff: {engagement: 70, min_grade: A}, recycle: 25}
"""
MODEL = parse_model(TEXT, "r.yaml")
AT = 1765000000.0


def test_rescore_move_goes_from_the_old_stage_to_the_new_one() -> None:
    old = LeadState(lead_id="l-1", stage=Stage.MQL)
    new = LeadState(lead_id="l-1", stage=Stage.SAL, traits={"company_size": 400})
    move = rescore_move(old, new, MODEL, at=AT, from_version="r-0+000000000000")
    assert move is not None
    assert (move.from_stage, move.to_stage, move.rescore) == (Stage.MQL, Stage.SAL, True)
    assert not move.is_handoff  # a rescore is never a handoff
    assert move.fit == 40.0
    assert move.grade == "A"
    assert move.model_version == MODEL.model_version
    assert move.occurred_at.timestamp() == AT
    assert move.reason == f"rescore: model r-0+000000000000 -> {MODEL.model_version}"
    name = f"l-1:rescore:r-0+000000000000->{MODEL.model_version}:mql->sal"
    assert move.transition_id == str(uuid.uuid5(TRANSITION_NAMESPACE, name))


def test_rescore_transition_ids_are_pinned() -> None:
    from leadpulse.scoring import transition_id

    assert (
        transition_id("lead-1", Stage.SQL, Stage.MQL, rescore="a+000000000001->b+000000000002")
        == "8b7820fb-2224-5482-93a7-e100eb8cd760"
    )


def test_no_move_when_the_stages_agree_or_for_a_visitor() -> None:
    same = LeadState(lead_id="l-1", stage=Stage.MQL)
    assert rescore_move(same, same, MODEL, at=AT, from_version="x") is None
    visitor = LeadState(lead_id="a-1", anonymous=True)
    assert rescore_move(None, visitor, MODEL, at=AT, from_version="x") is None


def test_a_lead_the_old_model_never_saw_moves_from_iql() -> None:
    new = LeadState(lead_id="l-2", stage=Stage.MQL)
    move = rescore_move(None, new, MODEL, at=AT, from_version="x")
    assert move is not None
    assert (move.from_stage, move.to_stage) == (Stage.IQL, Stage.MQL)
    assert rescore_move(None, LeadState(lead_id="l-3"), MODEL, at=AT, from_version="x") is None


def test_a_models_namespace_is_named_after_its_content_hash() -> None:
    assert namespace_of("lp", "integration-2+4b1abfbf7f69") == "lp.m4b1abfbf7f69"
    assert namespace_of("acme-prod", "v7+0123456789ab") == "acme-prod.m0123456789ab"
    # a version without the hash (written by hand) still gets one name of its own
    assert namespace_of("lp", "v1") == "lp.m3bfc269594ef"
    keys = Keys(namespace_of("a" * 32, "v+0123456789ab"))
    assert keys.state("x") == f"{'a' * 32}.m0123456789ab:{{x}}:state"
    assert keys.fence("events") == f"{'a' * 32}.m0123456789ab:fence:{{events}}"
    with pytest.raises(ValueError, match="Redis key prefix"):
        Keys("a" * 33)  # longer than a prefix, and no model's digest
    with pytest.raises(ValueError, match="Redis key prefix"):
        Keys("lp:m0123456789ab")


def test_deployment_keys_sit_beside_the_first_namespace() -> None:
    keys = Keys("lp")
    assert (keys.active, keys.namespaces, keys.apply) == ("lp:active", "lp:namespaces", "lp:apply")
    assert keys.state_pattern == "lp:{*}:state"
    assert keys.subject_of_state("lp:{%x7b}:state") == "{"
    assert "lp:active" not in keys.namespace_keys()


async def test_a_fenced_namespace_takes_no_batch() -> None:
    store = MemoryLeadStore()
    progress = Progress(store, "events")
    await progress.record({0: 5})
    await progress.check({0})
    await store.set_fence("events", Fence(DRAINING, "lp.m0123456789ab", AT))
    with pytest.raises(NamespaceSwitchedError, match=r"lp\.m0123456789ab"):
        await progress.check({0})
    with pytest.raises(NamespaceSwitchedError):
        await progress.check(set())  # a sweep of a worker that recorded nothing yet
    await progress.record({0: 6})  # draining: a batch in flight still records
    await store.set_fence("events", Fence(FENCED, "lp.m0123456789ab", AT))
    with pytest.raises(NamespaceSwitchedError, match=r"lp\.m0123456789ab"):
        await progress.record({0: 7})
    assert await store.progress("events") == {0: 6}


def test_status_names_the_active_model_the_kept_ones_and_the_apply() -> None:
    body = {
        "namespace": "lp.m0123456789ab",
        "version": "v2+0123456789ab",
        "origin": "new.yaml",
        "since": AT,
        "previous": "lp",
        "switch": {0: 10},
        "fenced": None,
        "namespaces": [
            {"namespace": "lp", "version": "v1+ffffffffffff", "state": "retired", "retired_at": AT},
            {"namespace": "lp.m0123456789ab", "version": "v2+0123456789ab", "state": "active"},
        ],
        "apply": {
            "from_version": "v1+ffffffffffff",
            "to_version": "v2+0123456789ab",
            "phase": "done",
            "running": False,
            "updated_at": AT,
            "done_events": 50,
            "target": 100,
            "replayed": 1234,
            "lag": 0,
            "rescored": 7,
            "message": "",
        },
    }
    assert render_status(body, now=AT + 5) == (
        "active model   v2+0123456789ab (from new.yaml)\n"
        "namespace      lp.m0123456789ab since 2025-12-06 05:46:40 UTC\n"
        "kept           lp (v1+ffffffffffff, retired since 2025-12-06 05:46:40 UTC)\n"
        "last apply     v1+ffffffffffff -> v2+0123456789ab: done; 1234 events replayed "
        "(50% of this round), lag 0, 7 rescored"
    )
    body["apply"] = {**body["apply"], "phase": "replaying", "updated_at": AT - 60}
    assert "replaying, no news for 65 s (run it again)" in render_status(body, now=AT + 5)
