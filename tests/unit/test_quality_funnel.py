"""bench/quality's simulated funnel: deterministic per seed, exact ground truth.

Golden counts pin the generator: a change to it changes every published
comparison (bench/RESULTS.md), so it must show up here first.
"""

from __future__ import annotations

import pytest

from bench.quality.funnel import COLD, DAY, READY, START, Curve, LeadTruth, generate
from leadpulse.scoring import default_model

SEED7_200 = {
    "events": 12233,
    "personas": {"buyer": 18, "evaluator": 28, "job_seeker": 38, "researcher": 70, "student": 46},
    "ready_episodes": 74,
    "types": {
        "content_download": 1344,
        "demo_request": 58,
        "email_click": 755,
        "email_open": 2526,
        "email_unsubscribe": 7,
        "form_submit": 263,
        "identify": 200,
        "page_view": 5888,
        "product_usage": 345,
        "trial_signup": 86,
        "webinar_attended": 236,
        "webinar_registered": 525,
    },
}


def test_golden_counts_for_seed_7():
    funnel = generate(200, seed=7)
    assert funnel.event_count() == SEED7_200["events"]
    assert dict(funnel.personas()) == SEED7_200["personas"]
    assert funnel.ready_episodes() == SEED7_200["ready_episodes"]
    assert dict(funnel.type_counts()) == SEED7_200["types"]
    first = funnel.events["lead-00000"][0]
    assert (first.event_id, first.type, first.lead_id) == (
        "lead-00000-0000",
        "identify",
        "lead-00000",
    )
    assert first.traits == {"company_size": 5000, "industry": "education", "seniority": "student"}


def test_same_seed_same_funnel_other_seed_another():
    one, two = generate(60, seed=3), generate(60, seed=3)
    assert one.events == two.events
    assert one.truth == two.truth
    other = generate(60, seed=4)
    assert other.events != one.events


def test_a_lead_does_not_depend_on_how_many_leads_follow():
    small, large = generate(20, seed=5), generate(40, seed=5)
    for lead_id, events in small.events.items():
        assert large.events[lead_id] == events
        assert large.truth[lead_id] == small.truth[lead_id]


def test_events_are_in_time_order_within_the_period_and_scoreable():
    funnel = generate(150, days=90, seed=11)
    model = default_model()
    scored_types = {rule.event for rule in model.engagement_rules} | {"identify"}
    for lead_id, events in funnel.events.items():
        assert events[0].type == "identify"
        assert events[0].traits  # the fit profile, once, at the first touch
        times = [event.occurred_at.timestamp() for event in events]
        assert times == sorted(times)
        assert all(funnel.start <= moment < funnel.end for moment in times)
        assert funnel.end - funnel.start == 90 * DAY
        for event in events:
            assert event.lead_id == lead_id
            assert event.type in scored_types
            if event.type == "page_view":
                assert str(event.properties["url"]).startswith("https://example.com/")


def test_only_buyers_and_evaluators_are_ever_ready_and_at_most_so_often():
    funnel = generate(400, seed=2)
    for truth in funnel.truth.values():
        if truth.persona == "buyer":
            assert len(truth.ready) <= 1
        elif truth.persona == "evaluator":
            assert len(truth.ready) <= 2
        else:
            assert truth.ready == ()
    evaluators = [t for t in funnel.truth.values() if t.persona == "evaluator"]
    assert any(len(t.ready) == 2 for t in evaluators)  # gone cold and come back


def test_curve_intervals_are_exact_crossings():
    curve = Curve(((10.0, 0.1), (20.0, 0.9), (30.0, 0.9), (34.0, 0.1)))
    assert curve.at(15.0) == pytest.approx(0.5)
    assert curve.at(0.0) == 0.1
    assert curve.at(99.0) == 0.1
    # 0.7 is reached at 10 + 10 * 0.6 / 0.8 = 17.5, left at 30 + 4 * 0.2 / 0.8 = 31
    assert curve.above(READY, 0.0, 180.0) == [(17.5, 31.0)]
    # 0.3: from 12.5 to 33
    assert curve.above(COLD, 0.0, 180.0) == [(12.5, 33.0)]
    assert curve.above(READY, 0.0, 25.0) == [(17.5, 25.0)]  # cut at the period's end
    assert curve.above(0.95, 0.0, 180.0) == []
    twice = Curve(((0.0, 0.0), (10.0, 1.0), (20.0, 0.0), (30.0, 1.0), (40.0, 0.0)))
    assert twice.above(0.5, 0.0, 40.0) == [(5.0, 15.0), (25.0, 35.0)]


def test_truth_of_a_generated_lead_matches_its_events_period():
    funnel = generate(100, seed=7)
    truth = next(t for t in funnel.truth.values() if t.persona == "buyer" and t.ready)
    start, end = truth.ready[0]
    assert funnel.start < start < end <= funnel.end
    assert truth.ready_at(start)
    assert truth.ready_at(end)
    assert not truth.ready_at(start - 1)
    assert truth.end == funnel.end
    assert funnel.start == START.timestamp()


def test_cold_from():
    truth = LeadTruth(persona="x", ready=(), warm=((100.0, 200.0), (300.0, 500.0)), end=500.0)
    assert truth.cold_from(50.0) == 50.0  # already cold
    assert truth.cold_from(150.0) == 200.0
    assert truth.cold_from(400.0) is None  # warm until the period ends: unknown
    assert truth.cold_from(600.0) is None


@pytest.mark.parametrize(("leads", "days"), [(0, 180.0), (10, 29.0)])
def test_bad_sizes_are_refused(leads, days):
    with pytest.raises(ValueError, match="must be at least"):
        generate(leads, days=days)
