"""The scoring domain of leadpulse, pure: a model file in, scores and funnel moves out.

No I/O except reading a model file, no clock reads (time is always passed in),
no broker or database imports. `streams` drives it; it depends only on `schemas`.
"""

from leadpulse.scoring.decay import RuleState
from leadpulse.scoring.durations import format_duration, parse_duration
from leadpulse.scoring.engine import (
    apply,
    apply_many,
    contributions,
    engagement,
    evaluate,
    next_recycle_at,
)
from leadpulse.scoring.epoch import Instant, as_epoch, from_epoch, to_epoch
from leadpulse.scoring.explain import FLOOR_PART, Explanation, Part, explain, explanation_dict
from leadpulse.scoring.feedback import sales_view
from leadpulse.scoring.fit import fit_parts, fit_points, grade
from leadpulse.scoring.lifecycle import (
    RESERVED_EVENTS,
    SALES_QUALIFIED,
    SALES_REJECTED,
    TRANSITION_NAMESPACE,
    handoff_profile,
    transition_id,
)
from leadpulse.scoring.loader import ModelError, default_model, load_model, parse_model
from leadpulse.scoring.model import Limits, ModelSpec, ModelSpecError, ScoringModel
from leadpulse.scoring.rescore import rescore_move
from leadpulse.scoring.state import Clamp, FeedbackEntry, LeadState, merge, new_lead
from leadpulse.scoring.summary import summary
from leadpulse.scoring.tiers import tier_of

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
    "rescore_move",
    "sales_view",
    "summary",
    "tier_of",
    "to_epoch",
    "transition_id",
]
