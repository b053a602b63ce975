"""The scoring model file as validated, immutable data.

Structure and per-value checks live in the pydantic models; checks that relate
several values (unique names, grade order, threshold order) are in
`semantic_issues` so each problem can point at the exact value to fix.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Annotated, Final, NamedTuple, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    model_validator,
)

from leadpulse.schemas.feedback import FRAMEWORK_CRITERIA, Framework
from leadpulse.schemas.limits import EVENT_TYPE_PATTERN, MAX_KEY_LENGTH, MAX_MESSAGE_BYTES
from leadpulse.schemas.segment import normalise_event_name
from leadpulse.scoring.durations import parse_duration
from leadpulse.scoring.matchers import (
    SPEC_CONFIG,
    Condition,
    FieldPath,
    Ops,
    _Missing,
    describe,
    is_number,
    lookup,
    number,
)

Path = tuple[str | int, ...]
"""Where a value sits in the model file, as pydantic reports locations."""

RULE_NAME_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
EVENT_PATTERN: Final = re.compile(EVENT_TYPE_PATTERN)
VERSION_PATTERN: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
GRADE_LETTERS: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
NO_DECAY: Final = "none"
"""``half_life: none``: the rule's points never fade (cumulative, as Mautic scores)."""
MIN_WINDOW: Final = 1.0
"""Seconds: a shorter window is a typo (the upper bound is `durations.MAX_SECONDS`)."""


def _rule_name(value: object) -> str:
    if not isinstance(value, str) or not RULE_NAME_PATTERN.match(value):
        raise ValueError(
            f"invalid rule name {describe(value)}: use 1-64 lowercase letters, digits, "
            "'_', '.' or '-', starting with a letter or digit"
        )
    return value


def _event_type(value: object) -> str:
    if not isinstance(value, str) or not EVENT_PATTERN.match(value):
        raise ValueError(
            f"invalid event type {describe(value)}: use 1-64 lowercase letters, digits, "
            "'_', '.', ':' or '-', starting with a letter"
        )
    return value


def _mapped_event_type(value: object) -> str:
    """An ``events:`` value: an event type, with the normalised form as a hint."""
    if isinstance(value, str) and EVENT_PATTERN.match(value):
        return value
    hint = normalise_event_name(value) if isinstance(value, str) else None
    suggestion = f"; did you mean '{hint}'?" if hint else ""
    raise ValueError(
        f"invalid event type {describe(value)}{suggestion} (use 1-64 lowercase letters, "
        "digits, '_', '.', ':' or '-', starting with a letter)"
    )


def _tracker_key(value: object, what: str, hint: str) -> str:
    """A name as trackers send it: 1-MAX_KEY_LENGTH characters, no control characters."""
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= MAX_KEY_LENGTH
        or any(ord(char) < 32 or ord(char) == 127 for char in value)
    ):
        raise ValueError(
            f"invalid {what} {describe(value)}: {hint} "
            f"(1-{MAX_KEY_LENGTH} characters, no control characters)"
        )
    return value


def _segment_event_name(value: object) -> str:
    return _tracker_key(value, "event name", "use the name as the tracker sends it")


def _no_empty_events(value: object) -> object:
    return None if value == {} else value


