"""The arithmetic of `leadpulse model whatif`: pairing, backtest, gained/lost, the JSON shape.

Every expected value is a literal worked out by hand from the runs built here.
"""

from __future__ import annotations

from leadpulse.streams.pipeline.records import Record
from leadpulse.streams.replay.compare import as_json, compare, iso_week, pairs
from leadpulse.streams.replay.run import HandoffMade, RunResult, Watermark, per_partition

DAY = 86_400.0
T0 = 1_796_000_000.0  # 2026-11-30 (a Monday) 00:53:20 UTC


def h(handoff_id: str, lead: str, at: float) -> HandoffMade:
    return HandoffMade(handoff_id=handoff_id, lead_id=lead, at=at, engagement=80.0, grade="A")


def current_run() -> RunResult:
    run = RunResult(model_version="cur")
    run.events = 40
    run.mqls = 5
    run.recycles = 1
    run.stages = {"mql": 1, "sal": 2, "sql": 1}
    run.handoffs = [
        h("c-a1", "a", T0),
        h("c-b1", "b", T0 + DAY),
        h("c-c1", "c", T0 + 2 * DAY),
        h("c-a2", "a", T0 + 8 * DAY),
        h("c-d1", "d", T0 + 9 * DAY),
    ]
    run.outcomes = {
        "accepted": {"c-a1", "c-b1", "c-d1"},
        "rejected": {"c-c1"},
        "sql": {"c-a1"},
        "disqualified": set(),
    }
    run.first_touch = {"a": T0 - 4 * DAY, "b": T0 - DAY, "c": T0, "d": T0 + 3 * DAY}
    run.parts = {"c-c1": {"demo": 60.0, "pricing": 20.0}, "c-d1": {"demo": 60.0}}
    return run


def new_run() -> RunResult:
    run = RunResult(model_version="new")
    run.events = 40
    run.mqls = 6
    run.recycles = 0
    run.stages = {"mql": 2, "sal": 2}
    run.handoffs = [
        h("n-a1", "a", T0 - 3600),  # an hour earlier than c-a1
        h("n-b1", "b", T0 + DAY + 7200),  # two hours later than c-b1
        h("n-e1", "e", T0 + 4 * DAY),
        h("n-c1", "c", T0 + 2 * DAY),  # the same moment as c-c1
    ]
    run.outcomes = {k: set() for k in ("accepted", "rejected", "sql", "disqualified")}
    run.first_touch = {"a": T0 - 4 * DAY, "b": T0 - DAY, "c": T0, "e": T0 + 2 * DAY}
    run.parts = {
        "c-c1": {"demo": 40.0, "pricing": 20.0},
        "c-d1": {"demo": 40.0},
        "n-e1": {"form": 30.0, "pricing": 42.0},
    }
    return run


def test_handoffs_pair_by_lead_in_time_order() -> None:
    paired = pairs(current_run().handoffs, new_run().handoffs)
    assert {k: v.handoff_id for k, v in paired.items()} == {
        "c-a1": "n-a1",
        "c-b1": "n-b1",
        "c-c1": "n-c1",
    }  # c-a2: the new model hands a off once; c-d1: never


def test_backtest_gained_lost_and_columns() -> None:
    current, new = current_run(), new_run()
    current.parts["n-e1"] = {"form": 10.0, "pricing": 42.0}
    result = compare(current, new, since=T0 - 5 * DAY)
    assert {k: (b.handoffs, b.also, b.median_shift) for k, b in result.backtest.items()} == {
        # accepted c-a1 (-3600 s), c-b1 (+7200 s), c-d1 (none): median of -3600, 7200
        "accepted": (3, 2, 1800.0),
        "rejected": (1, 1, 0.0),
        "sql": (1, 1, -3600.0),
        "disqualified": (0, 0, None),
    }
    assert result.gained == ["e"]
    assert result.lost == ["d"]
    assert result.current.outcomes == {"accepted": 3, "rejected": 1, "sql": 1, "disqualified": 0}
    assert result.new.outcomes == {"accepted": 2, "rejected": 1, "sql": 1, "disqualified": 0}
    assert (result.current.handoffs, result.new.handoffs) == (5, 4)
    # touch -> handoff, current: a 4d, b 2d, c 2d, a 12d, d 6d -> median 4d
    assert result.current.median_touch_to_handoff == 4 * DAY
    # new: a 4d - 1h, b 2d + 2h, e 2d, c 2d -> median (2d + 2d + 2h) / 2 = 2d + 1h
    assert result.new.median_touch_to_handoff == 2 * DAY + 3600
    assert result.current.per_week == {"2026-W49": 3, "2026-W50": 2}
    assert result.new.per_week == {"2026-W48": 1, "2026-W49": 3}
    (gained,) = result.gained_sample
    assert (gained.lead_id, gained.handoff_id, gained.parts) == (
        "e",
        "n-e1",
        [("form", 10.0, 30.0)],
    )
    assert (gained.current_engagement, gained.new_engagement) == (52.0, 72.0)
    (lost,) = result.lost_sample
    assert (lost.lead_id, lost.parts) == ("d", [("demo", 60.0, 40.0)])


