"""Wire contracts of leadpulse: every message shape and its (de)serialisation."""

from leadpulse.schemas.codec import (
    REPLAY_HEADER,
    DecodeError,
    dead_letter,
    decode,
    decode_dead_letter,
    decode_event,
    decode_handoff,
    decode_transition,
    encode,
    letter_id,
    original_key,
    original_payload,
)
from leadpulse.schemas.json_schema import MESSAGES, json_schemas
from leadpulse.schemas.messages import (
    SALES_ONLY_EVENTS,
    BehaviorEvent,
    DeadLetter,
    Handoff,
    RuleContribution,
    Stage,
    StageTransition,
    is_sales_only,
)
from leadpulse.schemas.segment import from_segment, merge_batch_item

__all__ = [
    "MESSAGES",
    "REPLAY_HEADER",
    "SALES_ONLY_EVENTS",
    "BehaviorEvent",
    "DeadLetter",
    "DecodeError",
    "Handoff",
    "RuleContribution",
    "Stage",
    "StageTransition",
    "dead_letter",
    "decode",
    "decode_dead_letter",
    "decode_event",
    "decode_handoff",
    "decode_transition",
    "encode",
    "from_segment",
    "is_sales_only",
    "json_schemas",
    "letter_id",
    "merge_batch_item",
    "original_key",
    "original_payload",
]
