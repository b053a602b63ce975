"""Readable text for messages and leads; no I/O, so it is tested apart."""

from __future__ import annotations

import json
from typing import Any

from leadpulse.schemas import DecodeError, decode
from leadpulse.schemas.messages import DeadLetter, Handoff, StageTransition
from leadpulse.scoring import format_duration


def describe_message(topic_kind: str, value: bytes) -> str:
    """One readable line per handoff / transition / dead letter."""
    try:
        if topic_kind == "handoffs":
            h = decode(value, Handoff)
            why = ", ".join(f"{r.rule} {r.points:+.1f}" for r in h.reasons[:3])
            tier = f"  tier {h.tier}" if h.tier is not None else ""
            return (
                f"{h.occurred_at:%Y-%m-%d %H:%M:%S}  HANDOFF  {h.lead_id}  engagement "
                f"{h.engagement:.1f}  fit {h.fit:.0f} ({h.grade}){tier}  why: {why}"
            )
        if topic_kind == "transitions":
            t = decode(value, StageTransition)
            cause = f"event {t.event_id}" if t.event_id else "decay"
            return (
                f"{t.occurred_at:%Y-%m-%d %H:%M:%S}  {t.lead_id}  {t.from_stage.upper()} -> "
                f"{t.to_stage.upper()}  engagement {t.engagement:.1f}  grade {t.grade}  ({cause})"
            )
        if topic_kind == "dlq":
            d = decode(value, DeadLetter)
            return (
                f"{d.failed_at:%Y-%m-%d %H:%M:%S}  DLQ  {d.source_topic}[{d.source_partition}]"
                f"@{d.source_offset}  {d.reason}"
            )
    except DecodeError:
        pass
    return value.decode("utf-8", errors="replace")


def format_lead(view: dict[str, Any]) -> str:
    if "merged_into" in view:
        return f"{view['lead_id']} was merged into {view['merged_into']}\n" + format_lead(
            view["lead"]
        )
    if not view.get("found"):
        return f"{view['lead_id']}: no such lead"
    if "unreadable" in view:
        return f"{view['lead_id']}: stored state unreadable by this release: {view['unreadable']}"
    e = view["explanation"]
    lines = [
        f"lead        {view['lead_id']}" + ("  (anonymous)" if view["anonymous"] else ""),
        f"stage       {str(e['stage']).upper()}",
        f"engagement  {e['engagement']:.2f}",
        f"fit         {e['fit']:.0f}  grade {e['grade']}",
        f"model       {view['model_version']}",
    ]
    if view.get("explained_with"):
        lines.append(f"  from      {view['explained_with']}")
    if "state_model" in view:
        lines.append(f"built by    {view['state_model']}")
    if view.get("model_warning"):
        lines.append(f"warning     {view['model_warning']}")
    account = view.get("account_id")
    if account is not None:
        lines.append(f"account     {account}")
        lines.extend(
            f"  {key if key.isprintable() else json.dumps(key):28} "
            f"{json.dumps(value, ensure_ascii=False)}"
            for key, value in (view.get("account_traits") or {}).items()
        )
    lines.append("why (engagement, decayed to now):")
    lines.extend(f"  {p['rule']:28} {p['points']:+9.2f}" for p in e["parts"])
    if e.get("fit_parts"):
        lines.append("fit:")
        lines.extend(f"  {p['rule']:28} {p['points']:+9.0f}" for p in e["fit_parts"])
    lines += format_sales(view.get("sales"))
    if e.get("notes"):
        lines.append("notes:")
        lines.extend(f"  {note}" for note in e["notes"])
    return "\n".join(lines)


def format_sales(sales: dict[str, Any] | None) -> list[str]:
    """The feedback part of `leadpulse lead`: handoff, acceptance, frameworks, history."""
    if not sales or (sales.get("handoff_id") is None and not sales.get("history")):
        return []
    lines = []
    if sales.get("handoff_id") is not None:
        tier = f"  tier {sales['tier']}" if sales.get("tier") is not None else ""
        lines.append(f"handoff     {sales['handoff_id']}  at {sales.get('handed_off_at')}{tier}")
        took = sales.get("time_to_accept_seconds")
        if sales.get("accepted_at") is None:
            lines.append("accepted    not yet")
        else:
            lines.append(
                f"accepted    {sales['accepted_at']}  ({format_duration(took or 0)} after)"
            )
    if not sales.get("armed", True):
        lines.append("armed       no: re-arms once engagement falls below recycle")
    if sales.get("cooldown_until") is not None:
        lines.append(f"cooldown    no MQL before {sales['cooldown_until']}")
    for framework in sales.get("frameworks", []):
        head = f"{framework['label']:11} {framework['met']} of {framework['of']} met"
        sql = framework.get("sql")
        lines.append(head + (f"; {'SQL' if sql['qualified'] else 'not SQL'}" if sql else ""))
        lines.extend(
            f"  {name:28} {status}" for name, status in framework.get("criteria", {}).items()
        )
    history = sales.get("history") or []
    if history:
        lines.append("feedback (oldest first):")
        for entry in history:
            mark = " [stale]" if entry.get("stale") else ""
            lines.append(f"  {entry['at']}  {entry['type']:16}{mark} {_line(entry['outcome'])}")
            if entry.get("note"):
                lines.append(f"    note: {_line(entry['note'])}")
    return lines


def _line(text: str) -> str:
    """One printable line of text a sales tool sent."""
    return text if text.isprintable() else json.dumps(text, ensure_ascii=False)
