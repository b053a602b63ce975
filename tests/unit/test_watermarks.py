"""Watermarks bound the sweeper in event time (issue 8, defect 2)."""

from __future__ import annotations

from leadpulse.streams.pipeline.watermarks import SweepBound, Watermarks, sweep_bound
from leadpulse.streams.store import Watermark

NOW = 1_800_000_000.0


def marks(high: dict[int, int | None]) -> Watermarks:
    return Watermarks(highwater=high.get)


def test_a_caught_up_partition_is_at_now() -> None:
    w = marks({0: 10})
    w.assigned({0: 0})
    w.processed({0: 10}, {0: NOW - 3600})
    assert w.local(NOW) == {0: NOW}


def test_a_lagging_partition_is_at_the_latest_event_time_it_processed() -> None:
    w = marks({0: 50_000})
    w.assigned({0: 0})
    w.processed({0: 500}, {0: NOW - 600})
    w.processed({0: 1000}, {0: NOW - 900})  # a late event does not move it back
    assert w.local(NOW) == {0: NOW - 600}


def test_a_lagging_partition_that_processed_nothing_holds_sweeps_back() -> None:
    w = marks({0: 50_000, 1: None})
    w.assigned({0: 0, 1: None})
    assert w.local(NOW) == {0: 0.0, 1: 0.0}


def test_an_empty_partition_with_no_known_position_is_caught_up() -> None:
    w = marks({0: 0})
    w.assigned({0: None})
    assert w.local(NOW) == {0: NOW}


def test_an_event_time_in_the_future_never_lifts_a_watermark_past_now() -> None:
    w = marks({0: 100})
    w.assigned({0: 0})
    w.processed({0: 10}, {0: NOW + 3600})
    assert w.local(NOW) == {0: NOW}


def test_revoked_partitions_are_forgotten_and_kept_ones_keep_their_time() -> None:
    w = marks({0: 100, 1: 100, 2: 0})
    w.assigned({0: 0, 1: 0})
    w.processed({0: 10, 1: 10}, {0: NOW - 50, 1: NOW - 40})
    w.assigned({1: None, 2: None})
    assert set(w.positions) == {1, 2}
    assert w.local(NOW) == {1: NOW - 40, 2: NOW}


def live(at: float) -> Watermark:
    return Watermark(at, NOW)


def test_the_sweep_bound_is_the_lowest_watermark_of_every_partition() -> None:
    shared = {0: live(NOW - 5), 1: live(NOW - 700), 2: live(NOW)}
    # this worker's own fresh values replace its stale published ones
    assert sweep_bound(NOW, {1: live(NOW)}, shared, stale_after=300) == SweepBound(NOW - 5)
    assert sweep_bound(NOW, {0: live(NOW)}, shared, stale_after=300) == SweepBound(NOW - 700)
    assert sweep_bound(NOW, {}, {}, stale_after=300) == SweepBound(NOW)
    assert sweep_bound(NOW, {0: live(NOW + 10)}, {}, stale_after=300) == SweepBound(NOW)


def test_a_watermark_not_live_for_longer_than_stale_after_is_left_out() -> None:
    shared = {
        0: Watermark(NOW - 900, NOW - 300),  # live exactly stale_after ago: still counts
        1: Watermark(NOW - 800, NOW - 300.5),  # a dead owner's or stalled partition's
        2: Watermark(NOW - 5, NOW),
    }
    assert sweep_bound(NOW, {}, shared, stale_after=300) == SweepBound(NOW - 900, (1,))
    shared[0] = Watermark(NOW - 900, NOW - 301)
    assert sweep_bound(NOW, {}, shared, stale_after=300) == SweepBound(NOW - 5, (0, 1))


def test_a_watermark_of_a_partition_that_no_longer_exists_is_left_out() -> None:
    shared = {0: live(NOW - 5), 11: live(NOW - 700), 12: live(NOW - 800)}
    assert sweep_bound(NOW, {}, shared, stale_after=300, partitions=12) == SweepBound(
        NOW - 700, (12,)
    )


def test_a_watermark_an_older_release_wrote_counts_as_live() -> None:
    shared = {0: Watermark(NOW - 5000), 1: live(NOW - 5)}
    assert sweep_bound(NOW, {}, shared, stale_after=300) == SweepBound(NOW - 5000)


def test_a_lagging_partition_is_live_while_it_moves_and_stale_once_it_stalls() -> None:
    clock = [NOW - 1000]
    w = Watermarks(highwater={0: 50_000, 1: 0}.get, clock=lambda: clock[0])
    w.assigned({0: 0, 1: None})
    assert w.shared(NOW - 1000) == {
        0: Watermark(0.0, NOW - 1000),
        1: Watermark(NOW - 1000, NOW - 1000),
    }
    clock[0] = NOW - 400
    w.processed({0: 500}, {0: NOW - 7200})
    clock[0] = NOW
    w.processed({0: 500}, {0: NOW - 7100})  # no new offset: not moving
    # caught up is live now; lagging was live when its position last moved
    assert w.shared(NOW) == {0: Watermark(NOW - 7100, NOW - 400), 1: Watermark(NOW, NOW)}
    bound = sweep_bound(NOW, w.shared(NOW), {}, stale_after=300)
    assert bound == SweepBound(NOW, (0,))
    assert sweep_bound(NOW, w.shared(NOW), {}, stale_after=400) == SweepBound(NOW - 7100)


def test_optional_durations_are_switched_off_with_never() -> None:
    from leadpulse.streams.dev.workerproc import worker_command
    from leadpulse.streams.settings import Settings

    settings = Settings(anonymous_ttl="never")
    assert settings.anonymous_ttl is None
    _, env = worker_command(settings)
    assert env["LEADPULSE_ANONYMOUS_TTL"] == "never", "a child worker must not fall back to 90d"
    assert Settings(anonymous_ttl="30d").anonymous_ttl == 30 * 86400
