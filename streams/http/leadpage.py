"""The lead page, ``GET /ui/leads/{lead_id}``: server-rendered HTML, an inline SVG chart.

No JavaScript and nothing fetched from elsewhere: one HTML document with its
styles inline (and a Content-Security-Policy that allows nothing else). The
chart draws `scoring.curve`: each rule's contribution from its latest matched
event on, the total from the lead's last scoring event on, the lifecycle
thresholds, and a marker at every event time the state keeps (each rule's
latest). The table below is `scoring.explain` at the same moment: its numbers
are the JSON view's (`/leads/{id}`) as ``<data value>``, shown rounded to two
decimals, and they add up to the engagement shown, computed with the worker's
model, whose version the page names (``#model-version``). Traits are shown only if the
model declares them for display (`ScoringModel.profile_traits`). Every piece of
text from a lead (its id, traits, event ids in notes) is HTML-escaped.
"""

from __future__ import annotations

import html
import json
import logging
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

from pydantic import JsonValue

from leadpulse.scoring import FLOOR_PART, LeadState, ScoringModel, explain, format_duration
from leadpulse.scoring.curve import Curve, Point, curve
from leadpulse.scoring.explain import Explanation
from leadpulse.scoring.feedback import sales_view
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.http.auth import PAGE_CSP
from leadpulse.streams.http.auth import SIGN_OUT as SIGN_OUT_PATH
from leadpulse.streams.store import LeadStore, decode_state