def _number(value: object, what: str) -> float:
    if not is_number(value):
        raise ValueError(f"{what} must be a number, got {describe(value)}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number):
        raise ValueError(f"{what} must be a finite number, got {describe(value)}")
    return number


def _points(value: object) -> float:
    points = _number(value, "points")
    if points == 0:
        raise ValueError("points must not be 0 (a rule that scores nothing is a mistake)")
    return points


def _cap(value: object) -> float:
    cap = _number(value, "cap")
    if cap <= 0:
        raise ValueError(f"cap must be greater than 0, got {describe(value)}")
    return cap


def _threshold(value: object) -> float:
    threshold = _number(value, "threshold")
    if threshold < 0:
        raise ValueError(
            f"threshold must be at least 0 (engagement never is), got {number(threshold)}"
        )
    return threshold


def _grade_threshold(value: object) -> float:
    return _number(value, "grade threshold")


def _duration(value: object) -> float:
    return parse_duration(value)


def _rule_half_life(value: object) -> float | None:
    """A rule's half-life: a duration, or ``none`` (or null) for points that never fade."""
    if value is None or (isinstance(value, str) and value.strip().lower() == NO_DECAY):
        return None
    return parse_duration(value)


def _window(value: object) -> float:
    seconds = parse_duration(value)
    if seconds < MIN_WINDOW:
        raise ValueError(f"window {describe(value)} is shorter than 1s")
    return seconds


def _version(value: object) -> str:
    if not isinstance(value, str) or not VERSION_PATTERN.match(value):
        raise ValueError(
            f"invalid version {describe(value)}: use a quoted string of letters, digits, "
            "'.', '_' or '-' (e.g. \"2026-11-a\")"
        )
    return value


def _conditions(value: object) -> object:
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and value:
        return value
    raise ValueError(
        f"expected a condition or a non-empty list of conditions, got {describe(value)}"
    )


def _some_rules(rules: tuple[EngagementRule, ...]) -> tuple[EngagementRule, ...]:
    if not rules:
        raise ValueError("declare at least one rule: a model that scores nothing is a mistake")
    return rules


def _grade_letter(value: object) -> str:
    if not isinstance(value, str) or len(value) != 1 or value not in GRADE_LETTERS:
        raise ValueError(f"expected a grade letter A-Z, got {describe(value)}")
    return value


def _trait_key(value: object) -> str:
    return _tracker_key(value, "trait name", "use a trait key as trackers send it")


def _count(what: str, low: int, high: int) -> Callable[[object], int]:
    def check(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(
                f"{what} must be a whole number from {low} to {high}, got {describe(value)}"
            )
        return value

    return check


RuleName = Annotated[str, BeforeValidator(_rule_name)]
EventType = Annotated[str, BeforeValidator(_event_type)]
Points = Annotated[float, BeforeValidator(_points)]
Cap = Annotated[float, BeforeValidator(_cap)]
Threshold = Annotated[float, BeforeValidator(_threshold)]
GradeThreshold = Annotated[float, BeforeValidator(_grade_threshold)]
HalfLife = Annotated[float, BeforeValidator(_duration)]
"""Seconds; written as ``7d`` in the file."""
RuleHalfLife = Annotated[float | None, BeforeValidator(_rule_half_life)]
"""Seconds, or None for no decay (``half_life: none``)."""
WindowLength = Annotated[float, BeforeValidator(_window)]
"""Seconds a window rule counts an event for; written as ``90d``."""


class EngagementRule(BaseModel):
    """Points for an event type, fading with a half-life, optionally capped.

    `half_life` is required; None (``half_life: none``) means no decay. With a
    `window`, only the matched events of the last `window` seconds count
    (docs/architecture.md#rule-windows). Both absent from the canonical form
    when None, so files without them keep their model version.
    """

    model_config = SPEC_CONFIG

    name: RuleName
    event: EventType
    when: Annotated[tuple[Condition, ...], BeforeValidator(_conditions)] = ()
    points: Points
    half_life: RuleHalfLife
    window: WindowLength | None = None
    cap: Cap | None = None

    @property
    def life(self) -> float:
        """The half-life as the decay arithmetic reads it: infinite for no decay."""
        return math.inf if self.half_life is None else self.half_life

    def matches(self, properties: dict[str, JsonValue]) -> bool:
        return all(condition.matches(properties) for condition in self.when)

    def check(self) -> Callable[[dict[str, JsonValue]], bool]:
        """`matches` as a plain function, built once per model (every event runs it)."""
        tests = tuple(condition.compiled() for condition in self.when)
        if not tests:
            return _always
        if len(tests) == 1:
            return tests[0]
        return lambda properties: all(test(properties) for test in tests)


def _always(properties: dict[str, JsonValue]) -> bool:
    return True


class Engagement(BaseModel):
    model_config = SPEC_CONFIG

    rules: Annotated[tuple[EngagementRule, ...], AfterValidator(_some_rules)]


class FitRule(Ops):
    """Points for who the lead is; no decay, recomputed from current traits."""

    name: RuleName
    trait: FieldPath
    points: Points

    @model_validator(mode="after")
    def _one_op(self) -> Self:
        self.check_one_op("a fit rule")
        return self

    def matches(self, traits: dict[str, JsonValue]) -> bool:
        return self.test(lookup(traits, self.trait))

    def check(self) -> FitCheck:
        """(points, trait path, predicate): `matches` in the form fit runs it."""
        return FitCheck(self.points, self.trait, self.predicate())


class FitCheck(NamedTuple):
    points: float
    trait: tuple[str, ...]
    test: Callable[[JsonValue | _Missing], bool]

    def matches(self, traits: dict[str, JsonValue]) -> bool:
        return self.test(lookup(traits, self.trait))


class Fit(BaseModel):
    model_config = SPEC_CONFIG

    rules: tuple[FitRule, ...] = ()
    grades: dict[str, GradeThreshold]


TraitKey = Annotated[str, BeforeValidator(_trait_key)]
SegmentEventName = Annotated[str, BeforeValidator(_segment_event_name)]
MappedEventType = Annotated[str, BeforeValidator(_mapped_event_type)]


class HandoffRule(BaseModel):
    """When an MQL is handed off, and which traits the handoff carries.

    `profile` lists the traits (top-level keys) a `Handoff` carries; a tracker's
    other traits never reach sales tools. Not declared: the traits the fit rules
    read, which explain the grade. ``profile: []`` carries none.
    """

    model_config = SPEC_CONFIG

    engagement: Threshold
    min_grade: Annotated[str, BeforeValidator(_grade_letter)]
    profile: tuple[TraitKey, ...] | None = None


def _framework(value: object) -> Framework:
    if isinstance(value, str) and value in Framework.__members__.values():
        return Framework(value)
    raise ValueError(
        f"unknown framework {describe(value)}: use one of "
        f"{', '.join(framework.value for framework in Framework)}"
    )


def _criterion(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a criterion name, got {describe(value)}")
    return value


class SqlRule(BaseModel):
    """When a qualified SAL becomes an SQL: ``lifecycle.sql`` in the model file.

    The SDR's latest `qualification` of the current handoff, in `framework`,
    must have every `require` criterion met and at least `min_met` criteria
    met in all (default: the number required, or every criterion of the
    framework when none is required).
    """

    model_config = SPEC_CONFIG

    framework: Annotated[Framework, BeforeValidator(_framework)]
    require: tuple[Annotated[str, BeforeValidator(_criterion)], ...] = ()
    min_met: Annotated[int, BeforeValidator(_count("min_met", 1, 100))] | None = None

    @property
    def criteria(self) -> tuple[str, ...]:
        return FRAMEWORK_CRITERIA[self.framework]

    @property
    def needed(self) -> int:
        """How many criteria must be met: `min_met`, or its default."""
        if self.min_met is not None:
            return self.min_met
        return len(self.require) or len(self.criteria)


class Lifecycle(BaseModel):
    """Thresholds, the handoff rule, and what sales feedback does.

    `sql` is the qualification rule (SAL to SQL on a framework's criteria;
    without it a `qualification` is recorded but moves nothing).
    `rejection_cooldown` (seconds, written ``3d``) is how long a lead sales
    rejected stays out of MQL at least, on top of falling below recycle.
    """

    model_config = SPEC_CONFIG

    mql: Threshold
    handoff: HandoffRule
    recycle: Threshold
    sql: SqlRule | None = None
    rejection_cooldown: HalfLife | None = None


def _tier_points(value: object) -> float:
    return _number(value, "a rule's minimum points")


class TierRule(BaseModel):
    """One success-ready tier: every condition given must hold at the handoff.

    `rules` maps an engagement rule to the least contribution (decayed, capped
    points at the handoff) it must have; `fit_rules` names fit rules that
    must match the lead's traits.
    """

    model_config = SPEC_CONFIG

    min_fit: Annotated[float, BeforeValidator(lambda v: _number(v, "min_fit"))] | None = None
    min_engagement: Threshold | None = None
    min_grade: Annotated[str, BeforeValidator(_grade_letter)] | None = None
    rules: dict[RuleName, Annotated[float, BeforeValidator(_tier_points)]] | None = None
    fit_rules: tuple[RuleName, ...] | None = None

    def conditions(self) -> int:
        return sum(
            value is not None
            for value in (self.min_fit, self.min_engagement, self.min_grade, self.rules)
        ) + bool(self.fit_rules)


ELSE: Final = "else"


def _tier_name(value: object) -> str:
    if not isinstance(value, str) or not RULE_NAME_PATTERN.match(value):
        raise ValueError(
            f"invalid tier name {describe(value)}: use 1-64 lowercase letters, digits, "
            "'_', '.' or '-', starting with a letter or digit (or null for no tier)"
        )
    return value


class Tiers(BaseModel):
    """``tiers:`` in the model file: tier name -> `TierRule`, first match wins.

    The key ``else`` is the tier of a handoff no tier matches: a tier name,
    or null (the default) for none.
    """

    model_config = ConfigDict(
        extra="allow", frozen=True, allow_inf_nan=False, populate_by_name=True
    )

    otherwise: Annotated[str, BeforeValidator(_tier_name)] | None = Field(default=None, alias=ELSE)
    __pydantic_extra__: dict[str, TierRule] = Field(init=False)

    @property
    def ordered(self) -> tuple[tuple[str, TierRule], ...]:
        """The tiers in file order, best first."""
        return tuple((self.__pydantic_extra__ or {}).items())


DEFAULT_MAX_FEEDBACK: Final = 20
DEFAULT_MAX_WINDOW_EVENTS: Final = 200


class Limits(BaseModel):
    """What one lead's state may hold, so a noisy tracker cannot grow it forever.

    `max_traits` bounds the traits the model does not read: a new one beyond it
    is dropped (existing keys still update). Traits the model reads (fit rules,
    handoff profile) are never dropped for room, so a lead holds at most
    max_traits plus those. A value whose JSON is larger than `max_trait_bytes`
    is dropped whatever its key. `merged_from` keeps the `max_merged_from` most
    recent merged ids, the feedback history the `max_feedback` most recent
    feedback events. A window rule keeps at most `max_window_events` distinct
    event times in its window, the most recent (docs/architecture.md#rule-windows).
    """

    model_config = SPEC_CONFIG

    max_traits: Annotated[int, BeforeValidator(_count("max_traits", 0, 10_000))] = 100
    max_trait_bytes: Annotated[
        int, BeforeValidator(_count("max_trait_bytes", 1, MAX_MESSAGE_BYTES))
    ] = 1024
    max_merged_from: Annotated[int, BeforeValidator(_count("max_merged_from", 0, 10_000))] = 50
    max_feedback: Annotated[int, BeforeValidator(_count("max_feedback", 0, 1_000))] | None = None
    """Feedback events kept in a lead's history, most recent; None: DEFAULT_MAX_FEEDBACK.
    (Optional so files written before it keep their model version.)"""

    max_window_events: (
        Annotated[int, BeforeValidator(_count("max_window_events", 1, 10_000))] | None
    ) = None
    """Event times a window rule keeps per lead; None: DEFAULT_MAX_WINDOW_EVENTS.
    (Optional so files written before it keep their model version.)"""

    @property
    def feedback_kept(self) -> int:
        return DEFAULT_MAX_FEEDBACK if self.max_feedback is None else self.max_feedback

    @property
    def window_events_kept(self) -> int:
        if self.max_window_events is None:
            return DEFAULT_MAX_WINDOW_EVENTS
        return self.max_window_events


DEFAULT_LIMITS: Final = Limits()


class ModelSpec(BaseModel):
    """The model file, one field per section.

    `limits`, `tiers`, `events` (and `lifecycle.handoff.profile`,
    `lifecycle.sql`, `lifecycle.rejection_cooldown`) are optional; when
    absent they are left out of the canonical form, so adding them to the code
    did not re-version existing files. `events` maps Segment ``track`` event
    names (as trackers send them) to leadpulse event types; an empty mapping is
    the same as none.
    """

    model_config = SPEC_CONFIG

    version: Annotated[str, BeforeValidator(_version)]
    engagement: Engagement
    fit: Fit
    lifecycle: Lifecycle
    limits: Limits | None = None
    tiers: Tiers | None = None
    events: Annotated[
        dict[SegmentEventName, MappedEventType] | None, BeforeValidator(_no_empty_events)
    ] = None


def _duplicates(section: str, names: list[str]) -> list[tuple[Path, str]]:
    first: dict[str, int] = {}
    issues: list[tuple[Path, str]] = []
    for index, name in enumerate(names):
        if name in first:
            issues.append(
                (
                    (section, "rules", index, "name"),
                    f"duplicate rule name '{name}' (also {section}.rules[{first[name]}])",
                )
            )
        else:
            first[name] = index
    return issues


def implicit_grade(letters: list[str]) -> str:
    """The grade of a lead that reaches no threshold: the letter after the last one."""
    return GRADE_LETTERS[len(letters)]


def semantic_issues(spec: ModelSpec) -> list[tuple[Path, str]]:
    """Problems that involve several values, each pinned to the value to change."""
    issues = _duplicates("engagement", [rule.name for rule in spec.engagement.rules])
    issues += _duplicates("fit", [rule.name for rule in spec.fit.rules])

    grades = list(spec.fit.grades.items())
    letters_ok = 0 < len(grades) < len(GRADE_LETTERS)
    if not grades:
        issues.append((("fit", "grades"), "declare at least one grade, e.g. {A: 50, B: 30}"))
    if len(grades) >= len(GRADE_LETTERS):
        issues.append((("fit", "grades"), "at most 25 grades (A to Y; the next letter is implied)"))
    for index, (letter, threshold) in enumerate(grades[: len(GRADE_LETTERS) - 1]):
        expected = GRADE_LETTERS[index]
        if letter != expected:
            issues.append(
                (
                    ("fit", "grades", letter),
                    f"grades must be A, B, C, ... in order, best first; expected '{expected}' "
                    f"here, got {describe(letter)}",
                )
            )
            letters_ok = False
            break
        if index and threshold >= grades[index - 1][1]:
            previous, above = grades[index - 1]
            issues.append(
                (
                    ("fit", "grades", letter),
                    f"threshold {number(threshold)} must be below {previous}'s {number(above)} "
                    "(thresholds strictly decrease from A)",
                )
            )

    lifecycle = spec.lifecycle
    if lifecycle.recycle >= lifecycle.mql:
        issues.append(
            (
                ("lifecycle", "recycle"),
                f"recycle ({number(lifecycle.recycle)}) must be below "
                f"mql ({number(lifecycle.mql)}), "
                "or a lead would recycle the moment it qualifies",
            )
        )
    if lifecycle.handoff.engagement < lifecycle.mql:
        issues.append(
            (
                ("lifecycle", "handoff", "engagement"),
                f"handoff engagement ({number(lifecycle.handoff.engagement)}) must be at least "
                f"mql ({number(lifecycle.mql)})",
            )
        )
    first_key: dict[str, int] = {}
    for index, key in enumerate(lifecycle.handoff.profile or ()):
        if key in first_key:
            issues.append(
                (
                    ("lifecycle", "handoff", "profile", index),
                    f"duplicate trait '{key}' (also profile[{first_key[key]}])",
                )
            )
        else:
            first_key[key] = index
    letters = [letter for letter, _ in grades]
    known: list[str] = []
    if letters_ok:
        known = [*letters, implicit_grade(letters)]
        if lifecycle.handoff.min_grade not in known:
            issues.append(
                (
                    ("lifecycle", "handoff", "min_grade"),
                    f"unknown grade '{lifecycle.handoff.min_grade}': use one of "
                    f"{', '.join(known)} ({known[-1]} is the grade below the last threshold)",
                )
            )
    if lifecycle.sql is not None:
        issues += _sql_issues(lifecycle.sql)
    if spec.tiers is not None:
        issues += _tier_issues(spec, known)
    return issues


def _sql_issues(rule: SqlRule) -> list[tuple[Path, str]]:
    """`lifecycle.sql`: criteria of its framework, min_met between required and all."""
    issues: list[tuple[Path, str]] = []
    where: Path = ("lifecycle", "sql")
    criteria = rule.criteria
    seen: set[str] = set()
    for index, name in enumerate(rule.require):
        if name not in criteria:
            issues.append(
                (
                    (*where, "require", index),
                    f"'{name}' is not a {rule.framework.value} criterion: use "
                    f"{', '.join(criteria)}",
                )
            )
        elif name in seen:
            issues.append(((*where, "require", index), f"duplicate criterion '{name}'"))
        seen.add(name)
    if rule.min_met is not None:
        if rule.min_met > len(criteria):
            issues.append(
                (
                    (*where, "min_met"),
                    f"min_met {rule.min_met} is more than the {len(criteria)} criteria of "
                    f"{rule.framework.value} ({', '.join(criteria)})",
                )
            )
        elif rule.min_met < len(rule.require):
            issues.append(
                (
                    (*where, "min_met"),
                    f"min_met {rule.min_met} is less than the {len(rule.require)} required "
                    "criteria, which must all be met anyway",
                )
            )
    return issues


def _tier_issues(spec: ModelSpec, grades: list[str]) -> list[tuple[Path, str]]:
    """Tier names, known rules and grades, and no tier that always matches."""
    assert spec.tiers is not None
    issues: list[tuple[Path, str]] = []
    engagement_names = {rule.name for rule in spec.engagement.rules}
    fit_names = {rule.name for rule in spec.fit.rules}
    tiers = spec.tiers.ordered
    if not tiers:
        issues.append((("tiers",), "declare at least one tier, e.g. excellent: {min_grade: A}"))
    for name, tier in tiers:
        where: Path = ("tiers", name)
        if not RULE_NAME_PATTERN.match(name):
            issues.append(
                (
                    where,
                    f"invalid tier name {describe(name)}: use 1-64 lowercase letters, digits, "
                    "'_', '.' or '-', starting with a letter or digit",
                )
            )
        if tier.conditions() == 0:
            issues.append(
                (
                    where,
                    "a tier without conditions always matches: give min_fit, min_engagement, "
                    "min_grade, rules or fit_rules (or use else:)",
                )
            )
        if tier.min_grade is not None and grades and tier.min_grade not in grades:
            issues.append(
                (
                    (*where, "min_grade"),
                    f"unknown grade '{tier.min_grade}': use one of {', '.join(grades)}",
                )
            )
        issues.extend(
            ((*where, "rules", rule), f"no engagement rule is named '{rule}'")
            for rule in tier.rules or {}
            if rule not in engagement_names
        )
        for index, rule in enumerate(tier.fit_rules or ()):
            if rule not in fit_names:
                issues.append(((*where, "fit_rules", index), f"no fit rule is named '{rule}'"))
    return issues


def canonical_json(spec: ModelSpec) -> str:
    """Formatting and comments do not change it; any content change does."""
    return json.dumps(
        spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def model_version_of(spec: ModelSpec) -> str:
    digest = hashlib.sha256(canonical_json(spec).encode()).hexdigest()
    return f"{spec.version}+{digest[:12]}"


RuleCheck = Callable[[dict[str, JsonValue]], bool]
DecaySpec = tuple[str, float, float | None]
"""(name, half-life, cap) of one engagement rule: what reading its decay needs.
The half-life is `math.inf` for a rule without decay (``2^(-x/inf)`` is exactly 1)."""
WindowSpec = tuple[str, float, float, float | None]
"""(name, half-life, window, cap) of one window rule."""


class ModelSpecError(ValueError):
    """A spec built in code (not from a file) breaks a cross-value rule."""


@dataclass(frozen=True, eq=False, slots=True)
class ScoringModel:
    """A validated model plus the lookups `apply` needs on every event.

    Two models are equal when their `model_version` is, i.e. same content.
    """

    spec: ModelSpec
    model_version: str
    source: str
    rules_by_event: Mapping[str, tuple[EngagementRule, ...]]
    checks_by_event: Mapping[str, tuple[tuple[EngagementRule, RuleCheck], ...]] = field(repr=False)
    """`rules_by_event` with each rule's compiled `EngagementRule.check`."""
    rules_by_name: Mapping[str, EngagementRule]
    grades: tuple[tuple[str, float], ...]
    lowest_grade: str
    longest_half_life: float
    decay_specs: tuple[DecaySpec, ...] = field(repr=False)
    """The rules without a window as flat tuples, in model order, for `scoring.fastpath`."""
    window_specs: tuple[WindowSpec, ...] = field(repr=False)
    """The window rules as flat tuples, in model order; empty for most models."""
    fit_checks: tuple[FitCheck, ...] = field(repr=False)
    """`fit_rules` compiled for speed, same order; see `FitRule.check`."""
    limits: Limits
    """The file's `limits`, or the defaults."""
    profile_traits: tuple[str, ...]
    """The traits a handoff carries: `lifecycle.handoff.profile`, or the fit rules' traits."""
    declared_traits: frozenset[str]
    """Traits the model reads (fit rules, profile): never dropped to make room."""
    event_names: Mapping[str, str]
    """The file's `events`: Segment track name -> leadpulse event type (default empty)."""
    _rank: Mapping[str, int] = field(repr=False)

    @classmethod
    def from_spec(cls, spec: ModelSpec, source: str = "<memory>") -> ScoringModel:
        issues = semantic_issues(spec)
        if issues:
            raise ModelSpecError("; ".join(f"{_dotted(path)}: {text}" for path, text in issues))
        by_event: dict[str, list[EngagementRule]] = {}
        for rule in spec.engagement.rules:
            by_event.setdefault(rule.event, []).append(rule)
        grades = tuple(spec.fit.grades.items())
        lowest = implicit_grade([letter for letter, _ in grades])
        letters = [letter for letter, _ in grades] + [lowest]
        fit_traits = tuple(dict.fromkeys(rule.trait[0] for rule in spec.fit.rules))
        declared_profile = spec.lifecycle.handoff.profile
        profile = fit_traits if declared_profile is None else declared_profile
        return cls(
            spec=spec,
            model_version=model_version_of(spec),
            source=source,
            rules_by_event=MappingProxyType({k: tuple(v) for k, v in by_event.items()}),
            checks_by_event=MappingProxyType(
                {k: tuple((rule, rule.check()) for rule in v) for k, v in by_event.items()}
            ),
            rules_by_name=MappingProxyType({rule.name: rule for rule in spec.engagement.rules}),
            grades=grades,
            lowest_grade=lowest,
            longest_half_life=max(
                (rule.half_life for rule in spec.engagement.rules if rule.half_life is not None),
                default=0.0,
            ),
            decay_specs=tuple(
                (rule.name, rule.life, rule.cap)
                for rule in spec.engagement.rules
                if rule.window is None
            ),
            window_specs=tuple(
                (rule.name, rule.life, rule.window, rule.cap)
                for rule in spec.engagement.rules
                if rule.window is not None
            ),
            fit_checks=tuple(rule.check() for rule in spec.fit.rules),
            limits=spec.limits or DEFAULT_LIMITS,
            profile_traits=profile,
            declared_traits=frozenset((*fit_traits, *profile)),
            event_names=MappingProxyType(dict(spec.events or {})),
            _rank=MappingProxyType({letter: rank for rank, letter in enumerate(letters)}),
        )

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def lifecycle(self) -> Lifecycle:
        return self.spec.lifecycle

    @property
    def engagement_rules(self) -> tuple[EngagementRule, ...]:
        return self.spec.engagement.rules

    @property
    def fit_rules(self) -> tuple[FitRule, ...]:
        return self.spec.fit.rules

    def grade_at_least(self, grade: str, minimum: str) -> bool:
        """A is best: 'at least B' means A or B."""
        return self._rank[grade] <= self._rank[minimum]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScoringModel):
            return NotImplemented
        return self.model_version == other.model_version

    def __hash__(self) -> int:
        return hash(self.model_version)


def _dotted(path: Path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
