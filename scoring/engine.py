"""Scoring a lead: fold events in, read engagement, and decide funnel moves.

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

import math
from collections.abc import Callable, Mapping, Sequence

from pydantic import JsonValue

from schemas import BehaviorEvent, RuleContribution, Stage, StageTransition
from scoring.decay import RuleState, add, decayed
from scoring.epoch import Instant, as_epoch, from_epoch, to_epoch
from scoring.fit import fit_points, grade, merge_traits
from scoring.lifecycle import (
    RECYCLABLE,
    Move,
    recycle_move,
    sales_move,
    threshold_moves,
    transition_id,
)
from scoring.model import ScoringModel
from scoring.recycle import HORIZON_HALF_LIVES, TOLERANCE, Term, first_below, total
from scoring.state import LeadState

TOP_REASONS = 5
LN2 = math.log(2.0)


def terms(state: LeadState, model: ScoringModel) -> list[Term]:
    """Scoring rules the lead has state for, in model order (a fixed summation order)."""
    found = []
    for rule in model.engagement_rules:
        pair = state.rules.get(rule.name)
        if pair is not None:
            found.append(Term(pair, rule.half_life, rule.cap))
    return found


_Row = tuple[float, float, float, float | None]
"""One rule a lead has state for: value, ref, half-life, cap (a `Term`, flat)."""
_Spec = tuple[str, float, float | None]
_SPECS: dict[int, tuple[ScoringModel, tuple[_Spec, ...]]] = {}


def _specs(model: ScoringModel) -> tuple[_Spec, ...]:
    """(name, half-life, cap) of the engagement rules in model order, looked up once."""
    known = _SPECS.get(id(model))
    if known is not None and known[0] is model:
        return known[1]
    specs = tuple((rule.name, rule.half_life, rule.cap) for rule in model.engagement_rules)
    if len(_SPECS) >= 64:
        _SPECS.clear()
    _SPECS[id(model)] = (model, specs)
    return specs


def _rows(rules: Mapping[str, RuleState], model: ScoringModel) -> list[_Row]:
    found = []
    for name, life, cap in _specs(model):
        pair = rules.get(name)
        if pair is not None:
            found.append((pair[0], pair[1], life, cap))
    return found


def _parts(rows: Sequence[_Row], moment: float) -> list[float]:
    """Each row's contribution at `moment`, computed exactly as `decay.contribution`."""
    out = []
    for value, ref, life, cap in rows:
        elapsed = moment - ref
        x = value if elapsed == 0 or value == 0 else value * math.exp2(-elapsed / life)
        if cap is not None:
            x = min(cap, max(-cap, x))
        out.append(x)
    return out


def _level(rows: Sequence[_Row], moment: float) -> float:
    """`recycle.total`, to the bit: the same parts summed by the same `sum`."""
    return sum(_parts(rows, moment), 0.0)


def _plain(parts: Sequence[float]) -> float:
    """A running sum, as `recycle.lower_bound` adds."""
    bound = 0.0
    for x in parts:
        bound += x
    return bound


def _lower_bound(rows: Sequence[_Row], start: float, end: float) -> float:
    """`recycle.lower_bound`, to the bit: positives read at `end`, the rest at `start`."""
    bound = 0.0
    for value, ref, life, cap in rows:
        elapsed = (end if value > 0 else start) - ref
        x = value if elapsed == 0 or value == 0 else value * math.exp2(-elapsed / life)
        if cap is not None:
            x = min(cap, max(-cap, x))
        bound += x
    return bound


def engagement(state: LeadState, at: Instant, model: ScoringModel) -> float:
    """Times before `state.clock` read as `state.clock`: later events are folded in."""
    return max(0.0, total(terms(state, model), max(as_epoch(at), state.clock)))


def contributions(
    state: LeadState, at: Instant, model: ScoringModel
) -> list[tuple[str, float, float]]:
    """(rule, capped points, uncapped points) per rule with state, in model order."""
    return _contributions(state.rules, max(as_epoch(at), state.clock), model)


def _contributions(
    rules: Mapping[str, RuleState], moment: float, model: ScoringModel
) -> list[tuple[str, float, float]]:
    result = []
    for name, life, cap in _specs(model):
        pair = rules.get(name)
        if pair is not None:
            # `decay.contribution`, capped and not, from one decay of the pair
            value, ref = pair
            raw = decayed(value, moment - ref, life)
            result.append((name, raw if cap is None else min(cap, max(-cap, raw)), raw))
    return result


