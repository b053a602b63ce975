"""Funnel moves: thresholds with hysteresis, plus the two SDR verdicts.

Rules (known leads only; anonymous profiles never move):

- IQL or NURTURE, armed, engagement >= mql: MQL.
- MQL, engagement >= handoff.engagement and grade at least min_grade: SAL
  (the handoff). Both moves can follow from one event, in that order.
- MQL or SAL, engagement < recycle: NURTURE. Falling below recycle also
  re-arms a lead, so a score hovering near the handoff threshold hands off once,
  not every time it wiggles.
- Sales feedback (`scoring.feedback`) comes first: ``qualification`` (by the
  model's ``lifecycle.sql`` rule) or legacy ``sales_qualified`` moves SAL to
  SQL; ``sales_rejected`` moves SAL or SQL to NURTURE *disarmed*: it must fall
  below recycle (and wait out ``rejection_cooldown``) before it can become an
  MQL again, or the next page view would hand the rejected lead straight back;
  ``disqualified`` parks any lead in DISQUALIFIED until a ``requalify``.
- SQL and DISQUALIFIED are owned by sales: decay never recycles them.
"""

from __future__ import annotations

import uuid
from decimal import ROUND_FLOOR, Decimal
from typing import Final, NamedTuple

from pydantic import JsonValue

from leadpulse.schemas import BehaviorEvent, Stage
from leadpulse.scoring.model import ScoringModel
from leadpulse.scoring.state import LeadState

SALES_QUALIFIED: Final = "sales_qualified"
SALES_REJECTED: Final = "sales_rejected"
RESERVED_EVENTS: Final = frozenset(
    {
        "sales_accepted",
        SALES_REJECTED,
        SALES_QUALIFIED,
        "qualification",
        "disqualified",
        "requalify",
    }
)
"""The feedback event types: only sales tools may send them (see schemas.SALES_ONLY_EVENTS)."""

TRANSITION_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "urn:leadpulse:transition")
"""Never change it: consumers de-duplicate on the ids derived from it."""

RECYCLABLE: Final = frozenset({Stage.MQL, Stage.SAL})


class Move(NamedTuple):
    to_stage: Stage
    reason: str


def transition_id(
    lead_id: str,
    from_stage: Stage,
    to_stage: Stage,
    *,
    event_id: str | None = None,
    crossing: float | None = None,
    rescore: str | None = None,
) -> str:
    """The id names what caused the move, never a counter a rollback could reuse.

    An event's id with the move (one event can move a lead twice, IQL→MQL and
    MQL→SAL), for a move decay alone caused, the crossing time, which the
    same history always gives to the bit, and for a move a model change
    implies (`rescore`), the change (``<from version>-><to version>``). A
    replay re-emits, never duplicates.
    """
    if sum(cause is not None for cause in (event_id, crossing, rescore)) != 1:
        raise ValueError(
            "a move is caused by an event, by decay or by a rescore: give one of "
            "event_id, crossing, rescore"
        )
    if event_id is not None:
        cause = f"event:{event_id}"
    elif crossing is not None:
        cause = f"decay:{crossing!r}"
    else:
        cause = f"rescore:{rescore}"
    name = f"{lead_id}:{cause}:{from_stage.value}->{to_stage.value}"
    return str(uuid.uuid5(TRANSITION_NAMESPACE, name))


def handoff_profile(state: LeadState, model: ScoringModel) -> dict[str, JsonValue]:
    """The traits a handoff carries: only the model's `profile_traits`, in their order.

    A tracker may send any traits; only those the model declares (by default
    the ones its fit rules read, which explain the grade) reach sales tools.
    """
    traits = state.traits
    return {key: traits[key] for key in model.profile_traits if key in traits}


def show(number: float) -> str:
    """Rounded down to 0.01, so 24.996 < 25 never prints as "25 < 25"."""
    if not abs(number) < 1e15:  # beyond Decimal's default precision at 0.01
        return f"{number:.6g}"
    text = f"{Decimal(number).quantize(Decimal('0.01'), rounding=ROUND_FLOOR):f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def clamp_note(event: BehaviorEvent) -> str:
    """What a move's reason says when the event's time was clamped (see decode_event)."""
    reported = event.reported_at.isoformat() if event.reported_at is not None else "?"
    return (
        f" (event time clamped from {reported} to {event.occurred_at.isoformat()}, "
        "the record time + skew)"
    )


def recycle_move(engagement: float, model: ScoringModel, by_decay: bool) -> Move:
    cause = " (decay)" if by_decay else ""
    return Move(
        Stage.NURTURE,
        f"engagement {show(engagement)} < recycle {show(model.lifecycle.recycle)}{cause}",
    )


def threshold_moves(
    stage: Stage,
    armed: bool,
    engagement: float,
    grade: str,
    model: ScoringModel,
    *,
    cooled: bool = True,
) -> tuple[list[Move], Stage, bool]:
    """Moves at one instant, with the stage and arming they leave behind.

    `cooled` is False while a rejected lead's ``rejection_cooldown`` runs: it
    cannot become an MQL then, armed or not.
    """
    lifecycle = model.lifecycle
    if engagement < lifecycle.recycle:
        if stage in RECYCLABLE:
            return [recycle_move(engagement, model, by_decay=False)], Stage.NURTURE, True
        return [], stage, True
    moves: list[Move] = []
    if stage in (Stage.IQL, Stage.NURTURE) and armed and cooled and engagement >= lifecycle.mql:
        moves.append(Move(Stage.MQL, f"engagement {show(engagement)} ≥ mql {show(lifecycle.mql)}"))
        stage = Stage.MQL
    handoff = lifecycle.handoff
    if (
        stage is Stage.MQL
        and engagement >= handoff.engagement
        and model.grade_at_least(grade, handoff.min_grade)
    ):
        moves.append(
            Move(
                Stage.SAL,
                f"engagement {show(engagement)} ≥ handoff {show(handoff.engagement)} "
                f"and grade {grade} ≥ {handoff.min_grade}",
            )
        )
        stage = Stage.SAL
    return moves, stage, armed
