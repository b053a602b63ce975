"""JSON Schema of every wire message, for tracker authors and consumers."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from leadpulse.schemas.delivery import DeliveryFailure
from leadpulse.schemas.messages import BehaviorEvent, DeadLetter, Handoff, StageTransition

MESSAGES: dict[str, type[BaseModel]] = {
    "BehaviorEvent": BehaviorEvent,
    "StageTransition": StageTransition,
    "Handoff": Handoff,
    "DeadLetter": DeadLetter,
    "DeliveryFailure": DeliveryFailure,
}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Message name -> JSON Schema (draft 2020-12, as pydantic emits it)."""
    return {name: model.model_json_schema() for name, model in MESSAGES.items()}
