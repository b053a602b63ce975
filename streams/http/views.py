"""Read-side views of a lead for the CLI and the HTTP API."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import JsonValue

from leadpulse.scoring import ScoringModel, explain
from leadpulse.scoring.feedback import sales_view
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.store import LeadStore, decode_state

log = logging.getLogger("leadpulse")


async def explain_lead(
    store: LeadStore, model: ScoringModel, lead_id: str, now: float, *, all_traits: bool = False
) -> dict[str, Any]:
    """Score, grade, stage and per-rule explanation of a lead at `now`, and its account.

    `account_id` is None and `account_traits` empty until a ``group`` call
    named the lead's account (a company's traits, shown as they are). The
    lead's `traits` are only those the model declares for display
    (`ScoringModel.profile_traits`), every one with `all_traits` (the API's
    admins, the CLI). `sales` is the feedback on the lead's current handoff
    and its history (`scoring.feedback.sales_view`).
    """
    snap = (await store.peek([lead_id]))[lead_id]
    if snap.alias is not None and snap.state is None:
        merged = await explain_lead(store, model, snap.alias, now, all_traits=all_traits)
        return {"lead_id": lead_id, "merged_into": snap.alias, "lead": merged}
    if snap.state is None:
        return {"lead_id": lead_id, "found": False}
    try:
        state = decode_state(snap.state, subject=lead_id)
    except CorruptStateError as error:
        log.warning("lead view: %s", error)
        return {"lead_id": lead_id, "found": True, "unreadable": error.reason}
    explanation = explain(state, now, model)
    shown = None if all_traits else frozenset(model.profile_traits)
    return {
        "lead_id": lead_id,
        "found": True,
        "anonymous": state.anonymous,
        "account_id": state.account_id,
        "traits": _only(state.traits, shown),
        "account_traits": state.account_traits,
        "model_version": model.model_version,
        "explanation": explanation.model_dump(mode="json"),
        "sales": sales_view(state, model),
        "pending_outbox": len(snap.outbox),
    }


def _only(traits: dict[str, JsonValue], shown: frozenset[str] | None) -> dict[str, JsonValue]:
    """`traits` limited to `shown` (all of them for None)."""
    return dict(traits) if shown is None else {k: v for k, v in traits.items() if k in shown}
