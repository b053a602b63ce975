"""The hot-leads page, ``GET /ui``, and its JSON, ``GET /hot``.

The store's hot-leads index ranks known leads by their engagement at their
last commit; engagement decays, so that rank is stale. `hot_leads` takes
`CANDIDATES` times as many as it shows, scores each again at `now` with the
model (the exact decayed engagement, the fit grade, the stage the state
holds), sorts and keeps the top ones; a candidate whose state is gone
(expired) or merged away is left out. Reading writes nothing: the worker
repairs the index on its own schedule (`streams.pipeline.hotindex`), so
leads that cooled sink in it instead of hiding leads that are hot now. A
lead whose stored state this release cannot read is listed as unreadable
and counted; the page still renders.

The page names the worker's model (``#model-version``, the `model_version`
of ``/hot``), whose thresholds it states; the script shows the version each
refresh reports, so a worker that switched models is seen to have. While a
`leadpulse model apply` runs, ``#model-apply`` says how far it is (``apply``
of ``/hot``: phase, events replayed, lag), refreshed with the table.

The page is rendered on the server (the first paint needs no script) and a
small script of our own (``/ui/hot.js``, the only script the page's CSP
allows) listens to ``/ui/handoffs/stream`` and refreshes the table from
``/hot`` on every handoff and every `REFRESH` seconds; a 401 there (the
session expired or was ended) reloads the page, which is then the sign-in
page. Every piece of text from a lead is escaped in the HTML and set as text
(never as markup) by the script.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

from leadpulse.scoring import LeadState, ScoringModel, engagement, fit_points, grade
from leadpulse.streams.errors import CorruptStateError
from leadpulse.streams.http.auth import PAGE_CSP
from leadpulse.streams.http.leadpage import data, document, e, model_line, number, stamp
from leadpulse.streams.store import LeadStore, Snapshot, decode_state

log = logging.getLogger("leadpulse")

SHOWN: Final = 25
"""Leads on the page (``?limit=`` up to `MAX_SHOWN`)."""
MAX_SHOWN: Final = 200
CANDIDATES: Final = 4
"""Index entries read per lead shown, to make up for ranks gone stale by decay."""
REFRESH: Final = 5.0
"""Seconds between the script's table refreshes (and on every handoff)."""

HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; connect-src 'self'; "
        f"{PAGE_CSP}"
    ),
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
"""Headers of the hot page: our own script, same-origin fetches, never framed; forms post here."""


@dataclass(frozen=True, slots=True)
class HotLead:
    lead_id: str
    engagement: float
    fit: float
    grade: str
    stage: str
    last_event_at: float
    unreadable: str | None = None
    """Why the stored state cannot be read (then the numbers are 0), else None."""


async def hot_leads(
    store: LeadStore, model: ScoringModel, now: float, limit: int = SHOWN
) -> list[HotLead]:
    """The `limit` most engaged known leads at `now`, most engaged first; unreadable last."""
    candidates = [lead for lead, _ in await store.hot(limit * CANDIDATES)]
    if not candidates:
        return []
    found: list[HotLead] = []
    for lead, state in rescored(await store.peek(candidates), candidates).items():
        if isinstance(state, CorruptStateError):
            log.warning("hot page: %s", state)
            found.append(HotLead(lead, 0.0, 0.0, "-", "unreadable", 0.0, state.reason))
            continue
        fit = fit_points(state.traits, model)
        found.append(
            HotLead(
                lead_id=lead,
                engagement=engagement(state, now, model),
                fit=fit,
                grade=grade(fit, model),
                stage=state.stage.value,
                last_event_at=state.clock,
            )
        )
    found.sort(key=lambda row: (row.unreadable is not None, -row.engagement, row.lead_id))
    return found[:limit]


def rescored(
    snaps: Mapping[str, Snapshot], leads: Sequence[str]
) -> dict[str, LeadState | CorruptStateError]:
    """Each of `leads` that still has a state: the state, or why it cannot be read."""
    states: dict[str, LeadState | CorruptStateError] = {}
    for lead in leads:
        snap = snaps[lead]
        if snap.state is None:
            continue  # expired or merged away: the worker drops it from the index
        try:
            states[lead] = decode_state(snap.state, subject=lead)
        except CorruptStateError as error:
            states[lead] = error
    return states


