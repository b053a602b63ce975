"""bench/quality's metrics and threshold search, on literal examples worked by hand."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest

from bench.quality.funnel import DAY, LeadTruth
from bench.quality.metrics import measure, search_threshold
from bench.quality.report import Row, pr_svg, table
from bench.quality.scorers import Scored
from leadpulse.schemas import Stage, StageTransition

END = 100 * DAY


def move(lead: str, day: float, from_stage: Stage, to_stage: Stage) -> StageTransition:
    return StageTransition(
        transition_id=f"{lead}-{day}-{to_stage.value}",
        lead_id=lead,
        from_stage=from_stage,
        to_stage=to_stage,
        engagement=0.0,
        fit=0.0,
        grade="A",
        occurred_at=datetime.fromtimestamp(day * DAY, UTC),
        model_version="test",
        reason="test",
    )


def handoff(lead: str, day: float) -> list[StageTransition]:
    """IQL -> MQL -> SAL at one moment, as one event can cause."""
    return [move(lead, day, Stage.IQL, Stage.MQL), move(lead, day, Stage.MQL, Stage.SAL)]


def recycle(lead: str, day: float) -> StageTransition:
    return move(lead, day, Stage.SAL, Stage.NURTURE)


def days(*pairs: tuple[float, float]) -> tuple[tuple[float, float], ...]:
    return tuple((a * DAY, b * DAY) for a, b in pairs)


TRUTH = {
    "a": LeadTruth("buyer", ready=days((10, 20)), warm=days((5, 25)), end=END),
    "b": LeadTruth(
        "evaluator", ready=days((10, 20), (50, 60)), warm=days((5, 25), (45, 65)), end=END
    ),
    "c": LeadTruth("researcher", ready=(), warm=(), end=END),
    "d": LeadTruth("buyer", ready=days((30, 40)), warm=days((25, 45)), end=END),
}
SCORED = Scored(
    model_version="test",
    events=0,
    transitions={
        # ready at 12: correct, caught after 2 days; cold at 25, recycled at 30 (5 days later)
        "a": (*handoff("a", 12), recycle("a", 30)),
        # too early at 8 (not ready), recycled at 22 before it went cold at 25: premature;
        # back and ready at 55: correct, caught after 5 days; cold at 65, never recycled
        "b": (
            *handoff("b", 8),
            recycle("b", 22),
            move("b", 40, Stage.NURTURE, Stage.MQL),
            move("b", 55, Stage.MQL, Stage.SAL),
        ),
        # never ready: wrong; already cold, recycled 7 days later
        "c": (*handoff("c", 40), recycle("c", 47)),
        # "d" is ready from 30 to 40 and never handed off: missed
    },
)


def test_metrics_of_a_literal_example():
    m = measure(SCORED, TRUTH)
    assert (m.leads, m.handoffs, m.correct) == (4, 4, 2)
    assert m.precision == 0.5
    assert (m.episodes, m.caught) == (4, 2)  # a, b twice, d
    assert m.recall == 0.5
    assert m.lead_time_days == 3.5  # median of 2 and 5
    assert m.handoffs_per_1000 == 1000.0
    assert m.recycles == 3
    assert m.went_cold == 4  # a@12, b@8, b@55, c@40
    assert m.recycled_cold == 2  # a (5 days), c (7 days)
    assert m.cold_to_recycle_days == 6.0
    assert m.premature_recycles == 1  # b at 22


def test_a_handoff_at_the_very_end_of_readiness_counts():
    truth = {"a": LeadTruth("buyer", ready=days((10, 20)), warm=days((5, 25)), end=END)}
    scored = Scored("test", {"a": tuple(handoff("a", 20))}, 0)
    m = measure(scored, truth)
    assert (m.correct, m.caught, m.lead_time_days) == (1, 1, 10.0)


def test_no_handoffs_no_precision():
    m = measure(Scored("test", {}, 0), TRUTH)
    assert m.precision is None
    assert m.recall == 0.0
    assert m.lead_time_days is None
    assert m.cold_to_recycle_days is None


def steps(threshold: float) -> float:
    """Recall 1 up to 10, 0.75 up to 20, 0.5 up to 30, 0.25 up to 40, then 0."""
    for bound, recall in ((10, 1.0), (20, 0.75), (30, 0.5), (40, 0.25)):
        if threshold <= bound:
            return recall
    return 0.0


def test_search_lands_on_the_step_that_equals_the_target():
    found = search_threshold(steps, 0.5, low=1, high=100, tolerance=0.01)
    assert found.recall == 0.5
    assert 30 - 0.01 < found.threshold <= 30
    assert steps(found.threshold + 0.01) == 0.25


def test_search_between_steps_takes_the_next_recall_above():
    found = search_threshold(steps, 0.6, low=1, high=100, tolerance=0.001)
    assert found.recall == 0.75
    assert 20 - 0.001 < found.threshold <= 20


def test_search_refuses_unreachable_and_unbounded_targets():
    with pytest.raises(ValueError, match="no threshold reaches it"):
        search_threshold(steps, 0.8, low=15, high=100)
    with pytest.raises(ValueError, match="raise the search's upper bound"):
        search_threshold(steps, 0.25, low=1, high=35)
    with pytest.raises(ValueError, match="must be below"):
        search_threshold(steps, 0.5, low=10, high=10)


def test_table_and_plot():
    m = measure(SCORED, TRUTH)
    rows = [Row("decayed", 70.0, m, [(50.0, m), (70.0, m)]), Row("other", 90.5, m, [(90.5, m)])]
    text = table(rows)
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[2] == (
        "| decayed | 70.00 | 0.500 | 0.500 (2/4) | 3.5 | 1,000 | 3 | 2 of 4 (50%) | 6.0 |"
    )
    assert lines[3].startswith("| other | 90.50 |")
    svg = ET.fromstring(pr_svg(rows, title="t <&>", target=0.4))
    ns = "{http://www.w3.org/2000/svg}"
    assert len(svg.findall(f"{ns}polyline")) == 2
    texts = [t.text for t in svg.iter(f"{ns}text")]
    assert "t <&>" in texts
    assert "decayed" in texts