def top_reasons(state: LeadState, at: float, model: ScoringModel) -> list[RuleContribution]:
    return _top_reasons(state.rules, state.clock, at, model)


def _top_reasons(
    rules: Mapping[str, RuleState], clock: float, at: float, model: ScoringModel
) -> list[RuleContribution]:
    ranked = sorted(
        (item for item in _contributions(rules, max(float(at), clock), model) if item[1] != 0),
        key=lambda item: (-abs(item[1]), item[0]),
    )
    return [RuleContribution(rule=name, points=points) for name, points, _ in ranked[:TOP_REASONS]]


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
    return work.result(state), tuple(work.made)


class _Work:
    """A lead being folded: mutable copies of the fields `apply` changes."""

    __slots__ = (
        "_fit",
        "_fit_traits",
        "anonymous",
        "armed",
        "clock",
        "events_applied",
        "lead_id",
        "made",
        "rules",
        "rules_copied",
        "stage",
        "traits",
        "transition_seq",
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
        self.traits = state.traits
        self.made: list[StageTransition] = []
        self._fit_traits: dict[str, JsonValue] | None = None
        self._fit = 0.0

    def result(self, state: LeadState) -> LeadState:
        return state.model_copy(
            update={
                "stage": self.stage,
                "armed": self.armed,
                "clock": self.clock,
                "transition_seq": self.transition_seq,
                "events_applied": self.events_applied,
                "rules": self.rules,
                "traits": self.traits,
            }
        )

    def fit(self, model: ScoringModel) -> float:
        """fit_points of the current traits, computed once per traits version."""
        if self._fit_traits is not self.traits:
            self._fit = fit_points(self.traits, model)
            self._fit_traits = self.traits
        return self._fit

    def apply(self, event: BehaviorEvent, model: ScoringModel) -> None:
        moment = to_epoch(event.occurred_at)
        if not self.anonymous and moment > self.clock:
            self.decay_until(moment, model)
        properties = event.properties
        matched = [
            rule for rule, check in model.checks_by_event.get(event.type, ()) if check(properties)
        ]
        if matched:
            if not self.rules_copied:
                self.rules = dict(self.rules)
                self.rules_copied = True
            rules = self.rules
            for rule in matched:
                rules[rule.name] = add(rules.get(rule.name), rule.points, moment, rule.half_life)
        if event.traits:
            self.traits = merge_traits(self.traits, event.traits)
        self.clock = max(self.clock, moment)
        self.events_applied += 1
        if self.anonymous:
            return

        score = max(0.0, _level(_rows(self.rules, model), self.clock))
        stage, armed = self.stage, self.armed
        moves: list[Move] = []
        verdict = sales_move(stage, event.type, model)
        if verdict is not None:
            moves.append(verdict)
            stage = verdict.to_stage
            if stage is Stage.NURTURE:
                armed = False
        # threshold_moves reads the grade only once engagement reaches the
        # handoff threshold; below it, fit (the costly part) is not computed.
        if score >= model.lifecycle.handoff.engagement:
            letter = grade(self.fit(model), model)
        else:
            letter = model.lowest_grade
        more, stage, armed = threshold_moves(stage, armed, score, letter, model)
        moves += more
        self.armed = armed
        if not moves:
            return
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

    def decay_until(self, until: float, model: ScoringModel, hint: float | None = None) -> None:
        """`_decay_until` on the working copy: a recycle decay caused before `until`."""
        recyclable = self.stage in RECYCLABLE
        if not recyclable and (self.stage is not Stage.NURTURE or self.armed):
            return
        dip = _dip(self.rules, self.clock, model, until, hint)
        if dip is None:
            return
        if not recyclable:  # a rejected lead re-arms silently once it has cooled down
            self.armed = True
            return
        score = max(0.0, _level(_rows(self.rules, model), max(dip, self.clock)))
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
        reasons = _top_reasons(self.rules, self.clock, at, model)
        occurred_at = from_epoch(at)
        stage, seq = self.stage, self.transition_seq
        for move in moves:
            seq += 1
            self.made.append(
                StageTransition(
                    transition_id=transition_id(self.lead_id, seq),
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
                )
            )
            stage = move.to_stage
        self.stage, self.transition_seq = stage, seq


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
    return work.result(state), tuple(work.made)


def next_recycle_at(state: LeadState, model: ScoringModel) -> float | None:
    """When decay alone will recycle this MQL/SAL lead, or None if it never will.

    The result t satisfies engagement(t) < recycle and, unless t is the clock,
    engagement(t - 1) >= recycle; it is at most 0.5 s late.
    """
    if state.anonymous or state.stage not in RECYCLABLE:
        return None
    return _dip(state.rules, state.clock, model, None)


def _dip(
    rules: Mapping[str, RuleState],
    clock: float,
    model: ScoringModel,
    until: float | None,
    hint: float | None = None,
) -> float | None:
    """The first moment at or after `clock` decay alone takes engagement below recycle."""
    threshold = model.lifecycle.recycle
    if threshold <= 0:
        return None  # engagement is never negative, so it cannot go below 0
    rows = _rows(rules, model)
    start = clock
    if until is not None and _lower_bound(rows, start, until) >= threshold:
        return None  # cheap common case: no dip possible before the next event
    end = start + HORIZON_HALF_LIVES * max((life for _, _, life, _ in rows), default=0.0)
    dip = _first_below(rows, threshold, start, end, hint)
    if dip is None or (until is not None and dip > until):
        return None
    return dip


class _UnsureError(Exception):
    """The fast search cannot vouch for its answer: use the reference search."""


def _first_below(
    rows: list[_Row], threshold: float, start: float, end: float, hint: float | None = None
) -> float | None:
    """`recycle.first_below`, faster when every rule's value is positive.

    Same result, to the bit: for positive values engagement only falls, so
    the reference branch-and-bound walks a single path down its tree of
    midpoints; `_descend` walks the same path, computing the same midpoints,
    and skips evaluating engagement where its sign is already certain.
    """
    if rows and all(value > 0 for value, _, _, _ in rows):
        try:
            return _descend(rows, threshold, start, end, hint)
        except _UnsureError:
            pass
    found = [Term(RuleState(v, r), life, cap) for v, r, life, cap in rows]
    return first_below(found, threshold, start, end)


def _descend(
    rows: list[_Row], threshold: float, start: float, end: float, hint: float | None = None
) -> float | None:
    """The reference search's path for positive, hence non-increasing, engagement.

    `_parts(t)` are the terms' contributions exactly as `Term.at` computes
    them; `sum(parts, 0.0)` is `recycle.total`, the plain running sum is
    `recycle.lower_bound` (which reads positive terms at the interval's end).
    A bracket [lo, hi] found by Newton steps tells the side of the threshold
    without evaluating: anything at or before `lo` is above it, at or after
    `hi` below, with a margin far beyond rounding error. Between them every
    midpoint is evaluated exactly as the reference does; if the two sums ever
    disagree the answer is left to the reference.
    """
    first = _parts(rows, start)
    if sum(first, 0.0) < threshold:
        return start
    if _plain(_parts(rows, end)) >= threshold:
        return None  # the root is pruned: no dip before the horizon
    lo, hi = _bracket(
        rows, threshold=threshold, start=start, end=end, level=_plain(first), hint=hint
    )
    a, b = start, end
    b_below = False  # known: the reference's total(b) < threshold
    while True:
        if b - a <= TOLERANCE:
            if b_below or _level(rows, b) < threshold:
                return b
            raise _UnsureError
        middle = (a + b) / 2
        if middle <= lo:
            below = False
        elif middle >= hi:
            below = True
        else:
            xs = _parts(rows, middle)
            below = sum(xs, 0.0) < threshold
            if below != (_plain(xs) < threshold):
                raise _UnsureError
        if below:
            b, b_below = middle, True
        else:
            a = middle


NEWTON_STEPS = 40


def _bracket(
    rows: list[_Row],
    *,
    threshold: float,
    start: float,
    end: float,
    level: float,
    hint: float | None = None,
) -> tuple[float, float]:
    """(lo, hi): engagement is certainly >= threshold up to lo, < threshold from hi.

    Only speed depends on how tight it is, never the answer: every point is
    classified with the exact sum and a margin `delta`, thousands of times
    the rounding error of the sums (a few ulps per term, growing with the
    number of half-lives the horizon spans); what is too close to call is
    left unclassified. Newton's method on log(engagement) from the left finds
    the crossing (between cap kinks the log of a sum of exponentials is
    convex, so steps land before it; steps stop at kinks); if a step lands
    past it, a safeguarded secant narrows the bracket; last, probes either
    side of the estimate. `level` is the running sum at `start`. A `hint`
    (an earlier answer for these terms) is tried first: when the points just
    before and at it classify as above and below, that is the bracket.
    """
    total_value = sum(value for value, _, _, _ in rows)
    lives = (end - min(ref for _, ref, _, _ in rows)) / min(life for _, _, life, _ in rows)
    search = _Search(
        level_at=lambda moment: _plain(_parts(rows, moment)),
        threshold=threshold,
        delta=1e-12 * total_value * (1.0 + lives + len(rows)),
    )
    if hint is not None and start < hint - TOLERANCE and hint < end:
        after = search.classify(hint)
        before = search.classify(hint - TOLERANCE)
        if after is not None and before is not None and after < threshold <= before:
            return search.lo, search.hi
    target = math.log(threshold)
    moment = start
    slope, kink = _slope(rows, start)
    for _ in range(NEWTON_STEPS):
        if not search.record(moment, level) or level < threshold:
            break
        if slope > 0:
            following = min(moment + (math.log(level) - target) * level / slope, kink)
        elif kink < math.inf:
            following = kink
        else:
            break
        if not moment < following < end:
            break
        converged = following - moment < TOLERANCE / 16
        moment = following
        level, slope, kink = _probe(rows, moment)
        if converged:
            search.record(moment, level)
            break
    for _ in range(NEWTON_STEPS):
        if not (search.bounded and search.hi - search.lo > TOLERANCE / 4):
            break
        lo, hi = search.lo, search.hi
        low, high = math.log(search.lo_level), math.log(search.hi_level)
        guess = lo + (hi - lo) * (low - target) / (low - high)
        moment = min(max(guess, lo + (hi - lo) / 16), hi - (hi - lo) / 16)
        if search.classify(moment) is None:
            break
    search.probe(moment, -1, floor=start)
    search.probe(moment, +1, ceiling=end)
    return search.lo, search.hi


def _probe(rows: list[_Row], moment: float) -> tuple[float, float, float]:
    """The running sum at `moment` (as `_plain(_parts(...))`), and `_slope` there."""
    level = 0.0
    slope = 0.0
    kink = math.inf
    for value, ref, life, cap in rows:
        elapsed = moment - ref
        raw = value if elapsed == 0 or value == 0 else value * math.exp2(-elapsed / life)
        if cap is None:
            level += raw
            slope += LN2 / life * raw
            continue
        x = min(cap, max(-cap, raw))
        level += x
        if raw <= cap * (1 + 1e-9):
            slope += LN2 / life * x
        else:
            kink = min(kink, ref + life * math.log2(value / cap))
    return level, slope, kink


def _slope(rows: list[_Row], moment: float) -> tuple[float, float]:
    """-d/dt engagement at `moment`, and the next time a capped term starts to fall.

    A term still at its cap (or within a hair of it) counts in the slope,
    which only shortens a Newton step, never lets it pass the crossing.
    """
    _, slope, kink = _probe(rows, moment)
    return slope, kink


class _Search:
    """Points classified so far: the latest certainly above, the earliest certainly below."""

    __slots__ = ("delta", "hi", "hi_level", "level_at", "lo", "lo_level", "threshold")

    def __init__(
        self, *, level_at: Callable[[float], float], threshold: float, delta: float
    ) -> None:
        self.level_at = level_at
        self.threshold = threshold
        self.delta = delta
        self.lo, self.hi = -math.inf, math.inf
        self.lo_level = self.hi_level = threshold

    @property
    def bounded(self) -> bool:
        return -math.inf < self.lo and self.hi < math.inf

    def classify(self, moment: float) -> float | None:
        """The level at `moment`, recorded if certain; None when too close to call."""
        level = self.level_at(moment)
        return level if self.record(moment, level) else None

    def record(self, moment: float, level: float) -> bool:
        """Note a point whose side is certain; False when too close to call."""
        if level >= self.threshold + self.delta:
            if moment > self.lo:
                self.lo, self.lo_level = moment, level
            return True
        if level <= self.threshold - self.delta:
            if moment < self.hi:
                self.hi, self.hi_level = moment, level
            return True
        return False

    def probe(
        self, moment: float, direction: int, *, floor: float = -math.inf, ceiling: float = math.inf
    ) -> None:
        """Look for a certain point a little before (-1) or after (+1) `moment`."""
        step = TOLERANCE / 8
        for _ in range(NEWTON_STEPS):
            if self.hi - self.lo <= TOLERANCE / 2:
                return
            probe = moment + direction * step
            if not max(self.lo, floor) < probe < min(self.hi, ceiling):
                return
            level = self.classify(probe)
            if level is not None and (level < self.threshold) == (direction > 0):
                return
            step *= 4
