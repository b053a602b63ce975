"""The hot-leads page in headless Chromium, and the API's tokens, on the embedded stack.

A real worker scores the leads' events from Kafka; Chromium (Debian's,
driven by playwright) signs in with ``/ui?token=`` (exchanged for a session
cookie), sees the leads in the hot table, and -- with the page open -- one
more event tips a lead into a handoff: the time from sending that event to
the handoff's row being visible on the page is measured (the issue wants it
within a second, handoff latency included). It also signs in by the form and
out again, and sees an expired session send the open page to the sign-in
page. Screenshots go to ``tests/browser/artifacts/`` (gitignored) and are
checked not to be blank.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from leadpulse.scoring import engagement, explain, fit_points, grade, load_model
from leadpulse.streams.http.hotpage import REFRESH
from leadpulse.streams.settings import Settings
from leadpulse.streams.store.redis import keys
from tests.browser.analytics_js import CHROMIUM, CHROMIUM_ARGS
from tests.browser.demo_traffic import DEMO_MODEL_FILE, demo_bodies, known_leads
from tests.browser.test_lead_page import applied, png_pixels, pytestmark  # noqa: F401
from tests.integration.harness import (
    ADMIN_TOKEN,
    READ_TOKEN,
    produce,
    read_state,
    running_worker,
    wait_for,
    worker_settings,
)

ARTIFACTS = Path(__file__).parent / "artifacts"
HANDOFF_WITHIN = 1.0
"""Seconds from sending the tipping event to its handoff on the page (issue 11)."""
RUN = uuid.uuid4().hex[:6]
TIPPING = f"hot-tip-{RUN}"
WARM = f"hot-warm-{RUN}"
COOL = f"hot-cool-{RUN}"


@pytest.fixture(scope="module")
def worker(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    workdir = tmp_path_factory.mktemp("hotpage")
    settings = worker_settings(stack, workdir, partitions=2)
    with running_worker(settings, workdir / "worker.log"):
        yield settings


@pytest.fixture(scope="module")
def demo_worker(stack: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A worker with the demo's model (one day of half-life is one second)."""
    workdir = tmp_path_factory.mktemp("hotdemo")
    settings = worker_settings(stack, workdir, partitions=2).replace(model_file=DEMO_MODEL_FILE)
    with running_worker(settings, workdir / "worker.log"):
        yield settings


def body(lead: str, index: int, kind: str, at: datetime, **fields: Any) -> dict[str, Any]:
    return {
        "event_id": f"{lead}-{index}",
        "type": kind,
        "lead_id": lead,
        "occurred_at": at.isoformat(),
        "properties": fields.get("properties", {}),
        "traits": fields.get("traits", {}),
    }


def warm_up(now: datetime) -> list[dict[str, Any]]:
    """Three known leads; TIPPING ends as an A-grade MQL one demo request short of a handoff."""
    pricing = {"url": "https://example.com/pricing"}
    hour = timedelta(hours=1)
    return [
        body(TIPPING, 0, "identify", now - 3 * hour, traits={"company_size": 300}),
        body(TIPPING, 1, "page_view", now - 3 * hour, properties=pricing),
        body(TIPPING, 2, "page_view", now - 2 * hour, properties=pricing),
        body(TIPPING, 3, "form_submit", now - hour),
        body(WARM, 0, "page_view", now - 2 * hour, properties=pricing),
        body(WARM, 1, "page_view", now - hour, properties={"url": "https://example.com/blog"}),
        body(COOL, 0, "page_view", now - hour, properties={"url": "https://example.com/blog"}),
    ]


