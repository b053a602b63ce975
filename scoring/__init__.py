"""The scoring domain of leadpulse, pure: a model file in, scores and funnel moves out.

No I/O except reading a model file, no clock reads (time is always passed in),
no broker or database imports. `streams` drives it; it depends only on `schemas`.
"""

from scoring.decay import RuleState
from scoring.durations import format_duration, parse_duration
from scoring.engine import (
    apply,
    apply_many,
    contributions,
    engagement,
    evaluate,
    next_recycle_at,
)
from scoring.epoch import Instant, as_epoch, from_epoch, to_epoch
from scoring.explain import FLOOR_PART, Explanation, Part, explain, explanation_dict
from scoring.feedback import sales_view
from scoring.fit import fit_parts, fit_points, grade
from scoring.lifecycle import (
    RESERVED_EVENTS,
    SALES_QUALIFIED,
    SALES_REJECTED,
    TRANSITION_NAMESPACE,
    handoff_profile,
    transition_id,
)
from scoring.loader import ModelError, default_model, load_model, parse_model
from scoring.model import Limits, ModelSpec, ModelSpecError, ScoringModel
from scoring.state import Clamp, FeedbackEntry, LeadState, merge, new_lead
from scoring.summary import summary
from scoring.tiers import tier_of

__all__ = [
    "FLOOR_PART",
    "RESERVED_EVENTS",
    "SALES_QUALIFIED",
    "SALES_REJECTED",
    "TRANSITION_NAMESPACE",
    "Clamp",
    "Explanation",
    "FeedbackEntry",
    "Instant",
    "LeadState",
    "Limits",
    "ModelError",
    "ModelSpec",
    "ModelSpecError",
    "Part",
    "RuleState",
    "ScoringModel",
    "apply",
    "apply_many",
    "as_epoch",
    "contributions",
    "default_model",
    "engagement",
    "evaluate",
    "explain",
    "explanation_dict",
    "fit_parts",
    "fit_points",
    "format_duration",
    "from_epoch",
    "grade",
    "handoff_profile",
    "load_model",
    "merge",
    "new_lead",
    "next_recycle_at",
    "parse_duration",
    "parse_model",
    "sales_view",
    "summary",
    "tier_of",
    "to_epoch",
    "transition_id",
]
