"""The worker's HTTP routes without a broker: tokens, roles, the hot-leads JSON and page.

Events go through the real scoring agent (`agent.test_context()`, in-memory
store), so the hot-leads index is the one commits write; the routes are
served by the worker's own aiohttp application on an ephemeral 127.0.0.1 port.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer
from yarl import URL

from leadpulse.scoring import ScoringModel, engagement, to_epoch
from leadpulse.streams.http.access import RULES
from leadpulse.streams.http.auth import COOKIE
from leadpulse.streams.pipeline.app import Pipeline
from leadpulse.streams.processes.worker import assemble
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import MemoryLeadStore, decode_state
from tests.component.conftest import T0, Clock, FakePublisher, event, page
from tests.worker_routes import listed_routes, reachable

ADMIN = "tk_component_admin_0123456789"
READ = "tk_component_read_0123456789"
NOW = to_epoch(T0) + 30.0


async def until(condition: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not met")


def bodies() -> list[dict[str, Any]]:
    return [
        event("identify", "lead-hot", traits={"company_size": 300, "email": "a@example.com"}),
        page("https://x.io/pricing", "lead-hot", at=1),
        event("demo_request", "lead-hot", at=2),
        page("https://x.io/pricing", "lead-warm", at=3),
        page("https://x.io/blog", "lead-<b>cool</b>", at=4),
        page("https://x.io/pricing", None, anon="anon-1", at=5),  # a visitor: not listed
    ]


async def scored(settings: Settings, model: ScoringModel) -> tuple[Pipeline, MemoryLeadStore]:
    store = MemoryLeadStore()
    pipeline = assemble(settings, model, store=store, publisher=FakePublisher(), clock=Clock(NOW))
    async with pipeline.agent.test_context() as agent:
        for body in bodies():
            key = (body.get("lead_id") or body["anonymous_id"]).encode()
            await agent.put(json.dumps(body).encode(), key=key)
        await until(lambda: pipeline.totals.scored == len(bodies()))
    return pipeline, store


@contextlib.asynccontextmanager
async def serving(pipeline: Pipeline) -> AsyncIterator[str]:
    """The worker's own aiohttp application on an ephemeral port: its base URL."""
    pipeline.app.web.init_server()
    server = TestServer(pipeline.app.web.web_app, host="127.0.0.1")  # type: ignore[attr-defined]
    await server.start_server()
    try:
        yield str(server.make_url(""))
    finally:
        await server.close()


SETTINGS = Settings(
    broker="kafka://127.0.0.1:9",
    web_port=6066,
    batch_within=0.01,
    api_tokens=f"ops={ADMIN}:admin,viewer={READ}:read",
)


@pytest.fixture
async def worker(model: ScoringModel) -> AsyncIterator[tuple[Pipeline, str, MemoryLeadStore]]:
    pipeline, store = await scored(SETTINGS, model)
    async with serving(pipeline) as url:
        yield pipeline, url, store


@pytest.fixture
def served(worker: tuple[Pipeline, str, MemoryLeadStore]) -> tuple[str, MemoryLeadStore]:
    _, url, store = worker
    return url, store


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


OPEN = ("/health", "/metrics")
API = ("/stats", "/leads/lead-hot", "/hot", "/handoffs/recent")
PAGES = ("/ui", "/ui/leads/lead-hot", "/ui/hot.js", "/ui/handoffs/stream")


async def test_every_route_but_health_and_metrics_needs_a_token(
    served: tuple[str, MemoryLeadStore],
) -> None:
    url, _ = served
    async with ClientSession() as http:
        for path in OPEN:
            async with http.get(url + path) as reply:
                assert reply.status == 200, path
        for path in API:
            for headers in ({}, auth("tk_not_a_token_0123456789")):
                async with http.get(url + path, headers=headers) as reply:
                    assert reply.status == 401, path
                    assert reply.headers["WWW-Authenticate"].startswith("Bearer")
                    body = await reply.json()
                    assert body["code"] == "unauthorized", body
                    assert set(body) == {"code", "message"}
        for path in PAGES:
            async with http.get(url + path) as reply:
                assert reply.status == 401, path
                assert reply.content_type == "text/html"
                text = await reply.text()
                assert 'name="token"' in text
                assert "<script" not in text
        for path in API:
            async with http.get(url + path, headers=auth(READ)) as reply:
                assert reply.status == 200, path


