"""Feedback events: what sales tools answer to a handoff, as typed properties.

A feedback event is a `BehaviorEvent` of one of the `FEEDBACK_EVENTS` types,
sent only by trusted sources (a sales write key on the collector, or the
operator's own integration producing to the events topic). Its `properties`
must match the type's model below, or the event is invalid: `decode_event`
(and the collector's Segment mapping) reject it with lines naming the field,
``properties.reason: ...``, so it lands on the DLQ with the reason.

| type | properties |
|---|---|
| ``sales_accepted`` | ``{handoff_id}`` |
| ``sales_rejected`` | ``{handoff_id, reason, note?}``; reason one of `RejectionReason` |
| ``qualification`` | ``{handoff_id, framework, criteria: {name: met/not_met/unknown}, notes?}`` |
| ``disqualified`` | ``{reason, note?, handoff_id?}`` |
| ``requalify`` | ``{handoff_id?}`` |
| ``sales_qualified`` | ``{handoff_id?}`` (legacy: SAL to SQL without a framework) |

Legacy forms, kept so events written for earlier releases still apply:
``sales_rejected`` and ``sales_qualified`` without a ``handoff_id`` answer
whatever handoff is current (a ``sales_rejected`` with a ``handoff_id`` needs
a ``reason``). Criterion names are the framework's own, snake_case
(`FRAMEWORK_CRITERIA`). The collector adds ``properties.context`` to every
call; it is allowed and ignored here.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Final, Self, cast

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from leadpulse.schemas.messages import BehaviorEvent, Identifier

SALES_ACCEPTED: Final = "sales_accepted"
SALES_REJECTED: Final = "sales_rejected"
SALES_QUALIFIED: Final = "sales_qualified"
QUALIFICATION: Final = "qualification"
DISQUALIFIED: Final = "disqualified"
REQUALIFY: Final = "requalify"

MAX_NOTE_LENGTH: Final = 1000
"""A note or notes field: a sentence or two from the SDR, not a transcript."""
MAX_REASON_LENGTH: Final = 200


class RejectionReason(StrEnum):
    BAD_FIT = "bad_fit"
    NO_RESPONSE = "no_response"
    NOT_READY = "not_ready"
    DUPLICATE = "duplicate"
    OTHER = "other"


class Framework(StrEnum):
    """Qualification frameworks leadpulse knows (see DOMAIN.md)."""

    BANT = "bant"
    MEDDIC = "meddic"
    CHAMP = "champ"
    ANUM = "anum"
    GPCTBA_CI = "gpctba_ci"


class CriterionStatus(StrEnum):
    MET = "met"
    NOT_MET = "not_met"
    UNKNOWN = "unknown"


FRAMEWORK_CRITERIA: Final[dict[Framework, tuple[str, ...]]] = {
    Framework.BANT: ("budget", "authority", "need", "timeline"),
    Framework.MEDDIC: (
        "metrics",
        "economic_buyer",
        "decision_criteria",
        "decision_process",
        "identify_pain",
        "champion",
    ),
    Framework.CHAMP: ("challenges", "authority", "money", "prioritization"),
    Framework.ANUM: ("authority", "need", "urgency", "money"),
    Framework.GPCTBA_CI: (
        "goals",
        "plans",
        "challenges",
        "timeline",
        "budget",
        "authority",
        "negative_consequences",
        "positive_implications",
    ),
}
"""Each framework's criteria, in the framework's own order."""

Note = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NOTE_LENGTH)]
Reason = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_REASON_LENGTH, pattern=r"^[^\x00-\x1f\x7f]+$"),
]


class _Feedback(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    context: dict[str, JsonValue] | None = None
    """Added by the collector to every call; not feedback, ignored."""


class SalesAccepted(_Feedback):
    handoff_id: Identifier


class SalesRejected(_Feedback):
    handoff_id: Identifier | None = None
    reason: RejectionReason | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _reason_with_handoff(self) -> Self:
        if self.handoff_id is not None and self.reason is None:
            raise ValueError(
                "reason: required with a handoff_id (one of "
                f"{', '.join(reason.value for reason in RejectionReason)})"
            )
        return self


class SalesQualified(_Feedback):
    """Legacy: SAL to SQL on the SDR's word, no framework."""

    handoff_id: Identifier | None = None


class Qualification(_Feedback):
    handoff_id: Identifier
    framework: Framework
    criteria: dict[str, CriterionStatus] = Field(min_length=1)
    notes: Note | None = None

    @field_validator("criteria")
    @classmethod
    def _known_criteria(
        cls, value: dict[str, CriterionStatus], info: ValidationInfo
    ) -> dict[str, CriterionStatus]:
        framework = info.data.get("framework")
        if not isinstance(framework, Framework):
            return value  # the framework's own error says why
        known = FRAMEWORK_CRITERIA[framework]
        unknown = [name for name in value if name not in known]
        if unknown:
            raise ValueError(
                f"unknown {framework.value} criterion {', '.join(repr(n) for n in unknown)}; "
                f"use {', '.join(known)}"
            )
        return value


class Disqualified(_Feedback):
    reason: Reason
    note: Note | None = None
    handoff_id: Identifier | None = None


class Requalify(_Feedback):
    handoff_id: Identifier | None = None


Feedback = SalesAccepted | SalesRejected | SalesQualified | Qualification | Disqualified | Requalify

FEEDBACK_MODELS: Final[dict[str, type[_Feedback]]] = {
    SALES_ACCEPTED: SalesAccepted,
    SALES_REJECTED: SalesRejected,
    SALES_QUALIFIED: SalesQualified,
    QUALIFICATION: Qualification,
    DISQUALIFIED: Disqualified,
    REQUALIFY: Requalify,
}

FEEDBACK_EVENTS: Final = frozenset(FEEDBACK_MODELS)
"""The feedback types; all of them are sales-only (`SALES_ONLY_EVENTS`)."""


class FeedbackError(ValueError):
    """Properties that do not match their feedback type; `errors`, one line each."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def is_feedback(event_type: str) -> bool:
    return event_type in FEEDBACK_MODELS


def parse_feedback(event: BehaviorEvent) -> Feedback | None:
    """The typed feedback of `event`, None if its type is not feedback.

    Raises `FeedbackError` naming each bad field (``properties.<field>: ...``).
    """
    model = FEEDBACK_MODELS.get(event.type)
    if model is None:
        return None
    try:
        parsed = model.model_validate(event.properties)
    except ValidationError as exc:
        raise FeedbackError(_lines(event.type, exc)) from None
    return cast(Feedback, parsed)


def feedback_errors(event: BehaviorEvent) -> list[str]:
    """Why `event`'s properties are not valid feedback; empty if they are or it is not feedback."""
    try:
        parse_feedback(event)
    except FeedbackError as exc:
        return exc.errors
    return []


def _lines(event_type: str, error: ValidationError) -> list[str]:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        path = "properties"
        for part in item["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{part}"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            allowed = sorted(
                name for name in FEEDBACK_MODELS[event_type].model_fields if name != "context"
            )
            message = f"unknown property for {event_type} (allowed: {', '.join(allowed)})"
        elif item["type"] == "missing":
            message = f"required for {event_type}"
        if not item["loc"] and ": " in message and message.split(": ", 1)[0].isidentifier():
            field, message = message.split(": ", 1)
            path += f".{field}"
        lines.append(f"{path}: {message}")
    return lines


def feedback_schemas() -> dict[str, dict[str, Any]]:
    """Feedback type -> JSON Schema of its `properties`, for sales tool integrators."""
    return {kind: model.model_json_schema() for kind, model in FEEDBACK_MODELS.items()}
