"""Every message leadpulse reads or writes, as strict pydantic v2 models.

Inputs are untrusted (website trackers), so they are bounded: ids, strings, maps
and nesting have limits, timestamps must carry a timezone, and non-finite
numbers are rejected. Outputs are produced by leadpulse itself.
"""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    model_validator,
)

from leadpulse.schemas import limits


class Stage(StrEnum):
    """Funnel stages; see docs/domain.md#the-funnel for who decides each."""

    IQL = "iql"
    MQL = "mql"
    SAL = "sal"
    SQL = "sql"
    NURTURE = "nurture"
    DISQUALIFIED = "disqualified"
    """Sales disqualified the lead: it never hands off again until a ``requalify``."""


IDENTIFIER_PATTERN = r"^[^\x00-\x1f\x7f]+$"

Identifier = Annotated[
    str,
    StringConstraints(
        min_length=1,
        max_length=limits.MAX_ID_LENGTH,
        pattern=IDENTIFIER_PATTERN,
    ),
]
"""Printable, non-empty, bounded: safe inside Redis keys and log lines."""

EventType = Annotated[
    str,
    StringConstraints(max_length=limits.MAX_TYPE_LENGTH, pattern=limits.EVENT_TYPE_PATTERN),
]


SALES_ONLY_EVENTS: Final = frozenset(
    {
        "sales_accepted",
        "sales_rejected",
        "sales_qualified",
        "qualification",
        "disqualified",
        "requalify",
    }
)
"""Event types only a sales tool (a trusted write key) may send: a tracker must
not be able to accept, qualify, reject or disqualify its own lead. These are
the feedback events (`schemas.feedback.FEEDBACK_EVENTS`, whose properties are
typed there); scoring's RESERVED_EVENTS is the same set (unit tests keep them
equal)."""


def is_sales_only(event_type: str) -> bool:
    """True for the types only sales tools may send (`SALES_ONLY_EVENTS`)."""
    return event_type in SALES_ONLY_EVENTS


def _check_json_tree(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """Reject trees that are too deep, too wide, too long or not finite."""
    items = 0
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            if depth > limits.MAX_DEPTH:
                raise ValueError(f"nesting deeper than {limits.MAX_DEPTH} levels at '{path}'")
            for key, child in node.items():
                items += 1
                if not key:
                    raise ValueError(f"empty key at '{path or '.'}'")
                if len(key) > limits.MAX_KEY_LENGTH:
                    raise ValueError(
                        f"key longer than {limits.MAX_KEY_LENGTH} characters at '{path or '.'}'"
                    )
                stack.append((child, depth + 1, f"{path}.{key}" if path else key))
        elif isinstance(node, list):
            if depth > limits.MAX_DEPTH:
                raise ValueError(f"nesting deeper than {limits.MAX_DEPTH} levels at '{path}'")
            items += len(node)
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(node))
        elif isinstance(node, str):
            if len(node) > limits.MAX_STRING_LENGTH:
                raise ValueError(
                    f"string longer than {limits.MAX_STRING_LENGTH} characters at '{path}'"
                )
        elif isinstance(node, float) and not math.isfinite(node):
            raise ValueError(f"non-finite number at '{path}' (NaN and Infinity are not JSON)")
        if items > limits.MAX_MAP_ITEMS:
            raise ValueError(f"more than {limits.MAX_MAP_ITEMS} keys and items in total")
    return value


BoundedJson = Annotated[dict[str, JsonValue], AfterValidator(_check_json_tree)]


def _check_event_time(value: datetime) -> datetime:
    if value.year < limits.MIN_EVENT_YEAR:
        raise ValueError(
            f"{value.isoformat()} is before {limits.MIN_EVENT_YEAR}: not a real event time"
        )
    return value


EventTime = Annotated[AwareDatetime, AfterValidator(_check_event_time)]

_STRICT_IN = ConfigDict(
    extra="forbid",
    frozen=True,
    allow_inf_nan=False,
    str_strip_whitespace=False,
    strict=False,
)


class BehaviorEvent(BaseModel):
    """A behavioural event from a tracker; the unit leadpulse scores."""

    model_config = _STRICT_IN

    event_id: Identifier
    type: EventType
    lead_id: Identifier | None = None
    anonymous_id: Identifier | None = None
    occurred_at: EventTime
    properties: BoundedJson = Field(default_factory=dict)
    traits: BoundedJson = Field(default_factory=dict)
    reported_at: AwareDatetime | None = None
    """The tracker's occurred_at when it was later than the record time allowed;
    occurred_at was clamped to that bound (see `decode_event`)."""

    @model_validator(mode="after")
    def _needs_subject(self) -> Self:
        if self.lead_id is None and self.anonymous_id is None:
            raise ValueError("at least one of lead_id or anonymous_id is required")
        if self.reported_at is not None and not self.reported_at > self.occurred_at:
            raise ValueError(
                "reported_at must be later than occurred_at: it is only set when "
                "occurred_at was clamped down to the record time"
            )
        return self

    @property
    def subject(self) -> str:
        """The id whose state this event updates: the known lead if named."""
        if self.lead_id is not None:
            return self.lead_id
        assert self.anonymous_id is not None  # guaranteed by _needs_subject
        return self.anonymous_id

    @property
    def links_identity(self) -> bool:
        """An identify naming both ids stitches the anonymous visitor to the lead."""
        return (
            self.type == "identify"
            and self.lead_id is not None
            and self.anonymous_id is not None
            and self.lead_id != self.anonymous_id
        )


