"""Make the README's screenshots: the hot-leads page and a lead page, from the demo's traffic.

    .venv/bin/python -m tests.browser.screenshots [--out docs/img]

Starts the embedded stack (free 127.0.0.1 ports) and one worker with the
demo model, as the browser tests do; plays the demo's traffic; opens
``/ui`` in headless Chromium, sends one more buyer's journey so that a handoff
appears live, and saves ``hot-leads.png`` and that buyer's ``lead-page.png``.
Everything it starts is stopped when it ends.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.settings import Settings
from tests.browser.analytics_js import CHROMIUM, CHROMIUM_ARGS
from tests.browser.demo_traffic import DEMO_MODEL_FILE, buyer_journey, demo_bodies, known_leads
from tests.integration.harness import READ_TOKEN, produce, start_worker, wait_for, worker_settings

BUYER = 900
"""Persona number of the buyer sent while the page is open (lead id ``lead-0900``)."""


async def shoot(settings: Settings, out: Path) -> None:
    from playwright.async_api import async_playwright

    base = f"http://127.0.0.1:{settings.web_port}"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 860})
            await page.goto(f"{base}/ui?limit=15&token={READ_TOKEN}", wait_until="load")
            await page.wait_for_selector('body[data-live="true"]', timeout=20_000)
            journey = buyer_journey(BUYER, datetime.now(UTC))
            for body in journey:  # the buyer's journey as it happens, over a few seconds
                await asyncio.to_thread(produce, settings, [body])
                await asyncio.sleep(0.5)
            lead = f"lead-{BUYER:04d}"
            await page.wait_for_selector(f'#handoffs li[data-lead-id="{lead}"]', timeout=20_000)
            await asyncio.sleep(1.0)  # the table's refresh after the handoff
            await page.screenshot(path=str(out / "hot-leads.png"))
            await page.goto(f"{base}/ui/leads/{lead}", wait_until="load")
            await page.screenshot(path=str(out / "lead-page.png"), full_page=True)
        finally:
            await browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/img"))
    parser.add_argument("--leads", type=int, default=40)
    args = parser.parse_args()
    out: Path = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="leadpulse-shots-") as tmp, DevStack() as stack:
        workdir = Path(tmp)
        settings = worker_settings(stack, workdir, partitions=2).replace(model_file=DEMO_MODEL_FILE)
        worker = start_worker(settings, workdir / "worker.log")
        try:
            sent = demo_bodies(args.leads, seed=7, now=datetime.now(UTC), span=12.0)
            produce(settings, sent)
            leads = len(known_leads(sent))
            wait_for(
                lambda: len(worker.stats()) > 0 and worker.stats().get("scored", 0) >= len(sent),
                timeout=90,
                what=f"the demo's {len(sent)} events of {leads} leads scored",
            )
            time.sleep(1.0)
            asyncio.run(shoot(settings, out))
        finally:
            worker.stop()
    print(f"wrote {out / 'hot-leads.png'} and {out / 'lead-page.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
