"""The worker's HTTP routes without a broker: tokens, sessions, roles, the hot-leads JSON and page.

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
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer
from yarl import URL

from leadpulse.scoring import ScoringModel, engagement, to_epoch
from leadpulse.streams.http.access import RULES
from leadpulse.streams.http.sessions import COOKIE
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


def session_of(set_cookie: str) -> str:
    """The session cookie's value in a Set-Cookie header."""
    name, _, rest = set_cookie.partition("=")
    assert name == COOKIE, set_cookie
    return rest.partition(";")[0]


def with_session(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE}={value}"}


async def test_a_token_in_the_url_is_exchanged_once_for_a_session_cookie(
    served: tuple[str, MemoryLeadStore],
) -> None:
    url, _ = served
    async with ClientSession() as http:
        async with http.get(url + f"/ui?limit=2&token={READ}", allow_redirects=False) as reply:
            assert reply.status == 303
            assert reply.headers["Location"] == "/ui?limit=2"
            cookie = reply.headers["Set-Cookie"]
        session = session_of(cookie)
        assert READ not in cookie  # the cookie is not the token
        assert session.startswith(f"{session.split('.')[0]}.{int(NOW) + 8 * 3600}.viewer.read.")
        assert cookie.endswith("; Max-Age=28800; Path=/; HttpOnly; SameSite=Strict; Secure")
        async with http.get(url + "/ui?limit=2", headers=with_session(session)) as reply:
            assert reply.status == 200
            csp = reply.headers["Content-Security-Policy"]
            text = await reply.text()
        assert "script-src 'self'" in csp
        assert "default-src 'none'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "form-action 'self'" in csp
        assert text.count('<tr data-lead-id="') == 2
        assert 'data-lead-id="lead-hot"' in text
        assert "lead-&lt;b&gt;cool&lt;/b&gt;" not in text  # third: beyond limit=2
        assert '<form id="sign-out" method="post" action="/ui/sign-out">' in text
        async with http.get(url + "/ui/hot.js", headers=with_session(session)) as reply:
            assert reply.status == 200
            assert reply.content_type == "text/javascript"
            assert "EventSource" in await reply.text()
        async with http.get(url + "/hot", headers=with_session(session)) as reply:
            assert reply.status == 200  # the page's script reads the API with it
        async with http.get(url + "/leads/lead-hot?traits=all", headers=with_session(session)) as r:
            assert r.status == 403  # a read token's session is read only
        async with http.get(url + "/ui/leads/lead-hot", headers=with_session(session)) as reply:
            assert reply.status == 200
            assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
            assert 'action="/ui/sign-out"' in await reply.text()
        async with http.get(url + "/ui/leads/lead-hot", headers=auth(READ)) as reply:
            assert reply.status == 200
            text = await reply.text()
        assert 'action="/ui/sign-out"' not in text  # a bearer token has no session to end
        odd = "/ui/leads/" + quote("a&b'<c>", safe="")
        login = URL(f"{url}{odd}?token={READ}", encoded=True)  # as sent, like a browser
        async with http.get(login, allow_redirects=False) as reply:
            assert reply.headers["Location"] == odd  # still encoded
            odd_session = session_of(reply.headers["Set-Cookie"])
        async with http.get(url + odd, headers=with_session(odd_session)) as reply:
            assert reply.status == 404  # signed in; no such lead
        async with http.get(url + "/ui?token=tk_wrong_0123456789abc", allow_redirects=False) as r:
            assert r.status == 401
            assert "Set-Cookie" not in r.headers
            assert 'name="token"' in await r.text()


