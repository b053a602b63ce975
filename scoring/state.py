"""Per-lead state: everything needed to score a lead, small enough for Redis."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from leadpulse.schemas import Stage
from leadpulse.schemas.feedback import CriterionStatus
from leadpulse.scoring.decay import RuleState, Window, combine, window_union
from leadpulse.scoring.fit import merge_account_traits, merge_traits
from leadpulse.scoring.model import ScoringModel


class Clamp(BaseModel):
    """An event whose tracker time was later than its Kafka record time allowed."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    event_id: str
    reported_at: float
    """Epoch seconds: the tracker's occurred_at."""
    clamped_to: float
    """Epoch seconds: the record time plus the allowed skew, which the event scored at."""


class FeedbackEntry(BaseModel):
    """One feedback event as the lead's history keeps it, applied or not.

    `applied` is False for feedback that changed nothing: about another
    handoff than the current one (`stale`), or that the lead's stage does not
    allow (a rejection of a lead already in nurture). `outcome` says what it
    did, in words.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    event_id: str
    type: str
    at: float
    """Epoch seconds: the lead's clock when it was applied (its event time, or later)."""
    handoff_id: str | None = None
    applied: bool
    stale: bool = False
    outcome: str
    reason: str | None = None
    note: str | None = None
    framework: str | None = None
    criteria: dict[str, CriterionStatus] = Field(default_factory=dict)


