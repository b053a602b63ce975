"""Messages of the deliverer: what a destination receives, and what an exhausted delivery leaves.

A destination receives ``{type, timestamp, data}`` (Standard Webhooks): `type`
names the message kind, `timestamp` is when it was decided, `data` the
`Handoff` or `StageTransition` as published. A message whose every attempt
failed goes to the deliveries DLQ as a `DeliveryFailure`, with each attempt.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from leadpulse.schemas.messages import Handoff, StageTransition

MessageKind = Literal["handoffs", "transitions"]
"""Which topic a message came from (the `messages:` of a destination)."""

WEBHOOK_TYPES: dict[str, str] = {"handoffs": "lead.handoff", "transitions": "lead.transition"}
"""The `type` of the webhook body, by message kind."""

_OUT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DeliveryAttempt(BaseModel):
    """One try to deliver a message: when, the HTTP status (None if there was no answer), why."""

    model_config = _OUT

    at: AwareDatetime
    status: int | None = None
    error: str = ""
    seconds: float = 0.0


class DeliveryFailure(BaseModel):
    """A message one destination never accepted, with every attempt (deliveries DLQ)."""

    model_config = _OUT

    destination: str
    webhook_id: str
    kind: MessageKind
    lead_id: str
    reason: str
    failed_at: AwareDatetime
    attempts: list[DeliveryAttempt] = Field(default_factory=list)
    handoff: Handoff | None = None
    transition: StageTransition | None = None


class WebhookBody(BaseModel):
    """The JSON body a ``format: json`` destination receives."""

    model_config = _OUT

    type: str
    timestamp: AwareDatetime
    data: Handoff | StageTransition
