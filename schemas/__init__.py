"""Wire contracts of leadpulse: every message shape and its (de)serialisation."""

from schemas.codec import (
    DecodeError,
    dead_letter,
    decode,
    decode_dead_letter,
    decode_event,
    decode_handoff,
    decode_transition,
    encode,
    original_payload,
)
from schemas.json_schema import MESSAGES, json_schemas
from schemas.messages import (
    BehaviorEvent,
    DeadLetter,
    Handoff,
    RuleContribution,
    Stage,
    StageTransition,
)

__all__ = [
    "MESSAGES",
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
    "json_schemas",
    "original_payload",
]
