"""Scoring a lead: fold events in, read engagement, and decide funnel moves.

This module is docs/architecture.md#scoring-semantics in code: a rule's
contribution is its decayed, capped sum (`decay.contribution`), engagement is
`max(0, sum of contributions)`, fit and grade come from `fit`, the moves from
`lifecycle`. Hot loops run the speed-tuned twins in `fastpath`, which give
the same floats as the plain definitions (tests/unit/test_fastpath.py).

Events are folded in the order given (arrival order: Kafka's, within a lead),
not re-sorted by event time. Rule points decay from each event's own time, so
engagement does not depend on that order; the facts events state do. Traits
(an ``identify``'s) and the account (a ``group``'s) are what the event applied
last said: a late event (an earlier event time, applied later) still overwrites
them. A replay applies the same order, so it gives the same state.

A ``group`` event sets the lead's account: ``properties.account_id`` (an
identifier: a non-empty string of at most MAX_ID_LENGTH printable characters)
and ``properties.account_traits`` (an object), which merge like traits and
under the same limits (`fit.merge_account_traits`); a call naming another
account than the stored one replaces the account traits instead of merging
them. A ``group`` event without a valid account id changes no account (it
still counts and can match rules, like any event).

A rule with a ``window`` counts only its events of the last window
(docs/architecture.md#rule-windows): its kept events are `LeadState.windows`,
read by `recycle.WindowTerm`; a step down at a window end is a decay-driven
move like any other, dated exactly at the window end.

Idempotency per event id is not handled here: the state store drops an event
id it has already applied before calling `apply`. Applying one event twice
counts it twice.

Decay-driven recycling is exact and independent of when anyone looks: before
an event is applied, and whenever `evaluate` runs, the first moment decay alone
took the lead below `recycle` is searched for, and the NURTURE transition is
dated at that moment. A sweeper that runs late, early or not at all therefore
yields the same transitions (ids included) for events that arrive in time order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TypeGuard

from pydantic import JsonValue

from leadpulse.schemas import BehaviorEvent, RuleContribution, Stage, StageTransition, limits
from leadpulse.schemas.feedback import FeedbackError, is_feedback, parse_feedback
from leadpulse.scoring import fastpath
from leadpulse.scoring.decay import RuleState, Window, add, window_add, window_prune
from leadpulse.scoring.epoch import Instant, as_epoch, from_epoch, to_epoch
from leadpulse.scoring.feedback import Funnel, judge
from leadpulse.scoring.fit import fit_parts, fit_points, grade, merge_account_traits, merge_traits
from leadpulse.scoring.lifecycle import (
    RECYCLABLE,
    Move,
    clamp_note,
    recycle_move,
    threshold_moves,
    transition_id,
)
from leadpulse.scoring.model import EngagementRule, ScoringModel
from leadpulse.scoring.recycle import Term, WindowTerm, total
from leadpulse.scoring.state import Clamp, FeedbackEntry, LeadState
from leadpulse.scoring.tiers import tier_of

TOP_REASONS = 5
COOLING: frozenset[Stage] = frozenset({Stage.NURTURE, Stage.DISQUALIFIED})
"""Stages in which a disarmed lead re-arms when decay takes it below recycle."""
GROUP = "group"
NO_WINDOWS: Mapping[str, Window] = MappingProxyType({})
"""The event type that names a lead's account (a Segment ``group`` call)."""


def terms(state: LeadState, model: ScoringModel) -> list[Term | WindowTerm]:
    """Scoring rules the lead has state for: the rules without a window in model
    order, then the window rules in model order (a fixed summation order)."""
    found: list[Term | WindowTerm] = []
    for rule in model.engagement_rules:
        pair = state.rules.get(rule.name)
        if pair is not None and rule.window is None:
            found.append(Term(pair, rule.life, rule.cap))
    for rule in model.engagement_rules:
        events = state.windows.get(rule.name)
        if events and rule.window is not None:
            found.append(WindowTerm(events, rule.life, rule.window, rule.cap))
    return found


def engagement(state: LeadState, at: Instant, model: ScoringModel) -> float:
    """Times before `state.clock` read as `state.clock`: later events are folded in."""
    return max(0.0, total(terms(state, model), max(as_epoch(at), state.clock)))


def _engagement(
    rules: Mapping[str, RuleState],
    moment: float,
    model: ScoringModel,
    windows: Mapping[str, Window] = NO_WINDOWS,
) -> float:
    """`engagement` of a lead being folded, computed by the fast twin of `recycle.total`."""
    rows = fastpath.rows(rules, model.decay_specs)
    if not model.window_specs:
        return max(0.0, fastpath.total(rows, moment))
    found = fastpath.window_terms(windows, model.window_specs)
    return max(0.0, fastpath.total_with(rows, found, moment))