async def test_the_sign_in_form_posts_and_stays_on_the_site(
    served: tuple[str, MemoryLeadStore],
) -> None:
    url, _ = served
    async with ClientSession() as http:
        form = {"token": ADMIN, "next": "/ui/leads/lead-hot?traits=all"}
        async with http.post(url + "/ui/sign-in", data=form, allow_redirects=False) as reply:
            assert reply.status == 303
            assert reply.headers["Location"] == "/ui/leads/lead-hot?traits=all"
            cookie = reply.headers["Set-Cookie"]
        assert ADMIN not in cookie
        async with http.get(
            url + "/leads/lead-hot?traits=all", headers=with_session(session_of(cookie))
        ) as r:
            assert r.status == 200  # an admin token's session is admin
        async with http.post(url + "/ui/sign-in", data={"token": READ}, allow_redirects=False) as r:
            assert (r.status, r.headers["Location"]) == (303, "/ui")  # no next: the hot page
        for elsewhere in (
            "//evil.example/ui",
            "https://evil.example/",
            "/\\evil.example",
            "ui",
            "javascript:alert(1)",
        ):
            form = {"token": READ, "next": elsewhere}
            async with http.post(url + "/ui/sign-in", data=form, allow_redirects=False) as reply:
                assert reply.status == 303, elsewhere
                assert reply.headers["Location"] == "/ui", elsewhere  # never off the site
        form = {"token": "tk_wrong_0123456789abcdef", "next": "/ui/leads/lead-hot"}
        async with http.post(url + "/ui/sign-in", data=form, allow_redirects=False) as reply:
            assert reply.status == 401
            assert "Set-Cookie" not in reply.headers
            text = await reply.text()
        assert "the API token is not valid" in text
        assert '<form method="post" action="/ui/sign-in">' in text
        assert 'name="next" value="/ui/leads/lead-hot"' in text
        assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
        cross = {"Sec-Fetch-Site": "cross-site"}
        async with http.post(
            url + "/ui/sign-in", data={"token": READ}, headers=cross, allow_redirects=False
        ) as reply:
            assert reply.status == 403  # another site may not sign a browser in
            assert "Set-Cookie" not in reply.headers
        big = {"token": READ, "next": "/ui", "padding": "x" * 9000}
        async with http.post(url + "/ui/sign-in", data=big, allow_redirects=False) as reply:
            assert reply.status == 413
        async with http.get(url + "/ui/sign-in") as reply:
            assert reply.status == 401  # POST only; a GET is an unknown path


async def test_sign_out_drops_the_cookie(served: tuple[str, MemoryLeadStore]) -> None:
    url, _ = served
    async with ClientSession() as http:
        async with http.post(url + "/ui/sign-out", allow_redirects=False) as reply:
            assert reply.status == 303
            assert reply.headers["Location"] == "/ui"
            assert reply.headers["Set-Cookie"] == (
                f"{COOKIE}=; Max-Age=0; Path=/; HttpOnly; SameSite=Strict; Secure"
            )
        cross = {"Sec-Fetch-Site": "cross-site"}
        async with http.post(url + "/ui/sign-out", headers=cross, allow_redirects=False) as r:
            assert r.status == 403


async def test_a_raw_token_or_a_forged_session_in_a_cookie_is_refused(
    served: tuple[str, MemoryLeadStore],
) -> None:
    url, _ = served
    async with ClientSession() as http:
        async with http.get(url + f"/ui?token={ADMIN}", allow_redirects=False) as reply:
            good = session_of(reply.headers["Set-Cookie"])
        sid, expires, name, role, mac = good.split(".")
        for cookie in (
            f"{COOKIE}={READ}",
            f"{COOKIE}={ADMIN}",
            f"leadpulse_token={ADMIN}",  # the old cookie: a token is never taken from one
            f"{COOKIE}={sid}.{int(expires) + 3600}.{name}.{role}.{mac}",
            f"{COOKIE}={sid}.{expires}.viewer.{role}.{mac}",
        ):
            async with http.get(url + "/ui", headers={"Cookie": cookie}) as reply:
                assert reply.status == 401, cookie
                assert 'name="token"' in await reply.text()
            async with http.get(url + "/hot", headers={"Cookie": cookie}) as reply:
                assert reply.status == 401, cookie
                assert (await reply.json())["code"] == "unauthorized"
        async with http.get(url + "/hot", headers=with_session(good)) as reply:
            assert reply.status == 200


