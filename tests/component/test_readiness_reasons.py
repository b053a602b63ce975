"""The open /ready says which dependency failed and how, never the error's text."""

from __future__ import annotations

import asyncio

from leadpulse.streams.observability.health import failure_of

SECRET = "s3cret-pass"


async def refused() -> None:
    raise ConnectionError(f"Error connecting to redis://:{SECRET}@10.0.0.7:6379: refused")


async def never() -> None:
    await asyncio.sleep(3600)


async def answers() -> None:
    return None


async def test_a_failed_check_is_named_by_its_exception_type_only() -> None:
    assert await failure_of(refused(), 2.0) == "ConnectionError"


async def test_a_check_that_does_not_answer_is_a_timeout() -> None:
    assert await failure_of(never(), 0.01) == "no answer in 0s"


async def test_a_check_that_answers_is_no_failure() -> None:
    assert await failure_of(answers(), 2.0) is None