def status_of(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_api_and_the_page_need_a_token_but_health_and_metrics_do_not(
    worker: Settings,
) -> None:
    base = f"http://127.0.0.1:{worker.web_port}"
    for path in ("/ui", "/ui/leads/anyone", "/leads/anyone", "/stats", "/hot", "/ui/hot.js"):
        assert status_of(base + path) == 401, path
        assert status_of(base + path, "tk_not_one_of_ours_0123456") == 401, path
    for path in ("/health", "/metrics"):
        assert status_of(base + path) == 200, path
    for path in ("/leads/anyone", "/stats", "/hot", "/handoffs/recent"):
        assert status_of(base + path, READ_TOKEN) == 200, path
    # all traits, not just the displayed ones, are for admins
    assert status_of(base + "/leads/anyone?traits=all", READ_TOKEN) == 403
    assert status_of(base + "/leads/anyone?traits=all", ADMIN_TOKEN) == 200
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(base + "/stats", timeout=5)
    answer = json.loads(caught.value.read())
    assert answer["code"] == "unauthorized"
    assert "Bearer" in answer["message"]


async def watch(settings: Settings, shots: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    base = f"http://127.0.0.1:{settings.web_port}"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 800})
            foreign: list[str] = []
            page.on(
                "request",
                lambda r: None if r.url.startswith(base + "/") else foreign.append(r.url),
            )
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            response = await page.goto(f"{base}/ui?token={READ_TOKEN}", wait_until="load")
            assert response is not None
            found: dict[str, Any] = {"status": response.status, "url": page.url}
            found["csp"] = response.headers.get("content-security-policy", "")
            found["at"] = float(await page.eval_on_selector("main#hot-page", "m => m.dataset.at"))
            found["rows"] = await page.eval_on_selector_all(
                "#hot tbody tr[data-lead-id]",
                """rows => rows.map(r => ({
                    lead: r.dataset.leadId,
                    engagement: Number(r.querySelector('.engagement data').value),
                    grade: r.querySelector('.grade').textContent,
                    stage: r.querySelector('.stage').textContent,
                    href: r.querySelector('a').getAttribute('href'),
                }))""",
            )
            # the live stream is open (the reader has its positions) before the tipping event
            await page.wait_for_selector('body[data-live="true"]', timeout=20_000)
            # the tipping event, with the page open: time until its handoff row shows
            now = datetime.now(UTC)
            started = time.monotonic()
            await asyncio.to_thread(produce, settings, [body(TIPPING, 4, "demo_request", now)])
            await page.wait_for_selector(
                f'#handoffs li[data-lead-id="{TIPPING}"]', state="visible", timeout=15_000
            )
            found["handoff_seconds"] = time.monotonic() - started
            # the table follows: the lead is SAL now (refreshed on the handoff)
            await page.wait_for_function(
                """lead => {
                    const row = document.querySelector(`#hot tr[data-lead-id="${lead}"]`);
                    return row && row.querySelector('.stage').textContent === 'SAL';
                }""",
                arg=TIPPING,
                timeout=10_000,
            )
            found["handoff_text"] = await page.text_content(
                f'#handoffs li[data-lead-id="{TIPPING}"]'
            )
            found["model_version"] = await page.text_content("#model-version")  # refreshed
            await page.screenshot(path=str(shots / "hot-leads.png"), full_page=True)
            await page.click(f'#hot tr[data-lead-id="{TIPPING}"] a')
            await page.wait_for_selector("svg #total-curve", state="attached")
            found["lead_page"] = await page.evaluate(
                """() => ({
                  lead: document.querySelector('main#lead').dataset.leadId,
                  at: Number(document.querySelector('main#lead').dataset.at),
                  parts: [...document.querySelectorAll('#breakdown tbody tr[data-rule]')].map(
                    (r) => [r.dataset.rule, Number(r.querySelector('td.points data').value)]),
                  total: Number(document.querySelector('#breakdown .total data').value),
                  model: document.querySelector('#model-version').textContent,
                })"""
            )
            await page.screenshot(path=str(shots / "lead-page.png"), full_page=True)
            found["foreign"] = foreign
            found["errors"] = errors
            return found
        finally:
            await browser.close()


def test_hot_leads_and_a_live_handoff_in_chromium(worker: Settings) -> None:
    settings = worker
    model = load_model(settings.model_file)
    sent = warm_up(datetime.now(UTC))
    produce(settings, sent)
    counts = {TIPPING: 4, WARM: 2, COOL: 1}
    wait_for(
        lambda: all(applied(settings, lead) == n for lead, n in counts.items()),
        timeout=90,
        what="the leads' events applied",
    )
    states = {lead: read_state(settings, lead)[1] for lead in counts}
    before = states[TIPPING]
    assert before is not None
    assert before.stage.value == "mql"  # one event short of a handoff
    ARTIFACTS.mkdir(exist_ok=True)
    found = asyncio.run(watch(settings, ARTIFACTS))
    print(
        f"\nhandoff visible {found['handoff_seconds'] * 1000:.0f} ms after the tipping event "
        f"was sent; screenshots in {ARTIFACTS}"
    )

    assert found["status"] == 200
    assert found["url"].endswith("/ui")  # signed in; the token left the address bar
    assert "script-src 'self'" in found["csp"]
    assert "frame-ancestors 'none'" in found["csp"]
    assert found["foreign"] == []  # nothing from elsewhere: works offline
    assert found["errors"] == []
    # the hot table lists the leads sent, most engaged first, with grade and stage
    rows = {row["lead"]: row for row in found["rows"]}
    assert set(counts) <= set(rows)
    ours = [row["lead"] for row in found["rows"] if row["lead"] in counts]
    assert ours == [TIPPING, WARM, COOL]
    assert (rows[TIPPING]["grade"], rows[TIPPING]["stage"]) == ("A", "MQL")
    assert rows[COOL]["stage"] == "IQL"
    assert rows[TIPPING]["href"] == f"/ui/leads/{TIPPING}"
    for lead, state in states.items():
        assert state is not None
        # the first paint: each lead scored again, exactly, at the moment the page says
        assert rows[lead]["engagement"] == engagement(state, found["at"], model), lead
    # the handoff appeared live, within a second of the event that caused it
    assert TIPPING in found["handoff_text"]
    assert found["handoff_seconds"] < HANDOFF_WITHIN, found["handoff_seconds"]
    # clicked through to the lead's page: its breakdown is explain's, at the page's moment
    lead_page = found["lead_page"]
    assert lead_page["lead"] == TIPPING
    _, after = read_state(settings, TIPPING)
    assert after is not None
    expected = explain(after, lead_page["at"], model)
    assert lead_page["parts"] == [[part.rule, part.points] for part in expected.parts]
    assert lead_page["total"] == expected.engagement
    # both pages name the worker's model
    assert found["model_version"] == model.model_version
    assert lead_page["model"] == model.model_version
    assert model.model_version.startswith("integration-1+")
    for name in ("hot-leads.png", "lead-page.png"):
        width, height, pixels = png_pixels((ARTIFACTS / name).read_bytes())
        assert width >= 1000, name
        assert height >= 600, name
        assert len(set(pixels)) >= 20, name
        inked = sum(1 for pixel in pixels if pixel != b"\xff\xff\xff")
        assert inked / len(pixels) > 0.02, name


