"""The stage change a model change implies for one lead (`leadpulse model apply`).

The new model's state of a lead is built by replaying its history; where its
stage differs from the stage the old model left it in, the switch publishes
one move from the old stage to the new, marked ``rescore``, so CRM sync and
audit see every lead's stage change exactly once (docs/architecture.md#model-apply).
"""

from __future__ import annotations

from leadpulse.schemas import Stage, StageTransition
from leadpulse.scoring.engine import engagement, top_reasons
from leadpulse.scoring.epoch import from_epoch
from leadpulse.scoring.fit import fit_points, grade
from leadpulse.scoring.lifecycle import transition_id
from leadpulse.scoring.model import ScoringModel
from leadpulse.scoring.state import LeadState


def rescore_move(
    old: LeadState | None, new: LeadState, model: ScoringModel, *, at: float, from_version: str
) -> StageTransition | None:
    """The move from `old`'s stage to `new`'s, at `at`; None when they agree or for a visitor.

    `old` None is a lead the old model never saw (it starts at IQL there).
    Engagement, fit and reasons are the new model's at `at`.
    """
    if new.anonymous:
        return None
    before = Stage.IQL if old is None or old.anonymous else old.stage
    if before is new.stage:
        return None
    moment = max(at, new.clock)
    fit = fit_points(new.traits, model)
    return StageTransition(
        transition_id=transition_id(
            new.lead_id,
            before,
            new.stage,
            rescore=f"{from_version}->{model.model_version}",
        ),
        lead_id=new.lead_id,
        from_stage=before,
        to_stage=new.stage,
        engagement=engagement(new, moment, model),
        fit=fit,
        grade=grade(fit, model),
        occurred_at=from_epoch(moment),
        model_version=model.model_version,
        reason=f"rescore: model {from_version} -> {model.model_version}",
        reasons=top_reasons(new, moment, model),
        rescore=True,
    )
