"""Model files: every malformed file gets exact, line-numbered reasons."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from leadpulse.scoring import ModelError, default_model, load_model, parse_model, summary
from leadpulse.scoring.model import ModelSpecError, ScoringModel

BASE = """\
version: "t-1"
engagement:
  rules:
    - name: pricing-page
      event: page_view
      when: {url_contains: "/pricing"}
      points: 10
      half_life: 7d
      cap: 30
    - name: unsubscribe
      event: email_unsubscribe
      points: -40
      half_life: 90d
fit:
  rules:
    - name: mid-market
      trait: company_size
      between: [50, 5000]
      points: 20
  grades:
    A: 50
    B: 30
    C: 10
lifecycle:
  mql: 50
  handoff:
    engagement: 70
    min_grade: B
  recycle: 25
"""

HINT = "(use e.g. 90s, 30m, 12h, 7d, 2w)"
MATCHER_KEYS = "(allowed: between, equals, exists, in, property, url_contains)"
ONE_OP = "needs exactly one of equals, in, between, exists"
TYPE_HINT = "(use 1-64 lowercase letters, digits, '_', '.', ':' or '-', starting with a letter)"

# (case, text replaced in BASE, replacement, expected issues)
EDITS: list[tuple[str, str, str, list[str]]] = [
    (
        "bad duration",
        "half_life: 7d",
        "half_life: 7 days",
        [f"bad.yaml:8: engagement.rules[0].half_life: invalid duration '7 days' {HINT}"],
    ),
    (
        "bare number duration",
        "half_life: 90d",
        "half_life: 90",
        [f"bad.yaml:13: engagement.rules[1].half_life: duration 90 has no unit {HINT}"],
    ),
    (
        "zero duration",
        "half_life: 90d",
        "half_life: 0d",
        ["bad.yaml:13: engagement.rules[1].half_life: duration '0d' must be positive"],
    ),
    (
        "missing half_life",
        "      half_life: 90d\n",
        "",
        ["bad.yaml:10: engagement.rules[1]: missing required key 'half_life'"],
    ),
    (
        "unknown matcher key",
        "url_contains:",
        "url_contain:",
        [
            "bad.yaml:6: engagement.rules[0].when.url_contain: unknown key; "
            f"did you mean 'url_contains'? {MATCHER_KEYS}"
        ],
    ),
    (
        "two ops in one condition",
        '{url_contains: "/pricing"}',
        "{property: plan, equals: pro, in: [pro, team]}",
        [
            f"bad.yaml:6: engagement.rules[0].when: a property condition {ONE_OP} "
            "(found: equals, in)"
        ],
    ),
    (
        "property without op",
        '{url_contains: "/pricing"}',
        "{property: plan}",
        [f"bad.yaml:6: engagement.rules[0].when: a property condition {ONE_OP} (found: none)"],
    ),
    (
        "url_contains with an op",
        '{url_contains: "/pricing"}',
        '{url_contains: "/pricing", exists: true}',
        ["bad.yaml:6: engagement.rules[0].when: url_contains takes no operator (found: exists)"],
    ),
    (
        "op in a list of conditions",
        '{url_contains: "/pricing"}',
        '[{url_contains: "/pricing"}, {property: plan, in: []}]',
        ["bad.yaml:6: engagement.rules[0].when[1].in: expected a non-empty list of values, got []"],
    ),
    (
        "duplicate rule name",
        "name: unsubscribe",
        "name: pricing-page",
        [
            "bad.yaml:10: engagement.rules[1].name: duplicate rule name 'pricing-page' "
            "(also engagement.rules[0])"
        ],
    ),
    (
        "duplicate YAML key",
        "      cap: 30\n",
        "      cap: 30\n      points: 12\n",
        ["bad.yaml:10: engagement.rules[0].points: duplicate key 'points' (first on line 7)"],
    ),
    (
        "between with lo > hi",
        "[50, 5000]",
        "[5000, 50]",
        ["bad.yaml:18: fit.rules[0].between: low 5000 is greater than high 50"],
    ),
    (
        "between with a boolean",
        "[50, 5000]",
        "[true, 5000]",
        [
            "bad.yaml:18: fit.rules[0].between: "
            "expected [low, high] with two numbers, got [true, 5000]"
        ],
    ),
    (
        "recycle not below mql",
        "recycle: 25",
        "recycle: 50",
        [
            "bad.yaml:29: lifecycle.recycle: recycle (50) must be below mql (50), "
            "or a lead would recycle the moment it qualifies"
        ],
    ),
    (
        "handoff below mql",
        "engagement: 70",
        "engagement: 40",
        [
            "bad.yaml:27: lifecycle.handoff.engagement: handoff engagement (40) "
            "must be at least mql (50)"
        ],
    ),
    (
        "negative recycle",
        "recycle: 25",
        "recycle: -1",
        [
            "bad.yaml:29: lifecycle.recycle: threshold must be at least 0 "
            "(engagement never is), got -1"
        ],
    ),
    (
        "min_grade not a grade",
        "min_grade: B",
        "min_grade: E",
        [
            "bad.yaml:28: lifecycle.handoff.min_grade: unknown grade 'E': use one of "
            "A, B, C, D (D is the grade below the last threshold)"
        ],
    ),
    (
        "non-monotone grades",
        "C: 10",
        "C: 30",
        [
            "bad.yaml:23: fit.grades.C: threshold 30 must be below B's 30 "
            "(thresholds strictly decrease from A)"
        ],
    ),
    (
        "grade letters out of order",
        "C: 10",
        "D: 10",
        [
            "bad.yaml:23: fit.grades.D: grades must be A, B, C, ... in order, best first; "
            "expected 'C' here, got 'D'"
        ],
    ),
    (
        "points: 0",
        "points: -40",
        "points: 0",
        [
            "bad.yaml:12: engagement.rules[1].points: "
            "points must not be 0 (a rule that scores nothing is a mistake)"
        ],
    ),
    (
        "NaN points",
        "points: -40",
        "points: .nan",
        ["bad.yaml:12: engagement.rules[1].points: points must be a finite number, got .nan"],
    ),
    (
        "points as text",
        "points: -40",
        "points: lots",
        ["bad.yaml:12: engagement.rules[1].points: points must be a number, got 'lots'"],
    ),
    (
        "negative cap",
        "cap: 30",
        "cap: -5",
        ["bad.yaml:9: engagement.rules[0].cap: cap must be greater than 0, got -5"],
    ),
    (
        "bad event name",
        "event: page_view",
        "event: Page View",
        [
            "bad.yaml:5: engagement.rules[0].event: invalid event type 'Page View': use 1-64 "
            "lowercase letters, digits, '_', '.', ':' or '-', starting with a letter"
        ],
    ),
    (
        "bad rule name",
        "name: unsubscribe",
        "name: Unsubscribe!",
        [
            "bad.yaml:10: engagement.rules[1].name: invalid rule name 'Unsubscribe!': use 1-64 "
            "lowercase letters, digits, '_', '.' or '-', starting with a letter or digit"
        ],
    ),
    (
        "misspelt section: both problems, in line order",
        "lifecycle:",
        "lifecycel:",
        [
            "bad.yaml:1: (top level): missing required key 'lifecycle'",
            "bad.yaml:24: lifecycel: unknown key; did you mean 'lifecycle'? "
            "(allowed: engagement, events, fit, lifecycle, limits, tiers, version)",
        ],
    ),
    (
        "empty list of conditions",
        '{url_contains: "/pricing"}',
        "[]",
        [
            "bad.yaml:6: engagement.rules[0].when: "
            "expected a condition or a non-empty list of conditions, got []"
        ],
    ),
    (
        "equals null",
        '{url_contains: "/pricing"}',
        "{property: plan, equals: null}",
        [
            "bad.yaml:6: engagement.rules[0].when.equals: "
            "expected a string, number or boolean, got null"
        ],
    ),
    (
        "YAML 1.1 yes is not a boolean",
        '{url_contains: "/pricing"}',
        "{property: plan, exists: yes}",
        ["bad.yaml:6: engagement.rules[0].when.exists: expected true or false, got 'yes'"],
    ),
    (
        "unquoted numeric version",
        'version: "t-1"',
        "version: 3",
        [
            "bad.yaml:1: version: invalid version 3: use a quoted string of letters, digits, "
            "'.', '_' or '-' (e.g. \"2026-11-a\")"
        ],
    ),
    (
        "section that is not a mapping",
        "engagement:\n  rules:",
        "engagement: 3\nxx:\n  rules:",
        [
            "bad.yaml:2: engagement: expected a mapping, got 3",
            "bad.yaml:3: xx: unknown key "
            "(allowed: engagement, events, fit, lifecycle, limits, tiers, version)",
        ],
    ),
    (
        "no engagement rules",
        BASE[BASE.index("    - name: pricing-page") : BASE.index("fit:")],
        "    []\n",
        [
            "bad.yaml:3: engagement.rules: "
            "declare at least one rule: a model that scores nothing is a mistake"
        ],
    ),
    (
        "merge key",
        "    - name: unsubscribe\n",
        "    - <<: {cap: 5}\n      name: unsubscribe\n",
        ["bad.yaml:10: engagement.rules[1]: merge keys (<<) are not supported"],
    ),
    (
        "tab indentation",
        "      points: 10\n",
        "\tpoints: 10\n",
        ["bad.yaml:7: YAML syntax error: found character '\\t' that cannot start any token"],
    ),
    (
        "negative max_traits",
        "  recycle: 25\n",
        "  recycle: 25\nlimits:\n  max_traits: -1\n",
        [
            "bad.yaml:31: limits.max_traits: max_traits must be a whole number "
            "from 0 to 10000, got -1"
        ],
    ),
    (
        "max_trait_bytes with a unit",
        "  recycle: 25\n",
        "  recycle: 25\nlimits:\n  max_trait_bytes: 1kb\n",
        [
            "bad.yaml:31: limits.max_trait_bytes: max_trait_bytes must be a whole number "
            "from 1 to 262144, got '1kb'"
        ],
    ),
    (
        "misspelt limit",
        "  recycle: 25\n",
        "  recycle: 25\nlimits:\n  max_trait: 5\n",
        [
            "bad.yaml:31: limits.max_trait: unknown key; did you mean 'max_traits'? "
            "(allowed: max_feedback, max_merged_from, max_trait_bytes, max_traits, "
            "max_window_events)"
        ],
    ),
    (
        "limits that are not whole numbers",
        "  recycle: 25\n",
        "  recycle: 25\nlimits: {max_merged_from: true, max_traits: 1.5}\n",
        [
            "bad.yaml:30: limits.max_traits: max_traits must be a whole number "
            "from 0 to 10000, got 1.5",
            "bad.yaml:30: limits.max_merged_from: max_merged_from must be a whole number "
            "from 0 to 10000, got true",
        ],
    ),
    (
        "events value that is not an event type: the normalised form as a hint",
        "  recycle: 25\n",
        "  recycle: 25\nevents:\n  Demo Requested: Demo Request\n  Signed Up: trial_signup\n",
        [
            f"bad.yaml:31: events.Demo Requested: invalid event type 'Demo Request'; "
            f"did you mean 'demo_request'? {TYPE_HINT}"
        ],
    ),
    (
        "events values that cannot be event types",
        "  recycle: 25\n",
        "  recycle: 25\nevents:\n  a: 3\n  b: '日本'\n",
        [
            f"bad.yaml:31: events.a: invalid event type 3 {TYPE_HINT}",
            f"bad.yaml:32: events.b: invalid event type '日本' {TYPE_HINT}",
        ],
    ),
    (
        "empty events name",
        "  recycle: 25\n",
        "  recycle: 25\nevents:\n  ok: ok\n  '': x\n",
        [
            "bad.yaml:32: events.: invalid event name '': use the name as the tracker "
            "sends it (1-128 characters, no control characters)"
        ],
    ),
    (
        "duplicate events name",
        "  recycle: 25\n",
        "  recycle: 25\nevents:\n  Signed Up: trial_signup\n  Signed Up: demo_request\n",
        ["bad.yaml:32: events.Signed Up: duplicate key 'Signed Up' (first on line 31)"],
    ),
    (
        "misspelt events section",
        "  recycle: 25\n",
        "  recycle: 25\nevent:\n  a: b\n",
        [
            "bad.yaml:30: event: unknown key; did you mean 'events'? "
            "(allowed: engagement, events, fit, lifecycle, limits, tiers, version)"
        ],
    ),
    (
        "events as a list",
        "  recycle: 25\n",
        "  recycle: 25\nevents: [a]\n",
        ["bad.yaml:30: events: expected a mapping, got ['a']"],
    ),
    (
        "limits as a list",
        "  recycle: 25\n",
        "  recycle: 25\nlimits: []\n",
        ["bad.yaml:30: limits: expected a mapping, got []"],
    ),
    (
        "duplicate profile trait",
        "    min_grade: B\n",
        "    min_grade: B\n    profile: [title, company, title]\n",
        ["bad.yaml:29: lifecycle.handoff.profile[2]: duplicate trait 'title' (also profile[0])"],
    ),
    (
        "profile not a list",
        "    min_grade: B\n",
        "    min_grade: B\n    profile: title\n",
        ["bad.yaml:29: lifecycle.handoff.profile: expected a list, got 'title'"],
    ),
    (
        "empty trait name in the profile",
        "    min_grade: B\n",
        "    min_grade: B\n    profile:\n      - title\n      - ''\n",
        [
            "bad.yaml:31: lifecycle.handoff.profile[1]: invalid trait name '': use a trait key "
            "as trackers send it (1-128 characters, no control characters)"
        ],
    ),
    (
        "misspelt profile",
        "    min_grade: B\n",
        "    min_grade: B\n    profle: [title]\n",
        [
            "bad.yaml:29: lifecycle.handoff.profle: unknown key; did you mean 'profile'? "
            "(allowed: engagement, min_grade, profile)"
        ],
    ),
]

WHOLE_FILES: list[tuple[str, str, list[str]]] = [
    ("empty file", "", ["bad.yaml:1: the model file is empty"]),
    ("only comments", "# nothing yet\n", ["bad.yaml:1: the model file is empty"]),
    (
        "top-level list",
        "- version: x\n- engagement: y\n",
        [
            "bad.yaml:1: the model file must be a mapping with keys "
            "version, engagement, fit, lifecycle (got a list)"
        ],
    ),
    (
        "top-level scalar",
        "hello\n",
        [
            "bad.yaml:1: the model file must be a mapping with keys "
            "version, engagement, fit, lifecycle (got the value 'hello')"
        ],
    ),
    (
        "YAML syntax error",
        'version: "t-1"\nengagement:\n  rules: [\n',
        ["bad.yaml:3: YAML syntax error: expected the node content, but found '<stream end>'"],
    ),
    (
        "unclosed quote",
        'version: "t-1\n',
        [
            "bad.yaml:1: YAML syntax error: while scanning a quoted scalar on line 1, "
            "found unexpected end of stream"
        ],
    ),
    (
        "two documents",
        "a: 1\n---\nb: 2\n",
        [
            "bad.yaml:2: YAML syntax error: expected a single document in the stream "
            "on line 1, but found another document"
        ],
    ),
    (
        "duplicate top-level key",
        BASE + "version: t-2\n",
        ["bad.yaml:30: version: duplicate key 'version' (first on line 1)"],
    ),
    (
        "non-name key",
        BASE.replace("    A: 50", "    1: 50"),
        ["bad.yaml:21: fit.grades: keys must be names, got 1"],
    ),
    (
        "alias bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
            f"*{chr(97 + i)}, *{chr(97 + i)}]\n"
            for i in range(8)
        ),
        ["bad.yaml:1: more than 100000 values once aliases are expanded"],
    ),
]


def issues_of(text: str) -> list[str]:
    with pytest.raises(ModelError) as caught:
        parse_model(text, "bad.yaml")
    return caught.value.issues


def test_base_model_is_valid() -> None:
    model = parse_model(BASE, "ok.yaml")
    assert [rule.name for rule in model.engagement_rules] == ["pricing-page", "unsubscribe"]
    assert model.grades == (("A", 50.0), ("B", 30.0), ("C", 10.0))
    assert model.lowest_grade == "D"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [pytest.param(old, new, expected, id=case) for case, old, new, expected in EDITS],
)
def test_malformed_model_reports_exact_issues(old: str, new: str, expected: list[str]) -> None:
    assert old in BASE
    assert issues_of(BASE.replace(old, new, 1)) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(text, expected, id=case) for case, text, expected in WHOLE_FILES],
)
def test_malformed_file_reports_exact_issues(text: str, expected: list[str]) -> None:
    assert issues_of(text) == expected


def test_model_error_message_is_all_issues() -> None:
    text = BASE.replace("cap: 30", "cap: -5").replace("points: -40", "points: 0")
    with pytest.raises(ModelError) as caught:
        parse_model(text, "bad.yaml")
    assert str(caught.value) == "\n".join(caught.value.issues)
    assert len(caught.value.issues) == 2


def test_default_model_loads_and_summarises() -> None:
    model = default_model()
    assert model.version == "2026-11-default"
    assert model.lifecycle.mql == 50
    assert model.lifecycle.handoff.engagement == 70
    assert model.lifecycle.handoff.min_grade == "B"
    assert model.lifecycle.recycle == 25
    events = {rule.event for rule in model.engagement_rules}
    assert events >= {
        "page_view",
        "email_open",
        "email_click",
        "email_unsubscribe",
        "email_bounce",
        "form_submit",
        "content_download",
        "webinar_registered",
        "webinar_attended",
        "trial_signup",
        "product_usage",
        "demo_request",
    }
    demo = model.rules_by_name["demo-request"]
    assert demo.points == max(rule.points for rule in model.engagement_rules)
    text = summary(model)
    assert model.model_version in text
    assert "demo-request" in text
    assert "half-life 14d" in text
    assert "else D" in text


def test_yaml_booleans_are_only_true_and_false() -> None:
    served = default_model().spec.fit.rules
    country = next(rule for rule in served if rule.name == "served-country")
    assert country.in_ is not None
    assert "NO" in country.in_  # Norway, not False


def test_model_version_ignores_formatting_and_comments() -> None:
    reformatted = """\