def hot_size(settings: Settings) -> int:
    client = redis.Redis.from_url(settings.redis_url)
    try:
        return int(client.zcard(keys.DEFAULT.hot))
    finally:
        client.close()


async def hot_table(url: str) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = await browser.new_page(viewport={"width": 1200, "height": 800})
            await page.goto(url, wait_until="load")
            return dict(
                await page.evaluate(
                    """() => ({
                      at: Number(document.querySelector('main#hot-page').dataset.at),
                      rows: [...document.querySelectorAll('#hot tbody tr[data-lead-id]')].map(
                        (r) => [r.dataset.leadId,
                                Number(r.querySelector('.engagement data').value),
                                r.querySelector('.grade').textContent,
                                r.querySelector('.stage').textContent]),
                    })"""
                )
            )
        finally:
            await browser.close()


def settle(settings: Settings, leads: set[str], *, quiet: float = 1.5, timeout: float = 90) -> None:
    """Wait until no lead's version moved for `quiet` seconds (events applied, recycles done).

    The demo's half-lives are seconds: its qualified leads cool and are
    recycled by the sweeper soon after their last event, then stay put.
    """
    deadline = time.monotonic() + timeout
    last: dict[str, int] = {}
    since = time.monotonic()
    while time.monotonic() < deadline:
        versions = {lead: read_state(settings, lead)[0] for lead in leads}
        if versions != last:
            last, since = versions, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.25)
    raise TimeoutError(f"the demo leads kept changing for {timeout:.0f}s")


def test_the_hot_table_lists_the_demos_leads(demo_worker: Settings) -> None:
    settings = demo_worker
    model = load_model(settings.model_file)
    sent = demo_bodies(40, seed=7, now=datetime.now(UTC))
    leads = known_leads(sent)
    produce(settings, sent)
    wait_for(lambda: hot_size(settings) == len(leads), timeout=90, what="every demo lead indexed")
    settle(settings, leads)
    base = f"http://127.0.0.1:{settings.web_port}"
    before = {lead: read_state(settings, lead) for lead in leads}
    found = asyncio.run(hot_table(f"{base}/ui?limit=200&token={READ_TOKEN}"))
    after = {lead: read_state(settings, lead) for lead in leads}
    # the sweeper may still recycle a cooling lead while the page is made: the exact
    # comparison is for the leads whose state did not move meanwhile (most of them)
    stable = {lead for lead in leads if before[lead][0] == after[lead][0]}
    assert len(stable) >= len(leads) // 2, f"only {len(stable)} of {len(leads)} stayed put"
    print(f"\n{len(stable)} of {len(leads)} demo leads stayed put while the page was made")
    rows = found["rows"]
    assert {lead for lead, *_ in rows} == leads  # every known demo lead, no anonymous visitor
    assert len(rows) == len(leads)
    scores = [score for _, score, *_ in rows]
    assert scores == sorted(scores, reverse=True)
    for lead, score, shown_grade, stage in rows:
        state = after[lead][1]
        assert state is not None
        if lead not in stable:
            continue
        assert score == engagement(state, found["at"], model), lead
        assert shown_grade == grade(fit_points(state.traits, model), model), lead
        assert stage == state.stage.value.upper(), lead


