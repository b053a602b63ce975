"""Read-side views of a lead for the CLI and the HTTP API."""

from __future__ import annotations

import logging
from typing import Any

from pydantic import JsonValue

from leadpulse.scoring import ScoringModel, explain
from leadpulse.scoring.feedback import sales_view
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.store import LeadStore, decode_state
from leadpulse.streams.store.models import ModelRecordError

log = logging.getLogger("leadpulse")

UNKNOWN_MODEL = "unknown (written before model versions were recorded)"
"""What `state_model` says of a state that does not record the model that built it."""


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

    `model_version` is the model it is explained with; `state_model_version`
    the one that produced the stored state (None: written before states
    recorded it; `state_model` says so in words); `namespace_model_version`
    the one the namespace records (None: no record). `model_warning` says
    when the state was built with another model than the namespace's (a
    forward-only switch: its history was scored with the old one), else None.
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
    current = await _namespace_version(store)
    return {
        "lead_id": lead_id,
        "found": True,
        "anonymous": state.anonymous,
        "account_id": state.account_id,
        "traits": _only(state.traits, shown),
        "account_traits": state.account_traits,
        "model_version": model.model_version,
        "state_model_version": state.model_version,
        "state_model": state.model_version or UNKNOWN_MODEL,
        "namespace_model_version": current,
        "model_warning": model_warning(state.model_version, current or model.model_version),
        "explanation": explanation.model_dump(mode="json"),
        "sales": sales_view(state, model),
        "pending_outbox": len(snap.outbox),
    }


def _only(traits: dict[str, JsonValue], shown: frozenset[str] | None) -> dict[str, JsonValue]:
    """`traits` limited to `shown` (all of them for None)."""
    return dict(traits) if shown is None else {k: v for k, v in traits.items() if k in shown}


async def _namespace_version(store: LeadStore) -> str | None:
    """The version the namespace records; None without a record (or an unreadable one)."""
    try:
        record = await store.recorded_model()
    except ModelRecordError as error:
        log.warning("lead view: %s", error)
        return None
    return None if record is None else record.version


def model_warning(built_with: str | None, current: str) -> str | None:
    """What to say of a state built with another model than `current`; None if it was not."""
    if built_with == current:
        return None
    if built_with is None:
        return (
            f"the model that built this state is unknown (written before model versions were "
            f"recorded); the namespace's model is {current}"
        )
    return (
        f"this state was built with model {built_with}, but the namespace's model is now "
        f"{current} (a forward-only switch): the events before it were scored under "
        f"{built_with} and are not rescored, later ones score under {current}"
    )