# same model, different layout
{"lifecycle": {"recycle": 25.0, "mql": 50, "handoff": {"min_grade": "B", "engagement": 70}},
 "version": "t-1",
 "fit": {"grades": {"A": 50, "B": 30, "C": 10},
         "rules": [{"points": 20, "between": [50, 5000.0], "trait": "company_size",
                    "name": "mid-market"}]},
 "engagement": {"rules": [
   {"name": "pricing-page", "event": "page_view", "when": [{"url_contains": "/pricing"}],
    "points": 10.0, "half_life": "168h", "cap": 30},
   {"name": "unsubscribe", "event": "email_unsubscribe", "points": -40,
    "half_life": "12.857142857142858w"}]}}
"""
    commented = BASE.replace("  recycle: 25", "  recycle: 25   # re-arm below this")
    base = parse_model(BASE, "a.yaml")
    assert parse_model(commented, "b.yaml").model_version == base.model_version
    assert parse_model(reformatted.replace("12.857142857142858w", "90d"), "c.yaml") == base
    assert base.model_version == "t-1+" + base.model_version.split("+")[1]
    assert len(base.model_version.split("+")[1]) == 12


def test_model_version_is_pinned() -> None:
    """Changing the canonical form would re-version every deployed model."""
    assert parse_model(BASE, "a.yaml").model_version == "t-1+c3783c985455"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("points: 10", "points: 11"),
        ("half_life: 7d", "half_life: 8d"),
        ("cap: 30", "cap: 31"),
        ('version: "t-1"', 'version: "t-2"'),
        ("min_grade: B", "min_grade: C"),
        ('"/pricing"', '"/plans"'),
        ("    min_grade: B\n", "    min_grade: B\n    profile: [title]\n"),
        ("    min_grade: B\n", "    min_grade: B\n    profile: []\n"),
        ("  recycle: 25\n", "  recycle: 25\nlimits: {max_traits: 5}\n"),
        ("  recycle: 25\n", "  recycle: 25\nevents: {Signed Up: trial_signup}\n"),
    ],
)
def test_model_version_changes_with_content(old: str, new: str) -> None:
    base = parse_model(BASE, "a.yaml")
    changed = parse_model(BASE.replace(old, new, 1), "a.yaml")
    assert changed.model_version != base.model_version
    assert changed != base


def test_load_model_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(BASE, encoding="utf-8")
    model = load_model(path)
    assert model.source == str(path)
    assert model == parse_model(BASE, "elsewhere.yaml")

    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("half_life: 7d", "half_life: 7"), encoding="utf-8")
    with pytest.raises(ModelError) as caught:
        load_model(bad)
    assert caught.value.issues == [
        f"{bad}:8: engagement.rules[0].half_life: duration 7 has no unit {HINT}"
    ]


def test_load_model_reports_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ModelError) as caught:
        load_model(missing)
    assert caught.value.issues == [
        f"{missing}: cannot read the model file (No such file or directory)"
    ]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"version: x\n# caf\xe9\n")
    with pytest.raises(ModelError) as caught:
        load_model(latin)
    assert caught.value.issues == [f"{latin}:2: the model file is not UTF-8 text"]


def test_spec_built_in_code_is_checked_too() -> None:
    spec = parse_model(BASE, "a.yaml").spec
    broken = spec.model_copy(
        update={"lifecycle": spec.lifecycle.model_copy(update={"recycle": 60.0})}
    )
    with pytest.raises(ModelSpecError, match=r"lifecycle\.recycle: recycle \(60\)"):
        ScoringModel.from_spec(broken)
    assert ScoringModel.from_spec(spec, "copy") == parse_model(BASE, "a.yaml")


def test_profile_and_limits_default_when_not_declared() -> None:
    model = parse_model(BASE, "a.yaml")
    assert model.lifecycle.handoff.profile is None
    assert model.profile_traits == ("company_size",)  # what the fit rules read
    assert model.declared_traits == {"company_size"}
    assert (model.limits.max_traits, model.limits.max_trait_bytes) == (100, 1024)
    assert model.limits.max_merged_from == 50
    text = summary(model)
    assert "handoff profile (default: the fit traits): company_size" in text
    assert "limits: 100 traits besides the 1 the model reads; 1024 bytes" in text


def test_declared_profile_and_limits() -> None:
    text = BASE.replace(
        "    min_grade: B\n", "    min_grade: B\n    profile: [title, company_size, email]\n"
    ).replace("  recycle: 25\n", "  recycle: 25\nlimits: {max_traits: 0, max_merged_from: 3}\n")
    model = parse_model(text, "a.yaml")
    assert model.profile_traits == ("title", "company_size", "email")
    assert model.declared_traits == {"title", "company_size", "email"}
    assert (model.limits.max_traits, model.limits.max_merged_from) == (0, 3)
    assert model.limits.max_trait_bytes == 1024
    assert "handoff profile (declared): title, company_size, email" in summary(model)
    empty = parse_model(BASE.replace("    min_grade: B\n", "    min_grade: B\n    profile: []\n"))
    assert empty.profile_traits == ()
    assert empty.declared_traits == {"company_size"}
    assert "handoff profile (declared): no traits" in summary(empty)


def test_shipped_models_declare_a_profile_and_limits() -> None:
    demo = load_model(Path(__file__).resolve().parents[2] / "streams/dev/demo_model.yaml")
    for model in (default_model(), demo):
        assert model.lifecycle.handoff.profile is not None
        assert "email" not in model.profile_traits
        assert {"title", "company_size", "seniority"} <= set(model.profile_traits)
        assert model.spec.limits is not None


def test_events_default_to_none_and_keep_the_version() -> None:
    base = parse_model(BASE, "a.yaml")
    assert dict(base.event_names) == {}
    assert base.spec.events is None
    for empty in ("events: {}\n", "events:\n"):
        same = parse_model(BASE + empty, "a.yaml")
        assert same.model_version == base.model_version == "t-1+c3783c985455"
        assert dict(same.event_names) == {}


def test_declared_events_map_segment_names() -> None:
    text = BASE + 'events:\n  Demo Requested: demo_request\n  "Signed Up": trial_signup\n'
    model = parse_model(text, "a.yaml")
    assert dict(model.event_names) == {
        "Demo Requested": "demo_request",
        "Signed Up": "trial_signup",
    }
    with pytest.raises(TypeError):
        model.event_names["x"] = "y"  # type: ignore[index]
    from leadpulse.schemas import from_segment

    event = from_segment(
        {"type": "track", "event": "Signed Up", "userId": "lead-1", "messageId": "m"},
        received_at=datetime(2026, 11, 22, tzinfo=UTC),
        events=model.event_names,
    )
    assert event.type == "trial_signup"
    assert "segment events: 'Demo Requested' → demo_request, 'Signed Up' → trial_signup" in (
        summary(model)
    )
    assert "segment events" not in summary(parse_model(BASE, "a.yaml"))


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        ("version: x\x07\n", "m.yaml:1: a character YAML does not allow (#x0007)"),
        (
            "version: a\nrules: []\nname: \x01\n",
            "m.yaml:3: a character YAML does not allow (#x0001)",
        ),
    ],
)
def test_a_character_yaml_refuses_is_a_model_error_naming_its_line(text: str, issue: str) -> None:
    """Seen by mutation testing: the reader refused it before the error handling began."""
    with pytest.raises(ModelError) as raised:
        parse_model(text, "m.yaml")
    assert raised.value.issues == [f"{issue}: special characters are not allowed"]