async def sign_in_and_out(base: str) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = await browser.new_page()
            urls: list[str] = []
            page.on("request", lambda r: urls.append(r.url))
            refused = await page.goto(f"{base}/ui", wait_until="load")
            assert refused is not None
            found: dict[str, Any] = {
                "refused": refused.status,
                "heading": await page.text_content("h1"),
            }
            lead = await page.goto(f"{base}/ui/leads/anyone", wait_until="load")
            assert lead is not None
            found["lead_refused"] = lead.status
            await page.goto(f"{base}/ui?limit=5", wait_until="load")
            found["form"] = await page.eval_on_selector(
                "form", "f => [f.method, f.getAttribute('action')]"
            )
            await page.fill('input[name="token"]', READ_TOKEN)
            async with page.expect_navigation():
                await page.click('button[type="submit"]')
            await page.wait_for_selector("#hot")
            found["url"] = page.url
            found["history"] = await page.evaluate("() => history.length")
            cookies = await page.context.cookies()
            found["cookie"] = [
                (c["name"], c["httpOnly"], c["sameSite"], c["secure"]) for c in cookies
            ]
            found["cookie_values"] = [c["value"] for c in cookies]
            found["script_sees_cookie"] = await page.evaluate("() => document.cookie")
            async with page.expect_navigation():
                await page.click("#sign-out button")
            found["signed_out_heading"] = await page.text_content("h1")
            found["signed_out_url"] = page.url
            found["cookies_after"] = await page.context.cookies()
            again = await page.goto(f"{base}/ui", wait_until="load")
            assert again is not None
            found["refused_again"] = again.status
            found["urls"] = urls
            return found
        finally:
            await browser.close()


def test_chromium_signs_in_by_the_form_and_out_again(worker: Settings) -> None:
    found = asyncio.run(sign_in_and_out(f"http://127.0.0.1:{worker.web_port}"))
    assert found["refused"] == 401
    assert found["lead_refused"] == 401
    assert "Sign in" in found["heading"]
    assert found["form"] == ["post", "/ui/sign-in"]  # the token goes in a body, not a URL
    assert found["url"] == f"http://127.0.0.1:{worker.web_port}/ui?limit=5"  # next kept
    assert not any(READ_TOKEN in url for url in found["urls"])  # no URL ever held it
    # one session cookie: not the token, HttpOnly, Strict, Secure (the default; Chromium
    # keeps a Secure cookie of http://127.0.0.1, a secure context)
    assert found["cookie"] == [("leadpulse_session", True, "Strict", True)]
    assert not any(READ_TOKEN in value for value in found["cookie_values"])
    assert found["script_sees_cookie"] == ""  # HttpOnly: no script can read it
    # signed out: the sign-in page, no cookie left, and the hot page is refused
    assert "Sign in" in found["signed_out_heading"]
    assert found["signed_out_url"].endswith("/ui")
    assert found["cookies_after"] == []
    assert found["refused_again"] == 401


async def expire(base: str, wait: float) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = await browser.new_page()
            signed = await page.goto(f"{base}/ui?token={READ_TOKEN}", wait_until="load")
            assert signed is not None
            found: dict[str, Any] = {"status": signed.status, "url": page.url}
            cookies = await page.context.cookies()
            found["cookie"] = [(c["name"], c["secure"]) for c in cookies]
            found["sign_out"] = await page.locator("#sign-out").count()
            # the open page finds out by itself: its next refresh of /hot is a 401
            await page.wait_for_selector("main#denied", timeout=wait * 1000)
            found["moved_to"] = await page.text_content("h1")
            # a copy of the cookie (the browser dropped its own at Max-Age) is expired too
            await page.context.add_cookies([{**cookies[0], "expires": time.time() + 3600}])
            again = await page.goto(f"{base}/ui", wait_until="load")
            assert again is not None
            found["again"] = again.status
            found["code"] = await page.eval_on_selector("main#denied", "m => m.dataset.code")
            return found
        finally:
            await browser.close()


SHORT_TTL = 2
"""Seconds a session lasts on the expiry test's worker."""


def test_an_expired_session_goes_to_the_sign_in_page(
    stack: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("expiry")
    # as `leadpulse dev` runs it: plain http, cookie not Secure
    settings = worker_settings(stack, workdir, partitions=1).replace(
        session_ttl=SHORT_TTL, cookie_secure=False
    )
    with running_worker(settings, workdir / "worker.log"):
        base = f"http://127.0.0.1:{settings.web_port}"
        found = asyncio.run(expire(base, wait=SHORT_TTL + 2 * REFRESH + 5))
    assert found["status"] == 200
    assert found["url"] == base + "/ui"
    assert found["cookie"] == [("leadpulse_session", False)]
    assert found["sign_out"] == 1
    assert "Sign in" in found["moved_to"]
    assert found["again"] == 401
    assert found["code"] == "session_expired"
