"""`leadpulse lead`: a lead's score, grade, stage and why, read from Redis."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from leadpulse.streams.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    active_store,
    load_settings,
    worker_model,
)
from leadpulse.streams.cli.format import format_lead
from leadpulse.streams.settings import Settings


def cmd_lead(args: argparse.Namespace) -> int:
    settings = load_settings(redis_url=args.redis_url, model_file=args.model)
    view = asyncio.run(_lead_view(settings, args.lead_id))
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print(format_lead(view))
    readable = view.get("found", True) and "unreadable" not in view
    return EXIT_OK if readable else EXIT_FAILED


async def _lead_view(settings: Settings, lead_id: str) -> dict[str, Any]:
    from leadpulse.streams.http.views import explain_lead

    store = await active_store(settings)
    try:
        model, origin = await worker_model(store, settings)
        # the CLI reads Redis itself: an operator's view, every trait
        view = await explain_lead(store, model, lead_id, time.time(), all_traits=True)
    finally:
        await store.close()
    return {**view, "explained_with": origin}
