"""`leadpulse lead`: a lead's score, grade, stage and why, read from Redis."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from leadpulse.scoring import ScoringModel
from leadpulse.streams.cli.common import EXIT_FAILED, EXIT_OK, load_scoring_model, load_settings
from leadpulse.streams.cli.format import format_lead
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import LeadStore
from leadpulse.streams.store.models import ModelRecordError, when


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
    from leadpulse.streams.store.redis import RedisLeadStore

    store = RedisLeadStore.from_settings(settings)
    try:
        model, origin = await worker_model(store, settings)
        # the CLI reads Redis itself: an operator's view, every trait
        view = await explain_lead(store, model, lead_id, time.time(), all_traits=True)
    finally:
        await store.close()
    return {**view, "explained_with": origin}


async def worker_model(store: LeadStore, settings: Settings) -> tuple[ScoringModel, str]:
    """The worker's model: the one the namespace records, else the settings' model file.

    With the words saying which it is. A record this release cannot load
    (or read) falls back to the file too, and says why.
    """
    why = "the namespace records no model"
    try:
        record = await store.recorded_model()
        if record is not None:
            return record.model(), (
                f"the namespace's recorded model (from {record.origin}, recorded "
                f"{when(record.recorded_at)})"
            )
    except ModelRecordError as error:
        why = str(error)
    where = settings.model_file or "the shipped default model"
    return load_scoring_model(settings), f"{where} ({why})"