def _contributions(
    rules: Mapping[str, RuleState],
    windows: Mapping[str, Window],
    moment: float,
    model: ScoringModel,
) -> list[tuple[str, float, float]]:
    """(rule, capped, uncapped): the rules without a window, then the window rules."""
    found = fastpath.contributions(rules, moment, model.decay_specs)
    if model.window_specs:
        found += fastpath.window_contributions(windows, moment, model.window_specs)
    return found


def contributions(
    state: LeadState, at: Instant, model: ScoringModel
) -> list[tuple[str, float, float]]:
    """(rule, capped points, uncapped points) per rule with state, in `terms` order."""
    return _contributions(state.rules, state.windows, max(as_epoch(at), state.clock), model)


def _top_reasons(
    rules: Mapping[str, RuleState],
    windows: Mapping[str, Window],
    clock: float,
    at: float,
    model: ScoringModel,
) -> list[RuleContribution]:
    ranked = sorted(
        (
            item
            for item in _contributions(rules, windows, max(float(at), clock), model)
            if item[1] != 0
        ),
        key=lambda item: (-abs(item[1]), item[0]),
    )
    return [RuleContribution(rule=name, points=points) for name, points, _ in ranked[:TOP_REASONS]]


def top_reasons(state: LeadState, at: Instant, model: ScoringModel) -> list[RuleContribution]:
    """The rule contributions a transition at `at` names: the largest, at most TOP_REASONS."""
    return _top_reasons(state.rules, state.windows, state.clock, as_epoch(at), model)


def apply(
    state: LeadState, event: BehaviorEvent, model: ScoringModel
) -> tuple[LeadState, tuple[StageTransition, ...]]:
    """Fold one event into a lead and return the funnel moves, in order.

    A recycle that decay caused before the event comes first (dated at the
    crossing, no event id); then the moves the event causes at the lead's
    clock, which stays put for a late event so history is never re-judged.
    """
    return apply_many(state, (event,), model)


def apply_many(
    state: LeadState, events: Sequence[BehaviorEvent], model: ScoringModel
) -> tuple[LeadState, tuple[StageTransition, ...]]:
    """Fold events into a lead in order: exactly `apply` one after the other.

    The same states and transitions as a loop over `apply`, but one copy of
    the (immutable) state at the end instead of several per event, and fit is
    only computed when the lifecycle needs it. Refuses (before changing
    anything) if any event is for another subject.
    """
    lead_id = state.lead_id
    for event in events:
        if event.subject != lead_id:
            raise ValueError(f"event {event.event_id} is for {event.subject!r}, not {lead_id!r}")
    if not events:
        return state, ()
    work = _Work(state)
    for event in events:
        work.apply(event, model)
    return work.result(state, model), tuple(work.made)


def evaluate(
    state: LeadState, at: Instant, model: ScoringModel, *, hint: float | None = None
) -> tuple[LeadState, tuple[StageTransition, ...]]:
    """The moves decay alone causes up to `at`; what the sweeper calls.

    Only downward moves happen without an event. The clock never moves back
    and only moves forward to a crossing, so sweeping never changes how later
    events score. `hint` is where the crossing is expected (the sweeper's
    due-index entry, an earlier `next_recycle_at`): it only spares the search
    work when it is right, and changes nothing when it is wrong.
    """
    if state.anonymous:
        return state, ()
    moment = as_epoch(at)
    if moment < state.clock:
        return state, ()
    work = _Work(state)
    work.decay_until(moment, model, hint)
    if not work.made and work.armed == state.armed:
        return state, ()
    return work.result(state, model), tuple(work.made)


def next_recycle_at(state: LeadState, model: ScoringModel) -> float | None:
    """When decay alone will recycle this MQL/SAL lead, or None if it never will.

    The result t satisfies engagement(t) < recycle and, unless t is the clock,
    engagement(t - 1) >= recycle; it is at most 0.5 s late, and exact when a
    window rule's event leaving its window takes the lead below (t is that
    window end).
    """
    if state.anonymous or state.stage not in RECYCLABLE:
        return None
    return _dip(state.rules, state.windows, state.clock, model, until=None)