HEADERS: Final = {
    "Content-Security-Policy": f"default-src 'none'; style-src 'unsafe-inline'; {PAGE_CSP}",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
"""Headers of every lead page: no script, no fetch, nothing but inline styles, never framed.

``form-action 'self'``: the sign-out button posts here and nowhere else.
"""

WIDTH: Final = 960
HEIGHT: Final = 380
LEFT, RIGHT, TOP, BOTTOM = 64, 150, 20, 48
MIN_SPAN: Final = 60.0
"""Seconds: the narrowest time window drawn (a lead seen only a moment ago)."""
X_TICKS: Final = 6
PALETTE: Final = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
TOTAL_COLOUR: Final = "#111111"

STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; background: #fff; }
h1 { font-size: 1.4em; margin: 0 0 .3em; } h2 { font-size: 1.1em; margin: 1.2em 0 .4em; }
.facts { display: flex; gap: 2em; margin: .5em 0 1em; } .facts div { min-width: 6em; }
.facts dt { color: #666; font-size: .85em; } .facts dd { margin: 0; font-size: 1.3em; }
table { border-collapse: collapse; } th, td { padding: .25em .8em; border-bottom: 1px solid #ddd; }
th { text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
tfoot td { font-weight: bold; border-top: 2px solid #999; }
.legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 1.2em; }
.swatch { display: inline-block; width: 1.4em; height: .35em; vertical-align: middle;
  margin-right: .4em; }
.note { color: #555; max-width: 60em; } svg { max-width: 100%; height: auto; }
.model { color: #444; margin: 0 0 .4em; }
#sign-out { float: right; margin: 0 0 .5em 1em; }
"""

log = logging.getLogger("leadpulse")


def e(value: object) -> str:
    """HTML-escape for text and quoted attribute values."""
    return html.escape(str(value), quote=True)


def number(value: float) -> str:
    """A float as the JSON view writes it (Python's shortest round-trip form)."""
    return json.dumps(value)


def data(value: float, text: str | None = None) -> str:
    """The exact number for machines, rounded to two decimals for people."""
    shown = f"{value:.2f}" if text is None else text
    return f'<data value="{e(number(value))}">{e(shown)}</data>'


def stamp(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=UTC).isoformat()


async def lead_page(
    store: LeadStore, model: ScoringModel, lead_id: str, now: float
) -> tuple[int, str]:
    """(HTTP status, HTML) of the lead page at `now`: 404 for an unknown lead."""
    snap = (await store.peek([lead_id]))[lead_id]
    if snap.alias is not None and snap.state is None:
        return 200, merged_page(lead_id, snap.alias)
    if snap.state is None:
        return 404, not_found_page(lead_id)
    try:
        state = decode_state(snap.state, subject=lead_id)
    except CorruptStateError as error:
        log.warning("lead page: %s", error)
        return 200, unreadable_page(lead_id, error.reason)
    return 200, render(state, now, model)


def unreadable_page(lead_id: str, reason: str) -> str:
    """The page of a lead whose stored state this release cannot read."""
    return document(
        "Lead unreadable - leadpulse",
        f'<main id="lead" data-found="true" data-readable="false"><h1>{e(lead_id)}</h1>'
        f'<p class="unreadable">This lead\'s stored state cannot be '
        f"read by this release: {e(reason)}. Its events are dead-lettered until it is "
        "repaired (see <code>leadpulse dlq</code>).</p></main>",
    )


def document(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{e(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


SIGN_OUT: Final = (
    f'<form id="sign-out" method="post" action="{SIGN_OUT_PATH}">'
    '<button type="submit">Sign out</button></form>'
)
"""The sign-out button of a page signed in by a session (a form: no script needed)."""


def with_sign_out(page: str) -> str:
    """`page` (made by `document`) with the sign-out button at the top of its body."""
    head, body, rest = page.partition("<body>\n")
    return f"{head}{body}{SIGN_OUT}\n{rest}" if body else page


def not_found_page(lead_id: str) -> str:
    return document(
        "Lead not found - leadpulse",
        f'<main id="lead" data-found="false"><h1>No lead {e(lead_id)}</h1>'
        "<p>The worker holds no state under this id: it has sent no event yet, "
        "or it was an anonymous visitor that expired.</p></main>",
    )


def merged_page(lead_id: str, into: str) -> str:
    link = f"/ui/leads/{quote(into, safe='')}"
    return document(
        f"Lead {lead_id} merged - leadpulse",
        f'<main id="lead" data-merged-into="{e(into)}"><h1>{e(lead_id)} was merged</h1>'
        f'<p>Its history is part of lead <a href="{e(link)}">{e(into)}</a>.</p></main>',
    )


def render(state: LeadState, now: float, model: ScoringModel) -> str:
    """The whole page of `state` at `now` (read as the lead's clock if earlier)."""
    at = max(now, state.clock)
    explanation = explain(state, at, model)
    drawn = curve(state, at, model)
    colours = {line.rule: PALETTE[i % len(PALETTE)] for i, line in enumerate(drawn.rules)}
    kind = "anonymous visitor" if state.anonymous else "lead"
    body = (
        f'<main id="lead" data-lead-id="{e(state.lead_id)}" data-at="{e(number(at))}" '
        f'data-engagement="{e(number(explanation.engagement))}">\n'
        f"<h1>{e(kind.capitalize())} {e(state.lead_id)}</h1>\n"
        f"{model_line(model)}\n"
        f"{facts(explanation)}\n"
        f"<h2>Engagement over time</h2>\n{chart(drawn, model, colours)}\n"
        f"{legend(drawn, colours)}\n{chart_note(drawn)}\n"
        f"<h2>Breakdown at {e(stamp(at))}</h2>\n{breakdown(explanation, drawn, model)}\n"
        f"{fit_table(explanation)}\n{traits_table(state.traits, model.profile_traits)}\n"
        f"{notes(explanation.notes)}\n{sales_section(state, model)}"
        f'<p class="note">{built_by(state, model)}The same numbers as JSON: '
        f"<code>/leads/{e(state.lead_id)}</code>. "
        '<a href="/ui">Hot leads</a></p>\n</main>'
    )
    return document(f"Lead {state.lead_id} - leadpulse", body)


def model_line(model: ScoringModel, what: str = "Scored and explained") -> str:
    """Which model the page's numbers come from: the worker's, by its `model_version`."""
    return (
        f'<p class="model" data-model-version="{e(model.model_version)}">{e(what)} with the '
        f'worker\'s model <code id="model-version">{e(model.model_version)}</code></p>'
    )


def built_by(state: LeadState, model: ScoringModel) -> str:
    """Which model built the state, when it is not the one explaining it (else nothing)."""
    if state.model_version == model.model_version:
        return ""
    if state.model_version is None:
        return "This state was built by an unknown model (written before versions were recorded). "
    return (
        f"This state was built by model {e(state.model_version)}: its earlier events "
        "were scored under it and are not rescored. "
    )


def facts(explanation: Explanation) -> str:
    items = [
        ("Engagement", data(explanation.engagement), "engagement"),
        ("Stage", e(explanation.stage.value.upper()), "stage"),
        ("Grade", e(explanation.grade), "grade"),
        ("Fit", data(explanation.fit), "fit"),
    ]
    cells = "".join(
        f'<div><dt>{label}</dt><dd id="{key}">{value}</dd></div>' for label, value, key in items
    )
    return f'<dl class="facts">{cells}</dl>'


# -- the chart -----------------------------------------------------------------------------


class Frame:
    """Maps (time, points) to SVG coordinates inside the plot area."""

    def __init__(self, start: float, end: float, low: float, high: float) -> None:
        self.start, self.end, self.low, self.high = start, end, low, high
        self.width = WIDTH - LEFT - RIGHT
        self.height = HEIGHT - TOP - BOTTOM

    def x(self, moment: float) -> float:
        return LEFT + (moment - self.start) / (self.end - self.start) * self.width

    def y(self, value: float) -> float:
        return TOP + (self.high - value) / (self.high - self.low) * self.height

    def path(self, points: Sequence[Point]) -> str:
        return " ".join(
            f"{'M' if i == 0 else 'L'}{self.x(t):.2f},{self.y(v):.2f}"
            for i, (t, v) in enumerate(points)
        )


def nice_step(span: float, count: int) -> float:
    """A 1-2-5 step that cuts `span` into about `count` parts."""
    raw = span / count
    if not raw > 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    return next(m * power for m in (1.0, 2.0, 5.0, 10.0) if m * power >= raw)


def time_format(span: float) -> str:
    if span >= 3 * 86400:
        return "%b %d"
    if span >= 86400:
        return "%b %d %H:%M"
    if span >= 600:
        return "%H:%M"
    return "%H:%M:%S"


def frame_of(drawn: Curve, model: ScoringModel) -> Frame:
    end = drawn.at
    start = min(drawn.start, end - MIN_SPAN)
    lifecycle = model.lifecycle
    values = [v for line in drawn.rules for _, v in line.points] + [v for _, v in drawn.total]
    thresholds = [lifecycle.mql, lifecycle.handoff.engagement, lifecycle.recycle]
    low = min([0.0, *values])
    high = max([*values, *thresholds]) * 1.08
    step = nice_step(high - low, 5)
    return Frame(start, end, math.floor(low / step) * step, math.ceil(high / step) * step)


def chart(drawn: Curve, model: ScoringModel, colours: dict[str, str]) -> str:
    frame = frame_of(drawn, model)
    parts = [
        f'<svg id="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="engagement over time" '
        f'data-start="{e(number(frame.start))}" data-end="{e(number(frame.end))}">',
        f'<rect x="{LEFT}" y="{TOP}" width="{frame.width}" height="{frame.height}" '
        'fill="#fafafa" stroke="#ccc"/>',
    ]
    if drawn.exact_from is not None and drawn.exact_from > frame.start:
        parts.append(unknown_band(frame, drawn.exact_from))
    parts += list(axes(frame))
    parts += list(threshold_lines(frame, model))
    for line in drawn.rules:
        parts.append(
            f'<path class="curve rule" data-rule="{e(line.rule)}" d="{frame.path(line.points)}" '
            f'fill="none" stroke="{colours[line.rule]}" stroke-width="1.6">'
            f"<title>{e(line.rule)}</title></path>"
        )
    if drawn.total:
        parts.append(
            f'<path id="total-curve" class="curve total" d="{frame.path(drawn.total)}" '
            f'fill="none" stroke="{TOTAL_COLOUR}" stroke-width="3">'
            "<title>engagement (total)</title></path>"
        )
    parts += list(markers(frame, drawn, colours))
    parts.append("</svg>")
    return "\n".join(parts)


def unknown_band(frame: Frame, exact_from: float) -> str:
    right = frame.x(exact_from)
    return (
        f'<rect class="unknown" x="{LEFT}" y="{TOP}" width="{right - LEFT:.2f}" '
        f'height="{frame.height}" fill="#eee"><title>The total before the last scoring '
        "event is not kept</title></rect>"
        f'<text x="{LEFT + 6}" y="{TOP + 14}" font-size="11" fill="#888">'
        "total not kept here</text>"
    )


def axes(frame: Frame) -> Iterable[str]:
    bottom = TOP + frame.height
    span = frame.end - frame.start
    fmt = time_format(span)
    for i in range(X_TICKS + 1):
        moment = frame.start + span * i / X_TICKS
        x = frame.x(moment)
        label = datetime.fromtimestamp(moment, tz=UTC).strftime(fmt)
        yield (
            f'<line x1="{x:.2f}" y1="{bottom}" x2="{x:.2f}" y2="{bottom + 5}" stroke="#666"/>'
            f'<text class="tick x" x="{x:.2f}" y="{bottom + 18}" font-size="11" '
            f'text-anchor="middle" fill="#444">{e(label)}</text>'
        )
    yield (
        f'<text x="{LEFT + frame.width / 2:.2f}" y="{HEIGHT - 6}" font-size="11" '
        'text-anchor="middle" fill="#666">time (UTC)</text>'
    )
    step = nice_step(frame.high - frame.low, 5)
    for index in range(round((frame.high - frame.low) / step) + 1):
        value = frame.low + index * step
        y = frame.y(value)
        zero = abs(value) < step / 1e6
        yield (
            f'<line x1="{LEFT}" y1="{y:.2f}" x2="{LEFT + frame.width}" y2="{y:.2f}" '
            f'stroke="{"#999" if zero else "#e4e4e4"}"/>'
            f'<text class="tick y" x="{LEFT - 6}" y="{y + 4:.2f}" font-size="11" '
            f'text-anchor="end" fill="#444">{0.0 if zero else value:g}</text>'
        )
    yield (
        f'<text x="14" y="{TOP + frame.height / 2:.2f}" font-size="11" fill="#666" '
        f'text-anchor="middle" transform="rotate(-90 14 {TOP + frame.height / 2:.2f})">'
        "points</text>"
    )


def threshold_lines(frame: Frame, model: ScoringModel) -> Iterable[str]:
    lifecycle = model.lifecycle
    for key, label, value, colour in (
        ("handoff", "handoff", lifecycle.handoff.engagement, "#b22222"),
        ("mql", "MQL", lifecycle.mql, "#d2691e"),
        ("recycle", "recycle", lifecycle.recycle, "#4682b4"),
    ):
        y = frame.y(value)
        yield (
            f'<g class="threshold" data-threshold="{key}" data-value="{e(number(value))}">'
            f'<line x1="{LEFT}" y1="{y:.2f}" x2="{LEFT + frame.width}" y2="{y:.2f}" '
            f'stroke="{colour}" stroke-dasharray="6 4"/>'
            f'<text x="{LEFT + frame.width + 6}" y="{y + 4:.2f}" font-size="12" '
            f'fill="{colour}">{e(label)} {value:g}</text></g>'
        )


def markers(frame: Frame, drawn: Curve, colours: dict[str, str]) -> Iterable[str]:
    bottom = TOP + frame.height
    for line in drawn.rules:
        x = frame.x(line.since)
        y = frame.y(line.points[0][1])
        colour = colours[line.rule]
        yield (
            f'<g class="marker" data-rule="{e(line.rule)}" data-t="{e(number(line.since))}">'
            f"<title>latest {e(line.rule)} event, {e(stamp(line.since))}</title>"
            f'<line x1="{x:.2f}" y1="{y:.2f}" x2="{x:.2f}" y2="{bottom}" stroke="{colour}" '
            'stroke-dasharray="2 3"/>'
            f'<circle cx="{x:.2f}" cy="{y:.2f}" r="4" fill="{colour}"/>'
            f'<path d="M{x:.2f},{bottom} l-5,8 h10 z" fill="{colour}"/></g>'
        )


def legend(drawn: Curve, colours: dict[str, str]) -> str:
    items = [f'<li><span class="swatch" style="background:{TOTAL_COLOUR}"></span>total</li>']
    items += [
        f'<li><span class="swatch" style="background:{colours[line.rule]}"></span>'
        f"{e(line.rule)}</li>"
        for line in drawn.rules
    ]
    return f'<ul class="legend">{"".join(items)}</ul>'


def chart_note(drawn: Curve) -> str:
    if drawn.exact_from is None:
        return '<p class="note">No scoring event yet: nothing to draw.</p>'
    return (
        '<p class="note">Every line is the exact decayed value at its time. The state keeps '
        "one decayed sum per rule and the time of the rule's latest matched event (the "
        "markers), not the events themselves: so each rule's line starts at its latest "
        "event, and the total at the lead's last scoring event "
        f"({e(stamp(drawn.exact_from))}); what came before cannot be told apart and is "
        "not drawn. Dashed lines: the model's thresholds.</p>"
    )


# -- the tables ----------------------------------------------------------------------------


def breakdown(explanation: Explanation, drawn: Curve, model: ScoringModel) -> str:
    since = {line.rule: line.since for line in drawn.rules}
    rows = []
    for part in explanation.parts:
        rule = model.rules_by_name.get(part.rule)
        if part.rule == FLOOR_PART or rule is None:
            cap = life = latest = "—"
            name = "floor at zero (engagement is never negative)"
        else:
            cap = "—" if rule.cap is None else f"{rule.cap:g}"
            life = "none" if rule.half_life is None else format_duration(rule.half_life)
            if rule.window is not None:
                life += f" (window {format_duration(rule.window)})"
            latest = stamp(since[part.rule]) if part.rule in since else "—"
            name = part.rule
        capped = ""
        if part.capped and part.raw_points is not None:
            capped = f" <small>(capped; uncapped {data(part.raw_points)})</small>"
        rows.append(
            f'<tr data-rule="{e(part.rule)}"><td>{e(name)}</td>'
            f'<td class="num points">{data(part.points)}{capped}</td>'
            f'<td class="num">{e(cap)}</td><td class="num">{e(life)}</td>'
            f"<td>{e(latest)}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="5">no rule contributes</td></tr>')
    return (
        '<table id="breakdown"><thead><tr><th>rule</th><th>points now</th><th>cap</th>'
        "<th>half-life</th><th>latest event</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody>"
        f'<tfoot><tr><td>engagement</td><td class="num total">{data(explanation.engagement)}'
        '</td><td colspan="3"></td></tr></tfoot></table>'
    )


def fit_table(explanation: Explanation) -> str:
    rows = "".join(
        f'<tr><td>{e(part.rule)}</td><td class="num">{data(part.points)}</td></tr>'
        for part in explanation.fit_parts
    )
    if not rows:
        rows = '<tr><td colspan="2">no fit rule matches</td></tr>'
    return (
        '<h2>Fit</h2><table id="fit"><thead><tr><th>fit rule</th><th>points</th></tr></thead>'
        f"<tbody>{rows}</tbody><tfoot><tr><td>fit (grade {e(explanation.grade)})</td>"
        f'<td class="num">{data(explanation.fit)}</td></tr></tfoot></table>'
    )


def trait_text(value: JsonValue) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def traits_table(traits: dict[str, JsonValue], shown: Sequence[str]) -> str:
    """Only the traits the model declares for display, in its order; never the others."""
    rows = "".join(
        f'<tr data-trait="{e(key)}"><th>{e(key)}</th><td>{e(trait_text(traits[key]))}</td></tr>'
        for key in shown
        if key in traits
    )
    if not rows:
        rows = '<tr><td colspan="2">none of the displayed traits is known</td></tr>'
    return f'<h2>Profile</h2><table id="traits"><tbody>{rows}</tbody></table>'


def notes(found: Sequence[str]) -> str:
    if not found:
        return ""
    items = "".join(f"<li>{e(text)}</li>" for text in found)
    return f'<h2>Notes</h2><ul id="notes">{items}</ul>'


def sales_section(state: LeadState, model: ScoringModel) -> str:
    """Sales feedback on the current handoff, briefly; the JSON view has all of it."""
    sales = sales_view(state, model)
    if sales["handoff_id"] is None and not sales["history"]:
        return ""
    rows = [("Handoff", sales["handoff_id"] or "none"), ("Tier", sales["tier"] or "none")]
    rows.append(("Accepted", sales["accepted_at"] or "not yet"))
    rows += [
        (
            f["label"],
            f"{f['met']} of {f['of']} met"
            + (" (SQL)" if f.get("sql", {}).get("qualified") else ""),
        )
        for f in sales["frameworks"]
    ]
    cells = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in rows)
    items = "".join(
        f"<li>{e(entry['at'])} {e(entry['type'])}: {e(entry['outcome'])}</li>"
        for entry in sales["history"][-5:]
    )
    listing = f'<ul id="feedback">{items}</ul>' if items else ""
    return f'<h2>Sales feedback</h2><table id="sales"><tbody>{cells}</tbody></table>{listing}\n'