class LeadState(BaseModel):
    """One lead (or anonymous visitor), JSON round-trippable and immutable.

    `rules` maps rule name to an uncapped ``[value, ref]`` pair (see decay.py).
    `clock` is the latest event time applied and the time the lifecycle was last
    evaluated at. `armed` is False after a sales rejection: the lead must fall
    below the recycle threshold before it can become an MQL again.
    `transition_seq` counts transitions, to order the lead's outbox; ids never
    derive from it. `account_id` and `account_traits` are the account the
    latest ``group`` call applied named (see `engine`), and that account's
    traits; None and empty until one does. `handoff_id` to `rearmed_at` are
    the sales feedback on the current handoff (see `scoring.feedback`).
    Fields added after the first
    release have defaults, so a state an older worker wrote still decodes
    during a rolling upgrade.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    lead_id: str
    anonymous: bool = False
    stage: Stage = Stage.IQL
    armed: bool = True
    clock: float = 0.0
    transition_seq: int = Field(default=0, ge=0)
    events_applied: int = Field(default=0, ge=0)
    rules: dict[str, RuleState] = Field(default_factory=dict)
    windows: dict[str, Window] = Field(default_factory=dict)
    """Window rule name -> its kept ``[time, points]`` events, oldest first
    (docs/architecture.md#rule-windows); rules without a window are in `rules`."""
    window_events_dropped: int = Field(default=0, ge=0)
    """In-window event times dropped because a window rule kept max_window_events."""
    traits: dict[str, JsonValue] = Field(default_factory=dict)
    merged_from: tuple[str, ...] = ()
    """Ids merged into this lead, oldest first; the model's max_merged_from most recent."""
    traits_dropped: int = Field(default=0, ge=0)
    """Trait values dropped by the model's limits (too many traits, too large)."""
    clamped_events: int = Field(default=0, ge=0)
    """Events whose future time was clamped to their record time plus skew."""
    last_clamp: Clamp | None = None
    account_id: str | None = None
    """The lead's account (a Segment ``group`` call's groupId), if one was named."""
    account_traits: dict[str, JsonValue] = Field(default_factory=dict)
    """Traits of `account_id` (always empty without one), bounded like `traits`."""
    account_traits_dropped: int = Field(default=0, ge=0)
    """Account trait values dropped by the model's limits."""
    handoff_id: str | None = None
    """The current handoff: the id of the lead's latest MQL->SAL transition.
    Feedback naming another handoff id is recorded, not applied."""
    handoff_at: float | None = None
    """Epoch seconds of the current handoff."""
    handoff_tier: str | None = None
    """The current handoff's success-ready tier (the model's ``tiers:``), if any."""
    accepted_at: float | None = None
    """When sales accepted the current handoff (``sales_accepted``), else None."""
    qualification: dict[str, dict[str, CriterionStatus]] = Field(default_factory=dict)
    """Framework -> criterion -> status, from the current handoff's qualification events."""
    feedback: tuple[FeedbackEntry, ...] = ()
    """Feedback events applied to the lead, oldest first; the model's max_feedback most recent."""
    cooldown_until: float | None = None
    """After a sales rejection: the lead cannot become an MQL before this (epoch seconds)."""
    rearmed_at: float | None = None
    """When the lead last re-armed: its engagement fell below recycle after it was
    disarmed (a rejection, a disqualification). None until that happens."""
    model_version: str | None = None
    """The `ScoringModel.model_version` that produced this state (its last fold,
    sweep or merge). None: written before states recorded their model."""


def new_lead(lead_id: str, anonymous: bool = False) -> LeadState:
    return LeadState(lead_id=lead_id, anonymous=anonymous)


def merge(known: LeadState, anonymous: LeadState, model: ScoringModel) -> LeadState:
    """Fold an anonymous profile into a known lead without losing a point.

    Rule pairs combine exactly as if one lead had received every event; traits
    the known lead has win (and keep their room under the limits); the known
    lead's account (id and traits, whole) wins if it has one, else the
    anonymous profile's is taken, its traits bounded again by the limits;
    stage, arming and transition count stay the known lead's; `merged_from`
    ends with the id merged now; `model_version` becomes `model`'s. No
    lifecycle runs here: apply the identify event that caused the merge to
    the result (or call `evaluate`), so any transition it triggers names that
    event. Call ``evaluate(known, event time)`` before
    merging, so a recycle the known lead was due on its own is not hidden by
    the merge.
    """
    if known.lead_id == anonymous.lead_id:
        raise ValueError(f"cannot merge lead {known.lead_id!r} into itself")
    rules = dict(known.rules)
    for name, other in anonymous.rules.items():
        mine = rules.get(name)
        rule = model.rules_by_name.get(name)
        if mine is None:
            rules[name] = other
        elif rule is None:
            # A rule the model no longer has never scores; keep the newer pair.
            rules[name] = max(mine, other, key=lambda pair: pair.ref)
        else:
            rules[name] = combine(mine, other, rule.life)
    clock = max(known.clock, anonymous.clock)
    windows, window_dropped = _merge_windows(known.windows, anonymous.windows, clock, model)
    # known traits win: only the anonymous profile's other keys are added
    extra = {key: value for key, value in anonymous.traits.items() if key not in known.traits}
    traits, dropped = merge_traits(known.traits, extra, model)
    merged_from = (
        *known.merged_from,
        *(i for i in anonymous.merged_from if i not in known.merged_from),
        anonymous.lead_id,
    )
    if known.account_id is not None or anonymous.account_id is None:
        account_id, account_traits, account_dropped = known.account_id, known.account_traits, 0
    else:
        account_id = anonymous.account_id
        account_traits, account_dropped = merge_account_traits({}, anonymous.account_traits, model)
    keep = model.limits.max_merged_from
    clamps = [clamp for clamp in (known.last_clamp, anonymous.last_clamp) if clamp is not None]
    return known.model_copy(
        update={
            "rules": rules,
            "traits": traits,
            "clock": clock,
            "windows": windows,
            "window_events_dropped": (
                known.window_events_dropped + anonymous.window_events_dropped + window_dropped
            ),
            "events_applied": known.events_applied + anonymous.events_applied,
            "merged_from": merged_from[-keep:] if keep else (),
            "traits_dropped": known.traits_dropped + anonymous.traits_dropped + dropped,
            "clamped_events": known.clamped_events + anonymous.clamped_events,
            "last_clamp": max(clamps, key=lambda clamp: clamp.clamped_to, default=None),
            "account_id": account_id,
            "account_traits": account_traits,
            "account_traits_dropped": (
                known.account_traits_dropped + anonymous.account_traits_dropped + account_dropped
            ),
            "model_version": model.model_version,
        }
    )


def _merge_windows(
    known: dict[str, Window], anonymous: dict[str, Window], clock: float, model: ScoringModel
) -> tuple[dict[str, Window], int]:
    """Window rules' events as if one lead had seen them all (`decay.window_union`),
    pruned at the merged clock as a lead folding them all would have.

    Events of a rule the model has not (or no longer as a window rule) are
    kept as they are, the known lead's if both have some.
    """
    if not known and not anonymous:
        return known, 0
    windows: dict[str, Window] = {}
    dropped = 0
    limit = model.limits.window_events_kept
    for name in dict.fromkeys((*known, *anonymous)):
        rule = model.rules_by_name.get(name)
        mine, theirs = known.get(name), anonymous.get(name)
        if rule is None or rule.window is None:
            windows[name] = mine if mine is not None else theirs or ()
            continue
        events, lost = window_union(
            mine or (), theirs or (), clock=clock, window=rule.window, limit=limit
        )
        dropped += lost
        if events:
            windows[name] = events
    return windows, dropped
