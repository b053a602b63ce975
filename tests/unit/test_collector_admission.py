"""The collector's admission rules on their own: token buckets, requests in flight, settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from leadpulse.streams.collector.admission import InFlight, RateLimits, TokenBucket
from leadpulse.streams.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_serves_its_burst_then_one_token_per_interval() -> None:
    bucket = TokenBucket(rate=0.5, burst=2, tokens=2.0, updated=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 2.0  # empty: a token every 2 s
    assert bucket.take(1.0) == 1.0  # half a token back
    assert bucket.take(2.0) == 0.0  # exactly one token back: taken
    assert bucket.take(2.0) == 2.0


def test_a_bucket_saves_up_no_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=1.0, burst=3, tokens=0.0, updated=0.0)
    assert bucket.take(1000.0) == 0.0
    assert bucket.tokens == 2.0


def test_retry_after_is_the_bucket_wait_rounded_up_to_whole_seconds() -> None:
    clock = Clock()
    limits = RateLimits(rate=0.25, burst=1, clock=clock)
    assert limits.retry_after("website") is None
    assert limits.retry_after("website") == 4  # 1 token / 0.25 per second
    clock.now += 1.0
    assert limits.retry_after("website") == 3
    clock.now += 2.5
    assert limits.retry_after("website") == 1  # 0.5 s left: rounded up, never 0
    clock.now += 0.5
    assert limits.retry_after("website") is None  # exactly when the token is back
    assert limits.retry_after("website") == 4


def test_a_fraction_of_a_second_is_one_second() -> None:
    limits = RateLimits(rate=3.0, burst=1, clock=Clock())
    assert limits.retry_after("crm") is None
    assert limits.retry_after("crm") == 1  # a third of a second


def test_each_sender_has_its_own_bucket() -> None:
    limits = RateLimits(rate=1.0, burst=1, clock=Clock())
    assert limits.retry_after("website") is None
    assert limits.retry_after("website") == 1
    assert limits.retry_after("crm") is None


def test_in_flight_takes_exactly_its_limit() -> None:
    gate = InFlight(2)
    assert gate.enter()
    assert gate.enter()
    assert not gate.enter()
    gate.leave()
    assert gate.enter()
    assert gate.count == 2


@pytest.mark.parametrize(
    ("rate", "burst", "expected"),
    [("10", None, 10), ("2.5", None, 3), ("0.5", None, 1), ("10", "40", 40), (None, None, 1)],
)
def test_the_burst_defaults_to_one_seconds_worth(
    rate: str | None, burst: str | None, expected: int
) -> None:
    settings = Settings(collector_rate=rate, collector_rate_burst=burst)
    assert settings.collector_burst == expected


@pytest.mark.parametrize("off", ["off", "none", "", " Off "])
def test_rate_and_metrics_port_switch_off(off: str) -> None:
    settings = Settings(collector_rate=off, collector_metrics_port=off)
    assert settings.collector_rate is None
    assert settings.collector_metrics_address is None


def test_the_collector_defaults() -> None:
    settings = Settings()
    assert settings.collector_rate is None
    assert settings.collector_max_in_flight == 256
    assert settings.collector_unavailable_after == 1.0
    assert settings.collector_metrics_address == ("127.0.0.1", 9108)
    everywhere = Settings(collector_host="0.0.0.0")
    assert everywhere.collector_metrics_address == ("0.0.0.0", 9108)
    moved = Settings(collector_metrics_host="10.0.0.5", collector_metrics_port="9200")
    assert moved.collector_metrics_address == ("10.0.0.5", 9200)


def test_the_metrics_port_must_not_be_the_ingest_port() -> None:
    with pytest.raises(ValidationError, match="must differ from LEADPULSE_COLLECTOR_PORT"):
        Settings(collector_port=9000, collector_metrics_port=9000)


def test_unavailable_after_takes_a_duration() -> None:
    assert Settings(collector_unavailable_after="2s").collector_unavailable_after == 2.0
    assert Settings(collector_unavailable_after="0.25").collector_unavailable_after == 0.25