class _Work:
    """A lead being folded: mutable copies of the fields `apply` changes.

    One pydantic copy at the end (`result`) instead of one per event.
    """

    __slots__ = (
        "_fit",
        "_fit_traits",
        "accepted_at",
        "account_id",
        "account_traits",
        "account_traits_dropped",
        "anonymous",
        "armed",
        "clamped_events",
        "clock",
        "cooldown_until",
        "events_applied",
        "feedback",
        "handoff_at",
        "handoff_id",
        "handoff_tier",
        "last_clamp",
        "lead_id",
        "made",
        "qualification",
        "rearmed_at",
        "rules",
        "rules_copied",
        "stage",
        "traits",
        "traits_dropped",
        "transition_seq",
        "window_events_dropped",
        "windows",
        "windows_copied",
    )

    def __init__(self, state: LeadState) -> None:
        self.lead_id = state.lead_id
        self.anonymous = state.anonymous
        self.stage = state.stage
        self.armed = state.armed
        self.clock = state.clock
        self.transition_seq = state.transition_seq
        self.events_applied = state.events_applied
        self.rules = state.rules
        self.rules_copied = False
        self.windows = state.windows
        self.windows_copied = False
        self.window_events_dropped = state.window_events_dropped
        self.traits = state.traits
        self.traits_dropped = state.traits_dropped
        self.clamped_events = state.clamped_events
        self.last_clamp = state.last_clamp
        self.account_id = state.account_id
        self.account_traits = state.account_traits
        self.account_traits_dropped = state.account_traits_dropped
        self.handoff_id = state.handoff_id
        self.handoff_at = state.handoff_at
        self.handoff_tier = state.handoff_tier
        self.accepted_at = state.accepted_at
        self.qualification = state.qualification
        self.feedback = state.feedback
        self.cooldown_until = state.cooldown_until
        self.rearmed_at = state.rearmed_at
        self.made: list[StageTransition] = []
        self._fit_traits: dict[str, JsonValue] | None = None
        self._fit = 0.0

    def result(self, state: LeadState, model: ScoringModel) -> LeadState:
        """The folded lead, marked as produced by `model`."""
        return state.model_copy(
            update={
                "stage": self.stage,
                "armed": self.armed,
                "clock": self.clock,
                "transition_seq": self.transition_seq,
                "events_applied": self.events_applied,
                "rules": self.rules,
                "windows": self.windows,
                "window_events_dropped": self.window_events_dropped,
                "traits": self.traits,
                "traits_dropped": self.traits_dropped,
                "clamped_events": self.clamped_events,
                "last_clamp": self.last_clamp,
                "account_id": self.account_id,
                "account_traits": self.account_traits,
                "account_traits_dropped": self.account_traits_dropped,
                "handoff_id": self.handoff_id,
                "handoff_at": self.handoff_at,
                "handoff_tier": self.handoff_tier,
                "accepted_at": self.accepted_at,
                "qualification": self.qualification,
                "feedback": self.feedback,
                "cooldown_until": self.cooldown_until,
                "rearmed_at": self.rearmed_at,
                "model_version": model.model_version,
            }
        )

    def fit(self, model: ScoringModel) -> float:
        """fit_points of the current traits, computed once per traits version."""
        if self._fit_traits is not self.traits:
            self._fit = fit_points(self.traits, model)
            self._fit_traits = self.traits
        return self._fit

    def apply(self, event: BehaviorEvent, model: ScoringModel) -> None:
        """Decay up to the event, fold it in, then decide the moves it causes."""
        moment = to_epoch(event.occurred_at)
        if not self.anonymous and moment > self.clock:
            self.decay_until(moment, model)
        self.fold(event, moment, model)
        if not self.anonymous:  # anonymous profiles never move
            self.decide(event, model)

    def fold(self, event: BehaviorEvent, moment: float, model: ScoringModel) -> None:
        """Add the event's points to each rule it matches, at the event time.

        Traits merge within the model's limits, a ``group`` call sets the
        account (see the module docstring); a clamped event time is recorded.
        """
        properties = event.properties
        matched = [
            rule for rule, check in model.checks_by_event.get(event.type, ()) if check(properties)
        ]
        if model.window_specs:
            self.fold_windowed(matched, moment, model)
        elif matched:
            if not self.rules_copied:
                self.rules = dict(self.rules)
                self.rules_copied = True
            rules = self.rules
            for rule in matched:
                rules[rule.name] = add(rules.get(rule.name), rule.points, moment, rule.life)
        if event.traits:
            self.traits, dropped = merge_traits(self.traits, event.traits, model)
            self.traits_dropped += dropped
        if event.type == GROUP:
            self.group(properties, model)
        if event.reported_at is not None:
            self.clamped_events += 1
            self.last_clamp = Clamp(
                event_id=event.event_id, reported_at=to_epoch(event.reported_at), clamped_to=moment
            )
        self.clock = max(self.clock, moment)
        self.events_applied += 1

    def fold_windowed(
        self, matched: list[EngagementRule], moment: float, model: ScoringModel
    ) -> None:
        """`fold`'s rule part for a model with window rules.

        A window rule's event joins its kept events (unless it is already out
        of the window at the lead's clock); when the clock moves, every window
        rule drops the events it left behind, so the state stays small.
        """
        clock = max(self.clock, moment)
        if matched and not self.rules_copied:
            self.rules = dict(self.rules)
            self.rules_copied = True
        for rule in matched:
            if rule.window is None:
                self.rules[rule.name] = add(
                    self.rules.get(rule.name), rule.points, moment, rule.life
                )
                continue
            self.copy_windows()
            events, dropped = window_add(
                self.windows.get(rule.name, ()),
                rule.points,
                moment,
                clock=clock,
                window=rule.window,
                limit=model.limits.window_events_kept,
            )
            self.set_window(rule.name, events)
            self.window_events_dropped += dropped
        if clock > self.clock and self.windows:
            for name, _, window, _ in model.window_specs:
                kept = self.windows.get(name)
                if kept and (pruned := window_prune(kept, clock, window)) is not kept:
                    self.copy_windows()
                    self.set_window(name, pruned)

    def copy_windows(self) -> None:
        if not self.windows_copied:
            self.windows = dict(self.windows)
            self.windows_copied = True

    def set_window(self, name: str, events: Window) -> None:
        if events:
            self.windows[name] = events
        else:
            self.windows.pop(name, None)

    def group(self, properties: Mapping[str, JsonValue], model: ScoringModel) -> None:
        """A ``group`` call: the account it names, its traits merged (or replacing)."""
        account_id = properties.get("account_id")
        if not is_account_id(account_id):
            return
        update = properties.get("account_traits")
        current = self.account_traits if account_id == self.account_id else {}
        self.account_id = account_id
        if isinstance(update, dict):
            self.account_traits, dropped = merge_account_traits(current, update, model)
            self.account_traits_dropped += dropped
        else:
            self.account_traits = current

    def decide(self, event: BehaviorEvent, model: ScoringModel) -> None:
        """The moves at the lead's clock: sales feedback first, then the thresholds."""
        score = _engagement(self.rules, self.clock, model, self.windows)
        stage, armed = self.stage, self.armed
        moves: list[Move] = []
        if is_feedback(event.type):
            verdict = self.answer(event, model)
            if verdict is not None:
                moves.append(verdict)
                stage = verdict.to_stage
            armed = self.armed
        # threshold_moves reads the grade only once engagement reaches the
        # handoff threshold; below it, fit (the costly part) is not computed.
        if score >= model.lifecycle.handoff.engagement:
            letter = grade(self.fit(model), model)
        else:
            letter = model.lowest_grade
        cooled = self.cooldown_until is None or self.clock >= self.cooldown_until
        more, stage, now_armed = threshold_moves(stage, armed, score, letter, model, cooled=cooled)
        moves += more
        if now_armed and not armed:
            self.rearmed_at = self.clock
        self.armed = now_armed
        if not moves:
            return
        if event.reported_at is not None:
            moves = [Move(move.to_stage, move.reason + clamp_note(event)) for move in moves]
        fit = self.fit(model)
        self.record(
            moves,
            at=self.clock,
            score=score,
            fit=fit,
            letter=grade(fit, model),
            model=model,
            event_id=event.event_id,
        )

    def answer(self, event: BehaviorEvent, model: ScoringModel) -> Move | None:
        """Sales feedback (`scoring.feedback.judge`): recorded, and the move it makes.

        Sets the feedback fields and arming; the stage is left to `record`.
        Properties that are not valid feedback (`decode_event` rejects them, so
        only an event built in code has them) are recorded as not applied.
        """
        try:
            feedback = parse_feedback(event)
        except FeedbackError as exc:
            self.remember(
                FeedbackEntry(
                    event_id=event.event_id,
                    type=event.type,
                    at=self.clock,
                    applied=False,
                    outcome=f"not applied: invalid properties ({exc})",
                ),
                model,
            )
            return None
        assert feedback is not None  # is_feedback(event.type)
        funnel = Funnel(
            stage=self.stage,
            armed=self.armed,
            handoff_id=self.handoff_id,
            handoff_at=self.handoff_at,
            accepted_at=self.accepted_at,
            qualification=self.qualification,
            cooldown_until=self.cooldown_until,
        )
        verdict = judge(
            funnel,
            feedback,
            event_id=event.event_id,
            event_type=event.type,
            at=self.clock,
            model=model,
        )
        after = verdict.funnel
        self.armed = after.armed
        self.accepted_at = after.accepted_at
        self.qualification = after.qualification
        self.cooldown_until = after.cooldown_until
        self.remember(verdict.entry, model)
        return verdict.move

    def remember(self, entry: FeedbackEntry, model: ScoringModel) -> None:
        keep = model.limits.feedback_kept
        self.feedback = (*self.feedback, entry)[-keep:] if keep else ()

    def decay_until(self, until: float, model: ScoringModel, hint: float | None = None) -> None:
        """A recycle decay alone caused before `until`, dated at the crossing.

        A lead sales rejected or disqualified re-arms silently instead, once
        it has cooled down.
        """
        recyclable = self.stage in RECYCLABLE
        if not recyclable and (self.stage not in COOLING or self.armed):
            return
        dip = _dip(self.rules, self.windows, self.clock, model, until=until, hint=hint)
        if dip is None:
            return
        if not recyclable:
            self.armed = True
            self.rearmed_at = max(dip, self.clock)
            return
        score = _engagement(self.rules, max(dip, self.clock), model, self.windows)
        fit = self.fit(model)
        self.record(
            [recycle_move(score, model, by_decay=True)],
            at=dip,
            score=score,
            fit=fit,
            letter=grade(fit, model),
            model=model,
            event_id=None,
        )
        self.armed = True
        self.clock = max(self.clock, dip)

    def record(
        self,
        moves: list[Move],
        *,
        at: float,
        score: float,
        fit: float,
        letter: str,
        model: ScoringModel,
        event_id: str | None,
    ) -> None:
        reasons = _top_reasons(self.rules, self.windows, self.clock, at, model)
        occurred_at = from_epoch(at)
        crossing = at if event_id is None else None
        stage, seq = self.stage, self.transition_seq
        for move in moves:
            seq += 1  # orders the lead's messages in the outbox; never names one
            made_id = transition_id(
                self.lead_id, stage, move.to_stage, event_id=event_id, crossing=crossing
            )
            handoff = stage is Stage.MQL and move.to_stage is Stage.SAL
            tier = self.tier(at, score, fit, letter, model) if handoff else None
            if handoff:  # a new handoff: feedback now answers this one
                self.handoff_id, self.handoff_at, self.handoff_tier = made_id, at, tier
                self.accepted_at, self.qualification = None, {}
            self.made.append(
                StageTransition(
                    transition_id=made_id,
                    lead_id=self.lead_id,
                    from_stage=stage,
                    to_stage=move.to_stage,
                    engagement=score,
                    fit=fit,
                    grade=letter,
                    occurred_at=occurred_at,
                    model_version=model.model_version,
                    reason=move.reason,
                    event_id=event_id,
                    reasons=reasons,
                    tier=tier,
                )
            )
            stage = move.to_stage
        self.stage, self.transition_seq = stage, seq

    def tier(
        self, at: float, score: float, fit: float, letter: str, model: ScoringModel
    ) -> str | None:
        """The success-ready tier at a handoff (`scoring.tiers`)."""
        if model.spec.tiers is None:
            return None
        parts = _contributions(self.rules, self.windows, max(at, self.clock), model)
        return tier_of(
            model,
            engagement=score,
            fit=fit,
            grade=letter,
            contributions={name: points for name, points, _ in parts},
            fit_matched={part.rule for part in fit_parts(self.traits, model)},
        )


