"""Watermarks bound the sweeper in event time (issue 8, defect 2)."""

from __future__ import annotations

from streams.pipeline.watermarks import Watermarks, sweep_bound

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


def test_the_sweep_bound_is_the_lowest_watermark_of_every_partition() -> None:
    shared = {0: NOW - 5, 1: NOW - 700, 2: NOW}
    # this worker's own fresh values replace its stale published ones
    assert sweep_bound(NOW, {1: NOW}, shared) == NOW - 5
    assert sweep_bound(NOW, {0: NOW}, shared) == NOW - 700
    assert sweep_bound(NOW, {}, {}) == NOW
    assert sweep_bound(NOW, {0: NOW + 10}, {}) == NOW


def test_optional_durations_are_switched_off_with_never() -> None:
    from streams.dev.workerproc import worker_command
    from streams.settings import Settings

    settings = Settings(anonymous_ttl="never")
    assert settings.anonymous_ttl is None
    _, env = worker_command(settings)
    assert env["LEADPULSE_ANONYMOUS_TTL"] == "never", "a child worker must not fall back to 90d"
    assert Settings(anonymous_ttl="30d").anonymous_ttl == 30 * 86400
