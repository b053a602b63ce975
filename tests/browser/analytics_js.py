"""Run the real analytics.js in headless Chromium against a Segment-compatible endpoint.

`run_analytics_js` (or `run_analytics_js_async` from inside an event loop) serves a
page from a private aiohttp server on 127.0.0.1, loads the unmodified UMD build of
`@segment/analytics-next` from `tests/browser/node_modules` into Debian's Chromium
(driven by the PyPI `playwright` package, no browser download), points its
Segment.io destination at `api_host`, runs a piece of JavaScript, and returns once
every event the page dispatched has been answered by the endpoint (delivered, or
given up by analytics.js), bounded by `timeout`.

What analytics.js 1.84.3 does, as seen here (see tests/browser/test_harness.py):
- settings come from `AnalyticsBrowser.load({writeKey, cdnSettings}, options)`:
  `cdnSettings` belongs to the *first* argument; given there, no CDN settings fetch.
- one POST per call to `<apiHost>/<first letter of the type>`: `/v1/i`, `/v1/p`,
  `/v1/t`, `/v1/g`, `/v1/a`, `/v1/s` (`/v1/b` with the batching delivery strategy),
  `Content-Type: text/plain`, JSON body with `writeKey`, and an
  `Authorization: Basic base64(writeKey + ":")` header. That header is not
  CORS-safelisted: the browser first sends an `OPTIONS` preflight, and the endpoint
  must allow the page's origin and the `authorization` (and on retries
  `x-retry-count`) request headers, or every event fails and is retried.
- 5xx (but 501/505/511), 408, 410, 429, 460 and network/CORS failures are retried,
  the same messageId with a new `sentAt`, an `X-Retry-Count: n` header and
  `_metadata.retryCount: n + 1`; up to 10 attempts. The first retry comes 0.1-0.6 s
  later (the destination's flush timer), the next after (1-2) * 0.5 s * 2^n. A 429's
  `Retry-After` is honoured only if the endpoint lists it in
  `Access-Control-Expose-Headers` (otherwise the browser hides it from the script).
  Other 4xx drop the event and emit `delivery_failure`. Statuses < 400 count as sent.

Every process started here (the Playwright driver, Chromium, the page server) is
stopped before the call returns or raises. Only loopback addresses are used: the
endpoint must be on 127.0.0.1, ::1 or localhost, and Chromium resolves no other
host name (`--host-resolver-rules`); any request to another origin is reported in
`BrowserRun.foreign_requests`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, ConsoleMessage, Page, Request

HERE = Path(__file__).resolve().parent
PACKAGE_DIR = HERE / "node_modules" / "@segment" / "analytics-next"
UMD_DIR = PACKAGE_DIR / "dist" / "umd"
CHROMIUM = Path("/usr/bin/chromium")

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})

# The flags known to work on this machine's closed network (python.md, "Known to
# work"); Playwright adds --headless and --no-sandbox and an empty user data dir.
CHROMIUM_ARGS = (
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)

# Statuses after which analytics.js 1.84.3 drops an event rather than retrying it
# (the defaults of `resolveHttpConfig` in src/plugins/segmentio/shared-dispatcher.ts).
_RETRIED_4XX = frozenset({408, 410, 429, 460})
_DROPPED_5XX = frozenset({501, 505, 511})

PAGE_HTML = """<!doctype html>
<html>
<head>
<meta charset="utf-8">
<title>leadpulse analytics.js harness</title>
<link rel="icon" href="data:,">
<style>body { font: 14px monospace; margin: 1em; } li { margin: 2px 0; }</style>
</head>
<body>
<h1>analytics.js harness</h1>
<p id="status">loading analytics.js</p>
<ol id="log"></ol>
<script src="/analytics-next/index.js"></script>
</body>
</html>
"""

# Runs in the page: load analytics.js, watch what it dispatches, run the caller's script.
RUN_JS = """
async ({settings, options, script}) => {
  const lp = (window.__leadpulse = {dispatched: [], failures: []});
  const log = (text) => {
    const li = document.createElement('li');
    li.textContent = text;
    document.getElementById('log').appendChild(li);
  };
  const [analytics] = await AnalyticsNext.AnalyticsBrowser.load(settings, options);
  document.getElementById('status').textContent =
    `analytics.js ${analytics.VERSION} loaded, writeKey ${settings.writeKey}`;
  analytics.on('dispatch_start', (ctx) => {
    lp.dispatched.push({type: ctx.event.type, messageId: ctx.event.messageId});
    log(`${ctx.event.type} ${ctx.event.event || ctx.event.name || ''} ${ctx.event.messageId}`);
  });
  analytics.on('error', (err) => {
    const messageId = err && err.ctx ? err.ctx.event.messageId : null;
    lp.failures.push({code: String(err && err.code), messageId, reason: String(err && err.reason)});
    log(`error ${err && err.code} ${messageId}: ${err && err.reason}`);
  });
  const AsyncFunction = (async () => {}).constructor;
  const run = new AsyncFunction('analytics', 'AnalyticsNext', script);
  const result = await run(analytics, AnalyticsNext);
  return {version: String(analytics.VERSION), result: result === undefined ? null : result};
}
"""


@dataclass
class ApiRequest:
    """One request the page made to the endpoint, as Chromium saw it."""

    method: str
    url: str
    path: str
    headers: dict[str, str]
    body: str
    started: float
    """Seconds since the run started."""
    status: int | None = None
    failure: str | None = None
    """Chromium's error text when no response was had (refused, CORS, ...)."""
    finished: float | None = None

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The events in the body: the batch's items on `/b`, else the body itself."""
        try:
            body = self.json
        except ValueError:
            return []
        if not isinstance(body, dict):
            return []
        batch = body.get("batch")
        if isinstance(batch, list):
            return [m for m in batch if isinstance(m, dict)]
        return [body]

    @property
    def settled(self) -> bool:
        return self.status is not None or self.failure is not None