def is_account_id(value: object) -> TypeGuard[str]:
    """Whether a ``group`` event's ``account_id`` can name an account.

    The rules of an event's ids: a non-empty string of at most MAX_ID_LENGTH
    characters, none of them a control character (it becomes a Kafka key and
    part of Redis keys in the account roll-up).
    """
    return (
        isinstance(value, str)
        and 0 < len(value) <= limits.MAX_ID_LENGTH
        and not any(ord(char) < 32 or ord(char) == 127 for char in value)
    )


def _dip(
    rules: Mapping[str, RuleState],
    windows: Mapping[str, Window],
    clock: float,
    model: ScoringModel,
    *,
    until: float | None,
    hint: float | None = None,
) -> float | None:
    """The first moment at or after `clock` decay alone takes engagement below recycle.

    None if that never happens, or not by `until` (the next event's time).
    """
    threshold = model.lifecycle.recycle
    if threshold <= 0:
        return None  # engagement is never negative, so it cannot go below 0
    rows = fastpath.rows(rules, model.decay_specs)
    if not model.window_specs:
        return fastpath.first_dip(rows, threshold, clock, until, hint)
    found = fastpath.window_terms(windows, model.window_specs)
    return fastpath.first_dip(rows, threshold, clock, until, hint, windows=found)