def test_iso_week_starts_on_monday() -> None:
    assert iso_week(T0) == "2026-W49"
    assert iso_week(T0 - 6 * 3600) == "2026-W48"  # Sunday 2026-11-29, 18:53 UTC


def test_json_shape() -> None:
    current, new = current_run(), new_run()
    body = as_json(compare(current, new, since=T0), history_starts=T0 - DAY, now=T0 + 10 * DAY)
    assert body == {
        "events": 40,
        "since": "2026-11-30T00:53:20+00:00",
        "current": {
            "model_version": "cur",
            "handoffs": 5,
            "mqls": 5,
            "recycles": 1,
            "stages": {"mql": 1, "sal": 2, "sql": 1},
            "outcomes": {"accepted": 3, "rejected": 1, "sql": 1, "disqualified": 0},
            "handoffs_per_week": {"2026-W49": 3, "2026-W50": 2},
            "median_touch_to_handoff_s": 345600.0,
        },
        "new": {
            "model_version": "new",
            "handoffs": 4,
            "mqls": 6,
            "recycles": 0,
            "stages": {"mql": 2, "sal": 2},
            "outcomes": {"accepted": 2, "rejected": 1, "sql": 1, "disqualified": 0},
            "handoffs_per_week": {"2026-W48": 1, "2026-W49": 3},
            "median_touch_to_handoff_s": 176400.0,
        },
        "gained": ["e"],
        "lost": ["d"],
        "backtest": {
            "accepted": {"handoffs": 3, "also": 2, "median_shift_s": 1800.0},
            "rejected": {"handoffs": 1, "also": 1, "median_shift_s": 0.0},
            "sql": {"handoffs": 1, "also": 1, "median_shift_s": -3600.0},
            "disqualified": {"handoffs": 0, "also": 0, "median_shift_s": None},
        },
        "sample": {
            "gained": [
                {
                    "lead_id": "e",
                    "handoff_id": "n-e1",
                    "at": "2026-12-04T00:53:20+00:00",
                    "engagement": {"current": 0.0, "new": 72.0},
                    "parts": [
                        {"rule": "pricing", "current": 0.0, "new": 42.0},
                        {"rule": "form", "current": 0.0, "new": 30.0},
                    ],
                }
            ],
            "lost": [
                {
                    "lead_id": "d",
                    "handoff_id": "c-d1",
                    "at": "2026-12-09T00:53:20+00:00",
                    "engagement": {"current": 60.0, "new": 40.0},
                    "parts": [{"rule": "demo", "current": 60.0, "new": 40.0}],
                }
            ],
        },
        "history_starts": "2026-11-29T00:53:20+00:00",
        "now": "2026-12-10T00:53:20+00:00",
    }


def rec(partition: int, offset: int) -> Record:
    return Record(key=b"k", value=b"{}", topic="t", partition=partition, offset=offset)


def test_per_partition_batches_round_robin_in_offset_order() -> None:
    records = [rec(0, 0), rec(1, 0), rec(0, 1), rec(0, 2), rec(1, 1), rec(2, 0)]
    got = [
        ([(r.partition, r.offset) for r in chunk], set(done))
        for chunk, done in per_partition(records, 2)
    ]
    assert got == [
        ([(0, 0), (0, 1)], set()),
        ([(1, 0), (1, 1)], {1}),
        ([(2, 0)], {2}),
        ([(0, 2)], {0}),
    ]


def test_the_sweep_bound_is_the_lowest_watermark() -> None:
    mark = Watermark(event_times={0: 500.0, 1: 300.0}, done={2})
    assert mark.bound([0, 1, 2], now=1000.0) == 300.0
    assert mark.bound([0, 2], now=1000.0) == 500.0
    assert mark.bound([2], now=1000.0) == 1000.0
    assert mark.bound([0, 3], now=1000.0) == 0.0  # a partition not begun holds sweeps back