def hot_json(
    rows: list[HotLead],
    now: float,
    model: ScoringModel,
    applying: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "at": now,
        "at_iso": stamp(now),
        "model_version": model.model_version,
        "apply": None if applying is None else dict(applying),
        "leads": [asdict(row) for row in rows],
        "unreadable": sum(1 for row in rows if row.unreadable is not None),
    }


def apply_line(applying: Mapping[str, Any] | None) -> str:
    """What a running `leadpulse model apply` is doing, in words ('' when none runs)."""
    if applying is None:
        return ""
    target = int(applying.get("target") or 0)
    done = int(applying.get("done_events") or 0)
    share = f" ({done / target:.0%} of this round)" if target else ""
    return (
        f"Applying model {applying['to_version']} (from {applying['from_version']}): "
        f"{applying['phase']}, {applying['replayed']} events replayed{share}, "
        f"lag {applying['lag']}."
    )


def iso_ms(moment: float) -> str:
    """UTC to the millisecond with a Z, as the script writes it (`Date.toISOString`)."""
    text = datetime.fromtimestamp(moment, tz=UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def lead_link(lead_id: str) -> str:
    return f"/ui/leads/{quote(lead_id, safe='')}"


STYLE: Final = """
.layout { display: flex; gap: 2.5em; flex-wrap: wrap; align-items: flex-start; }
#handoffs { list-style: none; padding: 0; margin: 0; min-width: 22em; }
#handoffs li { padding: .35em .5em; border-left: 4px solid #b22222; margin-bottom: .4em;
  background: #fff5f5; }
#handoffs li.empty { border-color: #ccc; background: #f6f6f6; color: #666; }
#live { font-size: .85em; padding: .1em .5em; border-radius: 1em; background: #eee; }
body[data-live="true"] #live { background: #dff5df; color: #185c18; }
.grade, .stage { font-weight: bold; }
"""


def render_hot(
    rows: list[HotLead],
    now: float,
    model: ScoringModel,
    applying: Mapping[str, Any] | None = None,
) -> str:
    body_rows = "".join(
        f'<tr data-lead-id="{e(row.lead_id)}">'
        f'<td class="rank num">{rank}</td>'
        f'<td><a href="{e(lead_link(row.lead_id))}">{e(row.lead_id)}</a></td>'
        f'<td class="num engagement">{data(row.engagement)}</td>'
        f'<td class="grade">{e(row.grade)}</td>'
        f'<td class="stage">{e(row.stage.upper())}</td>'
        f'<td class="num fit">{data(row.fit)}</td>'
        f"<td>{e(iso_ms(row.last_event_at))}</td></tr>"
        for rank, row in enumerate(rows, start=1)
    )
    if not rows:
        body_rows = '<tr class="empty"><td colspan="7">no known lead has scored yet</td></tr>'
    lifecycle = model.lifecycle
    body = (
        f'<main id="hot-page" data-at="{e(number(now))}">\n'
        '<h1>Hot leads <span id="live">connecting…</span></h1>\n'
        '<p class="note">Engagement now (decayed to '
        f'<span id="as-of">{e(stamp(now))}</span>).</p>\n'
        f"{model_line(model, 'Scored')}\n"
        f'<p id="model-apply" class="note"{"" if applying else " hidden"}>'
        f"{e(apply_line(applying))}</p>\n"
        f'<p class="note">MQL at {lifecycle.mql:g}, handoff at '
        f"{lifecycle.handoff.engagement:g} with grade {e(lifecycle.handoff.min_grade)} or "
        "better.</p>\n"
        '<div class="layout">\n<section>\n'
        '<table id="hot"><thead><tr><th>#</th><th>lead</th><th>engagement</th><th>grade</th>'
        "<th>stage</th><th>fit</th><th>last event</th></tr></thead>"
        f"<tbody>{body_rows}</tbody></table>\n</section>\n"
        '<section>\n<h2>Handoffs, live</h2>\n<ul id="handoffs">'
        '<li class="empty">no handoff yet</li></ul>\n</section>\n</div>\n'
        '<p class="note">JSON: <code>/hot</code>, <code>/leads/&lt;id&gt;</code>; '
        "live handoffs: <code>/ui/handoffs/stream</code> (server-sent events).</p>\n"
        "</main>\n"
        f'<script src="/ui/hot.js" data-refresh="{REFRESH * 1000:.0f}"></script>'
    )
    return document("Hot leads - leadpulse", f"<style>{STYLE}</style>\n{body}")


SCRIPT: Final = r"""
"use strict";
(() => {
  const me = document.currentScript;
  const refreshMs = Number(me.dataset.refresh) || 5000;
  const body = document.body;
  const tbody = document.querySelector("#hot tbody");
  const list = document.getElementById("handoffs");
  const live = document.getElementById("live");
  const asOf = document.getElementById("as-of");
  const modelVersion = document.getElementById("model-version");
  const applying = document.getElementById("model-apply");
  const applyLine = (a) => {
    const share = a.target ? " (" + Math.floor(a.done_events / a.target * 100) +
      "% of this round)" : "";
    return "Applying model " + a.to_version + " (from " + a.from_version + "): " + a.phase +
      ", " + a.replayed + " events replayed" + share + ", lag " + a.lag + ".";
  };
  const link = (id) => {
    const a = document.createElement("a");
    a.href = "/ui/leads/" + encodeURIComponent(id);
    a.textContent = id;
    return a;
  };
  const num = (value) => {
    const d = document.createElement("data");
    d.value = String(value);
    d.textContent = value.toFixed(2);
    return d;
  };
  const cell = (tr, content, cls) => {
    const td = document.createElement("td");
    if (cls) td.className = cls;
    if (typeof content === "string") td.textContent = content; else td.append(content);
    tr.append(td);
  };
  const row = (lead, rank) => {
    const tr = document.createElement("tr");
    tr.dataset.leadId = lead.lead_id;
    cell(tr, String(rank), "rank num");
    cell(tr, link(lead.lead_id));
    cell(tr, num(lead.engagement), "num engagement");
    cell(tr, lead.grade, "grade");
    cell(tr, lead.stage.toUpperCase(), "stage");
    cell(tr, num(lead.fit), "num fit");
    cell(tr, new Date(lead.last_event_at * 1000).toISOString());
    return tr;
  };
  let pending = null;
  const refresh = async () => {
    try {
      const limit = new URLSearchParams(location.search).get("limit");
      const path = limit ? "/hot?limit=" + encodeURIComponent(limit) : "/hot";
      const reply = await fetch(path, {credentials: "same-origin", cache: "no-store"});
      if (reply.status === 401) {  // the session expired or ended: to the sign-in page
        location.reload();
        return;
      }
      if (!reply.ok) return;
      const hot = await reply.json();
      if (hot.leads.length) tbody.replaceChildren(...hot.leads.map((l, i) => row(l, i + 1)));
      asOf.textContent = hot.at_iso;
      if (hot.model_version !== modelVersion.textContent) {  // the worker switched models
        modelVersion.textContent = hot.model_version;
        modelVersion.parentElement.dataset.modelVersion = hot.model_version;
      }
      applying.hidden = !hot.apply;
      applying.textContent = hot.apply ? applyLine(hot.apply) : "";
      body.dataset.refreshedAt = String(hot.at);
    } catch (error) {
      live.textContent = "refresh failed";
    }
  };
  const soon = () => {
    if (pending === null) pending = setTimeout(() => { pending = null; refresh(); }, 150);
  };
  const shown = new Set();
  const handoff = (h) => {
    if (shown.has(h.handoff_id)) return;
    shown.add(h.handoff_id);
    const empty = list.querySelector("li.empty");
    if (empty) empty.remove();
    const li = document.createElement("li");
    li.dataset.leadId = h.lead_id;
    li.dataset.handoffId = h.handoff_id;
    const when = new Date(h.occurred_at).toISOString().slice(11, 19);
    li.append(when + "  ", link(h.lead_id),
      "  engagement " + h.engagement.toFixed(1) + ", grade " + h.grade);
    list.prepend(li);
    while (list.children.length > 50) list.lastElementChild.remove();
    soon();
  };
  const source = new EventSource("/ui/handoffs/stream");
  source.addEventListener("ready", (ev) => {
    body.dataset.live = "true";
    live.textContent = "live";
    JSON.parse(ev.data).recent.forEach(handoff);
  });
  source.addEventListener("handoff", (ev) => handoff(JSON.parse(ev.data)));
  source.addEventListener("error", () => {
    body.dataset.live = "false";
    live.textContent = "reconnecting…";
  });
  setInterval(refresh, refreshMs);
})();
"""
"""The page's script: live handoffs, table refreshes; it only ever sets text."""
