"""The lead page's HTML: escaped, only declared traits, a breakdown that adds up to explain."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from leadpulse.schemas import BehaviorEvent
from leadpulse.scoring import (
    LeadState,
    apply,
    explain,
    explanation_dict,
    new_lead,
    parse_model,
    to_epoch,
)
from leadpulse.streams.http.leadpage import HEADERS, lead_page, render
from leadpulse.streams.store import Commit, MemoryLeadStore, encode_state

MODEL_TEXT = """\
version: "page-1"
engagement:
  rules:
    - {name: pricing-page, event: page_view, when: {url_contains: /pricing}, points: 20,
       half_life: 30d, cap: 30}
    - {name: demo-request, event: demo_request, points: 60, half_life: 14d}
    - {name: unsubscribe, event: email_unsubscribe, points: -90, half_life: 90d}
fit:
  rules:
    - {name: mid-market, trait: company_size, between: [50, 5000], points: 40}
  grades: {A: 40, B: 20}
lifecycle:
  mql: 50
  handoff: {engagement: 70, min_grade: B, profile: [company_size, industry]}
  recycle: 25
"""
MODEL = parse_model(MODEL_TEXT, "page.yaml")
T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
DAY = 86400.0
EVIL = '<script>alert("x")</script>&"'


def event(index: int, kind: str, days: float, lead: str = "lead-1", **fields: Any) -> BehaviorEvent:
    return BehaviorEvent(
        event_id=f"{lead}-e{index}",
        type=kind,
        lead_id=lead,
        occurred_at=T0 + timedelta(days=days),
        properties=fields.get("properties", {}),
        traits=fields.get("traits", {}),
    )


def pricing(index: int, days: float, lead: str = "lead-1") -> BehaviorEvent:
    return event(index, "page_view", days, lead, properties={"url": "https://x.io/pricing"})


def fold(events: list[BehaviorEvent]) -> LeadState:
    state = new_lead(events[0].subject)
    for item in events:
        state, _ = apply(state, item, MODEL)
    return state


def busy_lead(lead: str = "lead-1") -> LeadState:
    return fold(
        [
            pricing(0, 0, lead),
            pricing(1, 1, lead),
            pricing(2, 1.5, lead),
            event(3, "demo_request", 3, lead),
            event(
                4,
                "identify",
                3.2,
                lead,
                traits={
                    "company_size": 300,
                    "industry": EVIL,
                    "email": "ada@example.com",
                    "phone": "+44 20 7946 0000",
                },
            ),
        ]
    )


def values(page: str, pattern: str) -> dict[str, float]:
    return {
        html.unescape(name): float(html.unescape(value))
        for name, value in re.findall(pattern, page)
    }


def breakdown_of(page: str) -> dict[str, float]:
    return values(page, r'<tr data-rule="([^"]*)">.*?class="num points"><data value="([^"]*)"')


def attribute(page: str, name: str) -> str:
    found = re.search(rf'<main id="lead"[^>]* {name}="([^"]*)"', page)
    assert found is not None, name
    return html.unescape(found.group(1))


def test_the_breakdown_is_explain_and_adds_up_to_the_total() -> None:
    state = busy_lead()
    now = state.clock + 2 * DAY
    page = render(state, now, MODEL)
    at = float(attribute(page, "data-at"))
    assert at == now
    expected = explanation_dict(explain(state, at, MODEL))
    shown = breakdown_of(page)
    assert shown == {part["rule"]: part["points"] for part in expected["parts"]}
    total = float(attribute(page, "data-engagement"))
    assert total == expected["engagement"]
    assert abs(sum(shown.values()) - total) < 1e-9
    footer = re.search(r'class="num total"><data value="([^"]*)"', page)
    assert footer is not None
    assert footer.group(1) == repr(total)
    # the capped rule says so, with its uncapped value
    assert "capped; uncapped" in page
    assert f'<dd id="grade">{expected["grade"]}</dd>' in page
    assert f'<dd id="stage">{expected["stage"].upper()}</dd>' in page


def test_a_floored_lead_lists_the_floor_part_and_still_adds_up() -> None:
    state = fold([pricing(0, 0), event(1, "email_unsubscribe", 1)])
    page = render(state, state.clock + DAY, MODEL)
    shown = breakdown_of(page)
    assert "floor-at-zero" in shown
    assert float(attribute(page, "data-engagement")) == 0.0
    assert abs(sum(shown.values())) < 1e-9


def test_lead_ids_and_traits_are_escaped() -> None:
    state = busy_lead(lead=EVIL)
    page = render(state, state.clock, MODEL)
    assert "<script" not in page
    assert html.escape(EVIL, quote=True) in page
    assert attribute(page, "data-lead-id") == EVIL
    assert 'data-trait="industry"' in page


def test_only_the_traits_the_model_declares_for_display_are_shown() -> None:
    state = busy_lead()
    page = render(state, state.clock, MODEL)
    assert "ada@example.com" not in page
    assert "email" not in page
    assert "7946" not in page
    assert re.findall(r'data-trait="([^"]*)"', page) == ["company_size", "industry"]
    assert "<td>300</td>" in page


def test_the_chart_is_inline_svg_with_total_rules_thresholds_and_markers() -> None:
    state = busy_lead()
    page = render(state, state.clock + 10 * DAY, MODEL)
    assert "<script" not in page
    assert "http://" not in page.replace("http://www.w3.org", "")
    total = re.search(r'<path id="total-curve" class="curve total" d="([^"]*)"', page)
    assert total is not None
    assert total.group(1).startswith("M")
    assert total.group(1).count("L") >= 200
    assert re.findall(r'class="curve rule" data-rule="([^"]*)"', page) == [
        "pricing-page",
        "demo-request",
    ]
    thresholds = dict(re.findall(r'data-threshold="([^"]*)" data-value="([^"]*)"', page))
    assert thresholds == {"handoff": "70.0", "mql": "50.0", "recycle": "25.0"}
    for label in ("MQL 50", "handoff 70", "recycle 25"):
        assert label in page
    markers = dict(re.findall(r'class="marker" data-rule="([^"]*)" data-t="([^"]*)"', page))
    assert markers == {
        "pricing-page": repr(to_epoch(T0) + 1.5 * DAY),
        "demo-request": repr(to_epoch(T0) + 3 * DAY),
    }
    assert 'class="unknown"' in page  # before the demo request the total is not kept
    assert len(re.findall(r'class="tick x"', page)) == 7


def test_a_lead_seen_only_now_still_gets_a_chart() -> None:
    state = fold([event(0, "demo_request", 0)])
    page = render(state, state.clock, MODEL)
    assert 'id="total-curve"' in page
    # the window still spans a minute; before the demo request nothing is known
    assert 'class="unknown"' in page
    assert 'class="marker" data-rule="demo-request"' in page


async def test_unknown_leads_get_a_404_page_and_merged_ones_a_link() -> None:
    store = MemoryLeadStore()
    status, page = await lead_page(store, MODEL, EVIL, to_epoch(T0))
    assert status == 404
    assert "<script" not in page
    assert html.escape(EVIL) in page
    state = busy_lead()
    await store.commit([Commit(state.lead_id, 0, encode_state(state), ["x"])])
    status, page = await lead_page(store, MODEL, "lead-1", state.clock + DAY)
    assert status == 200
    assert attribute(page, "data-lead-id") == "lead-1"
    store.aliases["anon-1"] = "lead-1"
    status, page = await lead_page(store, MODEL, "anon-1", state.clock + DAY)
    assert status == 200
    assert 'href="/ui/leads/lead-1"' in page


def test_the_page_allows_no_script() -> None:
    assert HEADERS["Content-Security-Policy"].startswith("default-src 'none'")


def test_the_page_names_the_workers_model_version() -> None:
    state = busy_lead()
    page = render(state, state.clock, MODEL)
    shown = re.search(r'<code id="model-version">([^<]*)</code>', page)
    assert shown is not None
    assert shown.group(1) == MODEL.model_version
    assert shown.group(1).startswith("page-1+")  # the model file's version, then its digest
    assert f'data-model-version="{MODEL.model_version}"' in page
    other = parse_model(MODEL_TEXT.replace('version: "page-1"', 'version: "page-2"'), "p2.yaml")
    # a state the other model built: the page names that model only
    rebuilt = state.model_copy(update={"model_version": other.model_version})
    again = render(rebuilt, state.clock, other)
    assert f'<code id="model-version">{other.model_version}</code>' in again
    assert other.model_version.startswith("page-2+")
    assert MODEL.model_version not in again


def test_the_page_says_when_another_model_built_the_state() -> None:
    state, _ = apply(new_lead("lead-1"), pricing(1, 0), MODEL)
    page = render(state, state.clock, MODEL)
    assert '<p class="note">The same numbers as JSON' in page
    older = state.model_copy(update={"model_version": "page-0+0123456789ab"})
    assert (
        '<p class="note">This state was built by model page-0+0123456789ab: '
        "its earlier events were scored under it and are not rescored. The same numbers"
    ) in render(older, state.clock, MODEL)
    unknown = state.model_copy(update={"model_version": None})
    assert (
        "This state was built by an unknown model (written before versions were recorded). "
    ) in render(unknown, state.clock, MODEL)