_OUT = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RuleContribution(BaseModel):
    """One rule's share of the engagement: the 'why' of a score."""

    model_config = _OUT

    rule: str
    points: float


class StageTransition(BaseModel):
    """A lead moved between funnel stages; published for CRM sync and audit."""

    model_config = _OUT

    transition_id: str
    lead_id: str
    from_stage: Stage
    to_stage: Stage
    engagement: float
    fit: float
    grade: str
    occurred_at: AwareDatetime
    model_version: str
    reason: str
    event_id: str | None = None
    reasons: list[RuleContribution] = Field(default_factory=list)
    tier: str | None = None
    """On a handoff (MQL to SAL): the model's success-ready tier of the lead at
    that moment (`tiers:` in the model file), None without tiers or when the
    ``else`` tier is null. None on every other move."""
    rescore: bool = False
    """True on a move `leadpulse model apply` published when it switched models:
    the lead's stage under the new model, rescored over its history, differs
    from its stage under the old one. Not a handoff, whatever its stages."""

    @property
    def is_handoff(self) -> bool:
        return self.from_stage is Stage.MQL and self.to_stage is Stage.SAL and not self.rescore


class Handoff(BaseModel):
    """MQL-to-SAL handoff: who, how hot, how good a fit, and why.

    `account_id` is the lead's account (its latest ``group`` call) when the
    handoff was decided, None if none was named; handoffs written before it
    existed decode with None. `tier` is the success-ready tier (the model's
    ``tiers:``: e.g. excellent, good, risky), None when the model has no tiers
    or its ``else`` is null; older handoffs decode with None.
    """

    model_config = _OUT

    handoff_id: str
    lead_id: str
    from_stage: Literal[Stage.MQL] = Stage.MQL
    to_stage: Literal[Stage.SAL] = Stage.SAL
    engagement: float
    fit: float
    grade: str
    occurred_at: AwareDatetime
    model_version: str
    reasons: list[RuleContribution] = Field(default_factory=list)
    event_id: str | None = None
    profile: dict[str, JsonValue] = Field(default_factory=dict)
    account_id: str | None = None
    tier: str | None = None

    @classmethod
    def from_transition(
        cls,
        transition: StageTransition,
        profile: dict[str, JsonValue] | None = None,
        account_id: str | None = None,
    ) -> Handoff:
        """The handoff id is the transition id, so both de-duplicate together."""
        if not transition.is_handoff:
            raise ValueError(
                f"transition {transition.transition_id} is "
                f"{transition.from_stage}->{transition.to_stage}, not mql->sal"
            )
        return cls(
            handoff_id=transition.transition_id,
            lead_id=transition.lead_id,
            engagement=transition.engagement,
            fit=transition.fit,
            grade=transition.grade,
            occurred_at=transition.occurred_at,
            model_version=transition.model_version,
            reasons=transition.reasons,
            event_id=transition.event_id,
            profile=profile or {},
            account_id=account_id,
            tier=transition.tier,
        )


class DeadLetter(BaseModel):
    """Input or output leadpulse could never process, kept whole with the reason.

    Most letters are events that failed to decode; a lead's events whose
    stored state cannot be read, and messages the broker refused for what
    they are (a handoff too large), are letters too: `lead_id` names the
    lead, and `source_partition`/`source_offset` are -1 when no input record
    is known (a message replayed from the outbox).
    """

    model_config = _OUT

    reason: str
    errors: list[str]
    kind: str | None = None
    """The reason class (decode, corrupt_state, refused_message, permanent_error,
    unknown_error); absent in letters of releases before it was recorded."""
    payload: str
    payload_encoding: Literal["utf-8", "base64"]
    key: str | None = None
    source_topic: str
    source_partition: int
    source_offset: int
    lead_id: str | None = None
    failed_at: AwareDatetime
    truncated: bool = False
    """True when only a prefix of a huge payload is kept (see payload_size/sha256)."""
    payload_size: int = 0
    payload_sha256: str = ""
    replay_of: str | None = None
    """The id (``PARTITION:OFFSET``) of the letter this record was replayed from:
    it failed again after `leadpulse dlq replay`."""