async def test_an_expired_session_gets_the_sign_in_page(model: ScoringModel) -> None:
    clock = Clock(NOW)
    settings = SETTINGS.replace(session_ttl=2)
    pipeline = assemble(
        settings, model, store=MemoryLeadStore(), publisher=FakePublisher(), clock=clock
    )
    async with serving(pipeline) as url, ClientSession() as http:
        async with http.get(url + f"/ui?token={READ}", allow_redirects=False) as reply:
            cookie = reply.headers["Set-Cookie"]
        assert "Max-Age=2;" in cookie
        session = with_session(session_of(cookie))
        clock.now = NOW + 1.999
        async with http.get(url + "/ui", headers=session) as reply:
            assert reply.status == 200
        clock.now = NOW + 2  # its expiry second
        async with http.get(url + "/ui", headers=session) as reply:
            assert reply.status == 401
            assert reply.headers["Set-Cookie"].startswith(f"{COOKIE}=; Max-Age=0;")
            text = await reply.text()
        assert "the session has expired" in text
        assert 'name="token"' in text
        async with http.get(url + "/hot", headers=session) as reply:
            assert reply.status == 401
            assert (await reply.json())["code"] == "session_expired"


async def test_failed_sign_ins_are_bounded_per_client(model: ScoringModel) -> None:
    clock = Clock(NOW)
    settings = SETTINGS.replace(sign_in_max_failures=3, sign_in_window=60)
    pipeline = assemble(
        settings, model, store=MemoryLeadStore(), publisher=FakePublisher(), clock=clock
    )
    wrong = {"token": "tk_wrong_0123456789abcdef"}
    async with serving(pipeline) as url, ClientSession() as http:
        for _ in range(2):
            async with http.post(url + "/ui/sign-in", data=wrong) as reply:
                assert reply.status == 401
        async with http.get(url + "/ui?token=tk_wrong_0123456789abc", allow_redirects=False) as r:
            assert r.status == 401  # a bad link counts too: the third failure
        clock.now = NOW + 15
        for attempt in ({"token": READ}, wrong):  # over the limit, even a good token waits
            async with http.post(url + "/ui/sign-in", data=attempt, allow_redirects=False) as r:
                assert r.status == 429
                assert r.headers["Retry-After"] == "45"
                assert "Set-Cookie" not in r.headers
                assert "try again in 45 s" in await r.text()
        async with http.get(url + f"/ui?token={READ}", allow_redirects=False) as reply:
            assert reply.status == 429
        async with http.get(url + "/hot", headers=auth(READ)) as reply:
            assert reply.status == 200  # the API's bearer tokens are not sign-ins
        clock.now = NOW + 60  # the window is over
        async with http.post(url + "/ui/sign-in", data={"token": READ}, allow_redirects=False) as r:
            assert r.status == 303


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
    "/ui/sign-in",
    "/ui/sign-out",
    "/",  # Faust's index: the one route of its own it still adds
}
"""Every route the worker serves; a new one must be added here and to the access rules."""
OPEN_ROUTES = {"/health", "/ready", "/metrics"}
SIGN_IN_ROUTES = {"/ui/sign-in", "/ui/sign-out"}
"""Open to anyone, POST only: they take a token (bounded) or end a session."""


async def test_every_listed_route_but_the_probes_refuses_a_request_without_a_token(
    worker: tuple[Pipeline, str, MemoryLeadStore],
) -> None:
    pipeline, url, _ = worker
    routes = listed_routes(pipeline.app.web.web_app)  # type: ignore[attr-defined]
    assert {pattern for _, pattern in routes} == ROUTES
    assert set(RULES) == ROUTES - {"/"}  # Faust's index has no rule: admin only
    assert {method for method, pattern in routes if pattern not in SIGN_IN_ROUTES} == {
        "GET",
        "HEAD",
    }
    assert {(m, p) for m, p in routes if p in SIGN_IN_ROUTES} == {
        ("POST", p) for p in SIGN_IN_ROUTES
    }
    async with ClientSession() as http:
        for method, pattern in routes:
            if pattern in SIGN_IN_ROUTES:
                continue  # their own test: test_the_sign_in_form_posts_and_stays_on_the_site
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
