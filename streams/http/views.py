"""Read-side views of a lead for the CLI and the HTTP API."""

from __future__ import annotations

from typing import Any

from scoring import ScoringModel, explain
from scoring.feedback import sales_view
from streams.store import LeadStore, decode_state


async def explain_lead(
    store: LeadStore, model: ScoringModel, lead_id: str, now: float
) -> dict[str, Any]:
    """Score, grade, stage and per-rule explanation of a lead at `now`, and its account.

    `account_id` is None and `account_traits` empty until a ``group`` call
    named the lead's account. `sales` is the feedback on the lead's current
    handoff and its history (`scoring.feedback.sales_view`).
    """
    snap = (await store.snapshot({lead_id: ()}))[lead_id]
    if snap.alias is not None and snap.state is None:
        merged = await explain_lead(store, model, snap.alias, now)
        return {"lead_id": lead_id, "merged_into": snap.alias, "lead": merged}
    if snap.state is None:
        return {"lead_id": lead_id, "found": False}
    state = decode_state(snap.state)
    explanation = explain(state, now, model)
    return {
        "lead_id": lead_id,
        "found": True,
        "anonymous": state.anonymous,
        "account_id": state.account_id,
        "account_traits": state.account_traits,
        "model_version": model.model_version,
        "explanation": explanation.model_dump(mode="json"),
        "sales": sales_view(state, model),
        "pending_outbox": len(snap.outbox),
    }
