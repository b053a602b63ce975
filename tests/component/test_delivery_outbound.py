"""One outbound POST against a real local aiohttp server: redirects, bounds, timeouts, refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from leadpulse.streams.delivery.outbound import (
    MAX_BODY_BYTES,
    MAX_RESPONSE_BYTES,
    new_session,
    post,
)
from leadpulse.streams.dev.devstack import free_port

LOCAL = frozenset({"127.0.0.1"})


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[str]]]:
    seen: list[str] = []

    async def record(request: web.Request) -> None:
        await request.read()
        seen.append(request.path)

    async def moved(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=302, headers={"Location": "/target"})

    async def target(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="followed")

    async def big(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(body=b"x" * (4 * MAX_RESPONSE_BYTES))

    async def slow(request: web.Request) -> web.Response:
        await record(request)
        await asyncio.sleep(2)
        return web.Response(text="late")

    async def busy(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(status=503, headers={"Retry-After": "7"})

    app = web.Application()
    for path, handler in (
        ("/moved", moved),
        ("/target", target),
        ("/big", big),
        ("/slow", slow),
        ("/busy", busy),
    ):
        app.router.add_post(path, handler)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_redirect_is_a_failure_and_is_not_followed(server: tuple[str, list[str]]) -> None:
    base, seen = server
    async with new_session(LOCAL, 4) as session:
        answer = await post(session, f"{base}/moved", b"{}", {}, 5)
    assert answer.status == 302
    assert not answer.ok
    assert answer.outcome == "3xx"
    assert "redirects are not followed" in answer.error
    assert seen == ["/moved"]


async def test_at_most_64_kib_of_an_answer_is_read(server: tuple[str, list[str]]) -> None:
    base, _ = server
    async with new_session(LOCAL, 4) as session:
        answer = await post(session, f"{base}/big", b"{}", {}, 5)
    assert answer.ok
    assert len(answer.body) == MAX_RESPONSE_BYTES


async def test_a_body_over_the_limit_is_never_sent(server: tuple[str, list[str]]) -> None:
    base, seen = server
    async with new_session(LOCAL, 4) as session:
        answer = await post(session, f"{base}/target", b"x" * (MAX_BODY_BYTES + 1), {}, 5)
    assert answer.status is None
    assert answer.outcome == "refused"
    assert seen == []


async def test_a_timeout_is_a_failure_without_status(server: tuple[str, list[str]]) -> None:
    base, _ = server
    async with new_session(LOCAL, 4) as session:
        answer = await post(session, f"{base}/slow", b"{}", {}, 0.3)
    assert answer.status is None
    assert answer.outcome == "timeout"
    assert 0.25 < answer.seconds < 1.5


async def test_503_retry_after_is_read(server: tuple[str, list[str]]) -> None:
    base, _ = server
    async with new_session(LOCAL, 4) as session:
        answer = await post(session, f"{base}/busy", b"{}", {}, 5)
    assert (answer.status, answer.retry_after, answer.outcome) == (503, 7, "5xx")


async def test_a_listed_name_that_resolves_to_loopback_is_refused(
    server: tuple[str, list[str]],
) -> None:
    """`localhost` is in allow_hosts, its addresses are not: no request is made."""
    base, seen = server
    url = base.replace("127.0.0.1", "localhost") + "/target"
    async with new_session(frozenset({"localhost"}), 4) as session:
        answer = await post(session, url, b"{}", {}, 5)
    assert answer.status is None
    assert answer.outcome == "refused", answer.error
    assert "(loopback, not globally routable); refused unless" in answer.error
    assert answer.permanent
    assert seen == []
    async with new_session(frozenset({"localhost", "127.0.0.1", "::1"}), 4) as session:
        answer = await post(session, url, b"{}", {}, 5)
    assert answer.ok
    assert seen == ["/target"]


async def test_an_error_that_carries_the_url_shows_only_its_origin() -> None:
    """aiohttp's InvalidUrlClientError quotes the whole URL; the answer keeps the origin."""
    url = "http://127.0.0.1:99999/services/T000/B000/XXXXSECRET?token=abc"
    async with new_session(LOCAL, 1) as session:
        answer = await post(session, url, b"{}", {}, 5)
    assert answer.error == "InvalidUrlClientError: http://127.0.0.1:99999/…"
