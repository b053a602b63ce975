"""bench/quality's scorers: the three model files, `score` through the engine, the threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib.resources import files
from typing import Any

import pytest
import yaml

from bench.quality.funnel import DAY, LeadTruth, generate
from bench.quality.metrics import measure, search_threshold
from bench.quality.scorers import HERE, SCORERS, load, replay_check, score, with_handoff
from leadpulse.schemas import BehaviorEvent, Stage
from leadpulse.scoring import default_model, parse_model

T0 = datetime(2026, 3, 2, tzinfo=UTC)
A_FIT = {"company_size": 800, "industry": "software", "seniority": "vp"}


def event(lead: str, n: int, kind: str, at: datetime, **fields: Any) -> BehaviorEvent:
    return BehaviorEvent(event_id=f"{lead}-{n}", type=kind, lead_id=lead, occurred_at=at, **fields)


def pricing(lead: str, n: int, at: datetime) -> BehaviorEvent:
    return event(lead, n, "page_view", at, properties={"url": "https://example.com/pricing"})


def default_text() -> dict[str, Any]:
    text = files("leadpulse.scoring").joinpath("default_model.yaml").read_text()
    return yaml.safe_load(text)


def test_the_decayed_scorer_is_the_default_model():
    model = load("decayed")
    assert model.version == "quality-decayed"
    ours = model.spec.model_dump(exclude={"version"})
    assert ours == default_model().spec.model_dump(exclude={"version"})


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("cumulative", {"half_life": "none"}),
        ("windowed", {"half_life": "none", "window": "30d"}),
    ],
)
def test_the_baselines_are_the_default_rules_without_decay(name, changed):
    written = yaml.safe_load((HERE / f"{name}.yaml").read_text())
    default = default_text()
    assert written["version"] == f"quality-{name}"
    assert [{**rule, **changed} for rule in default["engagement"]["rules"]] == written[
        "engagement"
    ]["rules"]
    for section in ("fit", "lifecycle", "tiers", "limits", "events"):
        assert written[section] == default[section]


@pytest.mark.parametrize("name", ["cumulative", "windowed"])
def test_the_baselines_load(name):
    model = load(name)
    for rule in model.engagement_rules:
        assert rule.half_life is None
        assert rule.window == (30 * DAY if name == "windowed" else None)


def test_every_scorer_has_its_file():
    assert sorted(path.stem for path in HERE.glob("*.yaml")) == sorted(SCORERS)


def test_score_folds_events_and_recycles_by_decay_up_to_the_end():
    model = load("decayed")
    lead = "lead-1"
    events = [
        event(lead, 0, "identify", T0, traits=A_FIT),
        event(lead, 1, "demo_request", T0),
        pricing(lead, 2, T0),  # 60 + 10 + 1 (page-view) = 71 >= 70, grade A: handoff
    ]
    end = (T0 + timedelta(days=60)).timestamp()
    scored = score({lead: events}, model, until=end)
    moves = [(t.from_stage, t.to_stage) for t in scored.transitions[lead]]
    assert moves == [
        (Stage.IQL, Stage.MQL),
        (Stage.MQL, Stage.SAL),
        (Stage.SAL, Stage.NURTURE),
    ]
    assert scored.events == 3
    assert scored.handoffs() == {lead: [T0.timestamp()]}
    # by hand: at 14 days 30 + 2.5 + 0.04 > 25; at 21 days 21.2 + 1.25 + 0.01 < 25
    (recycled,) = scored.recycles()[lead]
    assert T0.timestamp() + 14 * DAY < recycled < T0.timestamp() + 21 * DAY
    # without `until` the period ends with the last event: nothing has decayed yet
    assert score({lead: events}, model).recycles() == {lead: []}


def test_score_refuses_events_out_of_time_order():
    events = [event("x", 0, "demo_request", T0 + timedelta(days=1)), pricing("x", 1, T0)]
    with pytest.raises(ValueError, match="x-1 is earlier than x-0"):
        score({"x": events}, default_model())


def test_with_handoff_scales_the_ladder():
    model = with_handoff(default_model(), 140)
    lifecycle = model.lifecycle
    assert (lifecycle.handoff.engagement, lifecycle.mql, lifecycle.recycle) == (140, 100, 50)
    assert model.model_version != default_model().model_version
    assert with_handoff(default_model(), 70).lifecycle == default_model().lifecycle
    with pytest.raises(ValueError, match="above 0"):
        with_handoff(default_model(), 0)


# A temporary model in the shape of the baselines: points that (nearly) never fade.
SLOW = """
version: "test-slow"
engagement:
  rules:
    - {name: demo, event: demo_request, points: 60, half_life: 3650d}
    - {name: pricing, event: page_view, points: 10, half_life: 3650d, cap: 30}
fit:
  rules:
    - {name: vp, trait: seniority, in: [vp], points: 50}
  grades: {A: 50, B: 30}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B}
  recycle: 25
"""


def test_the_threshold_search_hits_the_target_recall_through_the_engine():
    """Lead a reaches exactly 70, b exactly 90 (events at one instant do not decay).

    Both are ready then, so recall is 1 up to 70, 0.5 up to 90, 0 above:
    the target 0.5 is reached exactly, at the threshold 90.
    """
    model = parse_model(SLOW)
    lead_events = {
        "a": [
            event("a", 0, "identify", T0, traits=A_FIT),
            event("a", 1, "demo_request", T0),
            pricing("a", 2, T0),
        ],
        "b": [
            event("b", 0, "identify", T0, traits=A_FIT),
            event("b", 1, "demo_request", T0),
            *(pricing("b", n, T0) for n in (2, 3, 4)),
        ],
    }
    ready = ((T0.timestamp() - DAY, T0.timestamp() + DAY),)
    truth = {lead: LeadTruth("buyer", ready=ready, warm=ready) for lead in lead_events}

    def recall_at(threshold: float) -> float:
        return measure(score(lead_events, with_handoff(model, threshold)), truth).recall

    assert recall_at(70) == 1.0
    assert recall_at(70.01) == 0.5
    found = search_threshold(recall_at, 0.5, low=10, high=200, tolerance=0.01)
    assert found.recall == 0.5
    assert 90 - 0.01 < found.threshold <= 90
    assert recall_at(found.threshold + 0.01) == 0.0


def test_the_whatif_replay_decides_what_the_engine_decides() -> None:
    """The table's scorer and the worker's pipeline agree on the same events (seed 7)."""
    funnel = generate(200, 60, 7)
    found = {
        name: replay_check(funnel.events, with_handoff(load(name), 90.0), until=funnel.end)
        for name in ("decayed", "cumulative", "windowed")
    }
    assert {name: (c.handoffs, c.recycles) for name, c in found.items()} == {
        "decayed": (35, 9),
        "cumulative": (51, 0),
        "windowed": (48, 7),
    }
    for check in found.values():
        assert (check.replay_handoffs, check.replay_recycles) == (check.handoffs, check.recycles)
        assert check.differing_leads == ()
        assert check.equal