@dataclass
class BrowserRun:
    """What one run of analytics.js did."""

    requests: list[ApiRequest] = field(default_factory=list)
    """Requests to the endpoint, in the order Chromium started them (no preflights)."""
    console_errors: list[str] = field(default_factory=list)
    """console.error lines and uncaught page errors (CORS refusals show up here)."""
    dispatched: list[dict[str, Any]] = field(default_factory=list)
    """`{type, messageId}` of every event analytics.js dispatched after load."""
    delivery_failures: list[dict[str, Any]] = field(default_factory=list)
    """analytics.js `error` events (`delivery_failure`: dropped or retries exhausted)."""
    foreign_requests: list[str] = field(default_factory=list)
    """URLs requested anywhere but the page server and the endpoint (should be none)."""
    result: Any = None
    """The script's return value (JSON-serialisable values only)."""
    version: str | None = None
    """`analytics.VERSION` as loaded."""
    duration: float = 0.0
    """Seconds from the start of the call to the end of the run, teardown excluded."""
    user_data_dir: str = ""
    """Chromium's profile directory (empty at start, deleted afterwards)."""

    @property
    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def messages(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Every event body the endpoint answered with a status < 400, in send order."""
        sent = [r for r in self.requests if r.status is not None and r.status < 400]
        return [m for r in sent for m in r.messages if type_ is None or m.get("type") == type_]

    def pending(self) -> list[str]:
        """messageIds neither delivered (< 400) nor given up by analytics.js."""
        given_up = {str(f.get("messageId")) for f in self.delivery_failures}
        seen = [str(d.get("messageId")) for d in self.dispatched]
        delivered: set[str] = set()
        last_status: dict[str, int | None] = {}
        for request in self.requests:
            for message in request.messages:
                message_id = str(message.get("messageId"))
                seen.append(message_id)
                last_status[message_id] = request.status
                if request.status is not None and request.status < 400:
                    delivered.add(message_id)
        return [
            message_id
            for message_id in dict.fromkeys(seen)
            if message_id not in delivered
            and message_id not in given_up
            and not _dropped(last_status.get(message_id))
        ]

    def summary(self) -> str:
        lines = [f"analytics.js {self.version}: {len(self.requests)} request(s)"]
        lines += [
            f"  {r.method} {r.path} -> {r.status if r.status is not None else r.failure}"
            for r in self.requests
        ]
        lines += [f"  console error: {e}" for e in self.console_errors]
        lines += [f"  delivery failure: {f}" for f in self.delivery_failures]
        lines += [f"  foreign request: {u}" for u in self.foreign_requests]
        pending = self.pending()
        if pending:
            lines.append(f"  pending messageIds: {pending}")
        return "\n".join(lines)


class AnalyticsJsError(RuntimeError):
    """The page or the script failed; `run` holds what happened until then."""

    def __init__(self, message: str, run: BrowserRun) -> None:
        super().__init__(f"{message}\n{run.summary()}")
        self.run = run


class AnalyticsJsTimeoutError(AnalyticsJsError, TimeoutError):
    """Not every event was answered within the timeout."""


def _dropped(status: int | None) -> bool:
    """Whether analytics.js gives an event up after this status (default httpConfig)."""
    if status is None:
        return False
    if 400 <= status < 500:
        return status not in _RETRIED_4XX
    return status in _DROPPED_5XX


def _api_origin(api_host: str) -> tuple[str, str]:
    """`("http://127.0.0.1:8080", "127.0.0.1:8080")` from `127.0.0.1:8080` or a URL."""
    split = urlsplit(api_host if "://" in api_host else f"http://{api_host}")
    if split.scheme != "http":
        raise ValueError(f"api_host must be plain http on loopback, got {api_host!r}")
    if split.hostname not in LOOPBACK_HOSTS or split.port is None:
        raise ValueError(f"api_host must be a loopback host:port, got {api_host!r}")
    if split.path not in ("", "/"):
        raise ValueError(f"give the path as api_path, not in api_host: {api_host!r}")
    return f"http://{split.netloc}", split.netloc


def missing(*, analytics_js: bool = True) -> list[str]:
    """What this harness needs and does not find (empty when it can run).

    `analytics_js=False`: only Playwright and Chromium (the worker's pages need no tracker).
    """
    out = []
    if importlib.util.find_spec("playwright") is None:
        out.append("the PyPI package playwright (dev extras)")
    if not CHROMIUM.is_file():
        out.append(f"{CHROMIUM} (apt-get install -y chromium)")
    if analytics_js and not (UMD_DIR / "index.js").is_file():
        out.append(f"{UMD_DIR / 'index.js'} (npm ci in {HERE})")
    return out


def _check_installed() -> None:
    lacking = missing()
    if lacking:
        raise FileNotFoundError("the analytics.js harness lacks " + "; ".join(lacking))


async def _serve_page() -> tuple[web.AppRunner, str]:
    async def index(_: web.Request) -> web.Response:
        return web.Response(text=PAGE_HTML, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_static("/analytics-next/", UMD_DIR)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
    except BaseException:
        await runner.cleanup()
        raise
    return runner, f"http://127.0.0.1:{port}"


class _Session:
    """One run's bookkeeping: Chromium's network events, turned into `BrowserRun`."""

    def __init__(self, api_origin: str, page_origin: str, started: float) -> None:
        self.api_origin = api_origin
        self.page_origin = page_origin
        self.started = started
        self.run = BrowserRun()
        self.open: dict[Request, ApiRequest] = {}
        self.last_request_at = started

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def watch(self, context: BrowserContext, page: Page) -> None:
        context.on("request", self.on_request)
        context.on("requestfinished", self.on_finished)
        context.on("requestfailed", self.on_failed)
        page.on("console", self.on_console)
        page.on("pageerror", lambda error: self.run.console_errors.append(f"uncaught: {error}"))

    def on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.run.console_errors.append(message.text)

    def on_request(self, request: Request) -> None:
        if request.url.startswith(self.api_origin + "/"):
            entry = ApiRequest(
                method=request.method,
                url=request.url,
                path=urlsplit(request.url).path,
                headers=dict(request.headers),
                body=request.post_data or "",
                started=self.elapsed(),
            )
            self.run.requests.append(entry)
            self.open[request] = entry
            self.last_request_at = time.monotonic()
        elif not request.url.startswith((self.page_origin + "/", "data:")):
            self.run.foreign_requests.append(request.url)

    async def on_finished(self, request: Request) -> None:
        entry = self.open.get(request)
        if entry is None:
            return
        response = await request.response()
        if response is None:
            entry.failure = "no response"
        else:
            with contextlib.suppress(Exception):
                entry.headers = await request.all_headers()
            entry.status = response.status
        entry.finished = self.elapsed()
        self.open.pop(request, None)

    def on_failed(self, request: Request) -> None:
        entry = self.open.pop(request, None)
        if entry is not None:
            entry.failure = request.failure or "failed"
            entry.finished = self.elapsed()

    async def read_page_state(self, page: Page) -> None:
        with contextlib.suppress(Exception):
            state = await asyncio.wait_for(
                page.evaluate("window.__leadpulse || {dispatched: [], failures: []}"), 2.0
            )
            self.run.dispatched = list(state["dispatched"])
            self.run.delivery_failures = list(state["failures"])

    async def drive(self, page: Page, arguments: dict[str, Any], quiet: float) -> None:
        """Load the page, run the script, then wait until every event is answered."""
        from playwright.async_api import Error as PlaywrightError

        await page.goto(self.page_origin + "/", wait_until="load")
        try:
            answer = await page.evaluate(RUN_JS, arguments)
        except PlaywrightError as exc:
            await self.read_page_state(page)
            raise AnalyticsJsError(
                f"the page or the script threw: {exc.message}", self.run
            ) from exc
        self.run.version = answer["version"]
        self.run.result = answer["result"]
        while True:
            await self.read_page_state(page)
            idle = time.monotonic() - self.last_request_at >= quiet
            if not self.open and idle and not self.run.pending():
                return
            await asyncio.sleep(0.05)


async def run_analytics_js_async(
    api_host: str,
    write_key: str,
    script: str,
    *,
    timeout: float = 30.0,  # noqa: ASYNC109 - one bound for launch, load and delivery
    screenshot: Path | None = None,
    api_path: str = "/v1",
    segment_io: Mapping[str, Any] | None = None,
    load_options: Mapping[str, Any] | None = None,
    quiet: float = 0.2,
) -> BrowserRun:
    """Run `script` with the real analytics.js against `api_host` (`127.0.0.1:PORT`).

    `script` is the body of an async function of `analytics` (the loaded Analytics
    instance) and `AnalyticsNext` (the UMD global); its return value ends up in
    `BrowserRun.result`. `segment_io` is merged into the Segment.io destination's
    settings (e.g. `{"deliveryStrategy": {"strategy": "batching", ...}}` or
    `httpConfig`); `load_options` is `load`'s second argument. Returns once the
    script has finished, no request to the endpoint is open, every event seen is
    delivered (< 400) or given up, and `quiet` seconds passed without a new request.
    Raises `AnalyticsJsTimeoutError` after `timeout` seconds, `AnalyticsJsError` when
    the page or the script throws; both carry the partial `BrowserRun` as `.run`.
    """
    started = time.monotonic()
    api_origin, api_netloc = _api_origin(api_host)
    _check_installed()
    from playwright.async_api import async_playwright

    settings = {
        "writeKey": write_key,
        "cdnSettings": {
            "integrations": {
                "Segment.io": {
                    "apiKey": write_key,
                    "apiHost": api_netloc + api_path.rstrip("/"),
                    "protocol": "http",
                    **(segment_io or {}),
                }
            },
            # Stats would otherwise be posted to api.segment.io every 30 s.
            "metrics": {"sampleRate": 0},
        },
    }
    arguments = {"settings": settings, "options": dict(load_options or {}), "script": script}
    with tempfile.TemporaryDirectory(prefix="leadpulse-chromium-") as profile:
        page_server, page_origin = await _serve_page()
        session = _Session(api_origin, page_origin, started)
        run = session.run
        run.user_data_dir = profile
        try:
            async with async_playwright() as playwright:
                context = await playwright.chromium.launch_persistent_context(
                    profile,
                    executable_path=str(CHROMIUM),
                    headless=True,
                    args=list(CHROMIUM_ARGS),
                    service_workers="block",
                )
                try:
                    page = context.pages[0] if context.pages else await context.new_page()
                    session.watch(context, page)
                    try:
                        async with asyncio.timeout(timeout - session.elapsed()):
                            await session.drive(page, arguments, quiet)
                    except TimeoutError as exc:
                        await session.read_page_state(page)
                        run.duration = session.elapsed()
                        raise AnalyticsJsTimeoutError(
                            f"analytics.js run did not settle within {timeout} s", run
                        ) from exc
                    run.duration = session.elapsed()
                    if screenshot is not None:
                        await page.screenshot(path=str(screenshot), full_page=True)
                finally:
                    await context.close()
        finally:
            await page_server.cleanup()
    return run


def run_analytics_js(
    api_host: str,
    write_key: str,
    script: str,
    *,
    timeout: float = 30.0,
    screenshot: Path | None = None,
    **kwargs: Any,
) -> BrowserRun:
    """Blocking `run_analytics_js_async`, for callers with no running event loop.

    From inside an event loop (an async test whose endpoint runs on that loop),
    await `run_analytics_js_async` instead: blocking the loop would stall the endpoint.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise RuntimeError(
            "run_analytics_js blocks; inside an event loop await run_analytics_js_async"
        )
    return asyncio.run(
        run_analytics_js_async(
            api_host, write_key, script, timeout=timeout, screenshot=screenshot, **kwargs
        )
    )