async def test_no_configured_token_refuses_all_but_health_and_metrics(
    model: ScoringModel, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(broker="kafka://127.0.0.1:9", web_port=6066, batch_within=0.01)
    with caplog.at_level(logging.WARNING, logger="leadpulse"):
        pipeline, _ = await scored(settings, model)
    assert any("LEADPULSE_API_TOKENS" in r.getMessage() for r in caplog.records)
    async with serving(pipeline) as url, ClientSession() as http:
        async with http.get(url + "/leads/lead-hot", headers=auth(ADMIN)) as reply:
            assert reply.status == 401
            body = await reply.json()
            assert body["code"] == "no_tokens_configured"
            assert "LEADPULSE_API_TOKENS" in body["message"]
        async with http.get(url + "/health") as reply:
            assert reply.status == 200


async def test_read_sees_display_traits_admin_may_see_all(
    served: tuple[str, MemoryLeadStore], model: ScoringModel
) -> None:
    url, _ = served
    assert model.profile_traits == ("company_size",)
    async with ClientSession() as http:
        async with http.get(url + "/leads/lead-hot", headers=auth(READ)) as reply:
            view = await reply.json()
        assert view["traits"] == {"company_size": 300}
        async with http.get(url + "/leads/lead-hot?traits=all", headers=auth(READ)) as reply:
            assert reply.status == 403
            assert (await reply.json())["code"] == "forbidden"
        async with http.get(url + "/leads/lead-hot?traits=all", headers=auth(ADMIN)) as reply:
            assert reply.status == 200
            view = await reply.json()
        assert view["traits"] == {"company_size": 300, "email": "a@example.com"}


async def test_hot_json_lists_known_leads_by_engagement_now(
    served: tuple[str, MemoryLeadStore], model: ScoringModel
) -> None:
    url, store = served
    async with ClientSession() as http, http.get(url + "/hot", headers=auth(READ)) as reply:
        hot = await reply.json()
    leads = [row["lead_id"] for row in hot["leads"]]
    assert leads == ["lead-hot", "lead-warm", "lead-<b>cool</b>"]  # no anonymous visitor
    assert hot["at"] == NOW
    for row in hot["leads"]:
        blob = store.states[row["lead_id"]][1]
        assert row["engagement"] == engagement(decode_state(blob), NOW, model)
    assert (hot["leads"][0]["grade"], hot["leads"][0]["stage"]) == ("A", "sal")


async def test_a_token_in_the_url_signs_in_with_a_strict_cookie(
    served: tuple[str, MemoryLeadStore],
) -> None:
    url, _ = served
    # unsafe: aiohttp's jar keeps no cookie of an IP address (here 127.0.0.1) otherwise
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        async with http.get(url + f"/ui?limit=2&token={READ}", allow_redirects=False) as reply:
            assert reply.status == 303
            assert reply.headers["Location"] == "/ui?limit=2"
            cookie = reply.headers["Set-Cookie"]
        assert cookie.startswith(f"{COOKIE}={READ};")
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        async with http.get(url + "/ui?limit=2") as reply:  # the session kept the cookie
            assert reply.status == 200
            csp = reply.headers["Content-Security-Policy"]
            text = await reply.text()
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert text.count('<tr data-lead-id="') == 2
        assert 'data-lead-id="lead-hot"' in text
        assert "lead-&lt;b&gt;cool&lt;/b&gt;" not in text  # third: beyond limit=2
        async with http.get(url + "/ui/hot.js") as reply:
            assert reply.status == 200
            assert reply.content_type == "text/javascript"
            assert "EventSource" in await reply.text()
    async with ClientSession(cookie_jar=CookieJar(unsafe=True)) as http:
        odd = "/ui/leads/" + quote("a&b'<c>", safe="")
        login = URL(f"{url}{odd}?token={READ}", encoded=True)  # as sent, like a browser
        async with http.get(login, allow_redirects=False) as reply:
            assert reply.headers["Location"] == odd  # still encoded
        async with http.get(url + odd) as reply:
            assert reply.status == 404  # signed in; no such lead
    async with (
        ClientSession() as http,
        http.get(url + "/ui?token=tk_wrong_0123456789abc", allow_redirects=False) as reply,
    ):
        assert reply.status == 401
        assert "Set-Cookie" not in reply.headers


ROUTES = {
    "/health",
    "/health/detail",
    "/ready",
    "/metrics",
    "/stats",
    "/leads/{lead_id}",
    "/hot",
    "/handoffs/recent",
    "/ui",
    "/ui/leads/{lead_id}",
    "/ui/hot.js",
    "/ui/handoffs/stream",
    "/",  # Faust's index: the one route of its own it still adds
}
"""Every route the worker serves; a new one must be added here and to the access rules."""
OPEN_ROUTES = {"/health", "/ready", "/metrics"}


async def test_every_listed_route_but_the_probes_refuses_a_request_without_a_token(
    worker: tuple[Pipeline, str, MemoryLeadStore],
) -> None:
    pipeline, url, _ = worker
    routes = listed_routes(pipeline.app.web.web_app)  # type: ignore[attr-defined]
    assert {pattern for _, pattern in routes} == ROUTES
    assert set(RULES) == ROUTES - {"/"}  # Faust's index has no rule: admin only
    assert {method for method, _ in routes} == {"GET", "HEAD"}
    async with ClientSession() as http:
        for method, pattern in routes:
            path = reachable(pattern)
            for headers in ({}, auth("tk_not_a_token_0123456789")):
                async with http.request(method, url + path, headers=headers) as reply:
                    if pattern in OPEN_ROUTES:
                        assert reply.status in (200, 503), (method, path)  # /ready: no broker
                        continue
                    assert reply.status == 401, (method, path)
                    assert reply.headers["WWW-Authenticate"] == 'Bearer realm="leadpulse"'
                    if method == "HEAD":
                        continue
                    if pattern.startswith("/ui"):  # a page: the sign-in form
                        assert reply.content_type == "text/html", path
                        assert 'name="token"' in await reply.text()
                    else:
                        assert reply.content_type == "application/json", path
                        assert (await reply.json())["code"] == "unauthorized"


async def test_faust_s_own_routes_are_off_or_admin_only(
    served: tuple[str, MemoryLeadStore],
) -> None:
    url, _ = served
    async with ClientSession() as http:
        for path in ("/router/", "/table/", "/graph/", "/stats/", "/performance/", "/nope"):
            async with http.get(url + path) as reply:
                assert reply.status == 401, path  # no token: not even told it is not found
            async with http.get(url + path, headers=auth(ADMIN)) as reply:
                assert reply.status == 404, path
        async with http.get(url + "/", headers=auth(READ)) as reply:
            assert reply.status == 403
            assert (await reply.json())["code"] == "forbidden"
        async with http.get(url + "/", headers=auth(ADMIN)) as reply:
            assert reply.status == 200
        async with http.post(url + "/health") as reply:  # a method no route has
            assert reply.status == 401
        async with http.post(url + "/health", headers=auth(READ)) as reply:
            assert reply.status == 405


SECRET_FIELD = "sk_live_51HxQ7Jc2eZvKYlo2C8PQ"
ROTTEN = "lead-rotten-7f3a"


async def test_open_health_names_what_failed_and_the_token_sees_the_details(
    model: ScoringModel,
) -> None:
    store = MemoryLeadStore()
    store.states[ROTTEN] = (1, b'{"lead_id": "lead-rotten-7f3a", "stage": "no-such-stage"')
    pipeline = assemble(SETTINGS, model, store=store, publisher=FakePublisher(), clock=Clock(NOW))
    leaky = {**event("identify", "lead-leaky"), SECRET_FIELD: "x"}  # named in the reason
    async with (
        serving(pipeline) as url,
        ClientSession() as http,
        pipeline.agent.test_context() as agent,
    ):

        async def bodies() -> tuple[str, str]:
            async with http.get(url + "/health") as reply:
                assert reply.status == 200
                open_body = await reply.text()
            async with http.get(url + "/health/detail", headers=auth(ADMIN)) as reply:
                assert reply.status == 200
                return open_body, await reply.text()

        await agent.put(json.dumps(leaky).encode(), key=b"lead-leaky")
        await until(lambda: pipeline.health.dead_lettered == 1)
        open_body, detail = await bodies()
        assert json.loads(open_body)["last_dead_letter"] == {"kind": "decode", "at": NOW}
        assert json.loads(open_body)["dead_lettered"] == 1
        assert SECRET_FIELD not in open_body
        assert SECRET_FIELD in json.loads(detail)["last_dead_letter"]["reason"]

        await agent.put(json.dumps(page("https://x.io/", ROTTEN)).encode(), key=ROTTEN.encode())
        await until(lambda: pipeline.health.dead_lettered == 2)
        open_body, detail = await bodies()
        assert json.loads(open_body)["last_dead_letter"] == {"kind": "corrupt_state", "at": NOW}
        assert ROTTEN not in open_body
        assert '"offset"' not in open_body
        assert '"partition"' not in open_body
        letter = json.loads(detail)["last_dead_letter"]
        assert letter["lead_id"] == ROTTEN
        assert ROTTEN in letter["reason"]
        assert isinstance(letter["offset"], int)

        async with http.get(url + "/health/detail") as reply:
            assert reply.status == 401
        async with http.get(url + "/health/detail", headers=auth(READ)) as reply:
            assert reply.status == 403
