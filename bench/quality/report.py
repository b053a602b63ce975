"""The comparison as one Markdown table and a precision-recall plot (hand-written SVG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

from bench.quality.metrics import Metrics

COLOURS = ("#1b6ac9", "#d1495b", "#2a9d4b", "#8a5cc2", "#e08a1e")


@dataclass(frozen=True)
class Row:
    """One scorer at its equal-recall threshold, and its curve."""

    name: str
    threshold: float
    metrics: Metrics
    curve: Sequence[tuple[float, Metrics]]
    """(threshold, metrics) for the plot, by threshold."""


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: Sequence[Row]) -> str:
    """The Markdown table: one line per scorer."""
    lines = [
        "| scorer | handoff threshold | precision | recall | median days ready → handoff "
        "| handoffs / 1,000 leads | recycles | cold handoffs recycled "
        "| median days cold → recycle |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        m = row.metrics
        share = f"{m.recycled_cold / m.went_cold:.0%}" if m.went_cold else "-"
        lines.append(
            f"| {row.name} | {row.threshold:.2f} | {_num(m.precision, 3)} "
            f"| {m.recall:.3f} ({m.caught}/{m.episodes}) | {_num(m.lead_time_days)} "
            f"| {m.handoffs_per_1000:,.0f} | {m.recycles:,} "
            f"| {m.recycled_cold:,} of {m.went_cold:,} ({share}) "
            f"| {_num(m.cold_to_recycle_days)} |"
        )
    return "\n".join(lines) + "\n"


def pr_svg(rows: Sequence[Row], *, title: str, target: float) -> str:
    """Precision (y) against recall (x), one line per scorer through its thresholds.

    The scorer's equal-recall point is a filled circle; the target recall a
    dashed vertical line. Pure SVG 1.1, no script, no external resources.
    """
    width, height = 640, 480
    left, right, top, bottom = 70, 190, 50, 60
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(recall: float) -> float:
        return left + recall * plot_w

    def y(precision: float) -> float:
        return top + (1 - precision) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{left}" y="28" font-size="15">{escape(title)}</text>',
    ]
    for tick in range(11):
        value = tick / 10
        out.append(
            f'<line x1="{x(value):.1f}" y1="{top}" x2="{x(value):.1f}" y2="{top + plot_h}" '
            'stroke="#e4e4e4"/>'
        )
        out.append(
            f'<line x1="{left}" y1="{y(value):.1f}" x2="{left + plot_w}" y2="{y(value):.1f}" '
            'stroke="#e4e4e4"/>'
        )
        out.append(
            f'<text x="{x(value):.1f}" y="{top + plot_h + 16}" text-anchor="middle">'
            f"{value:.1f}</text>"
        )
        out.append(
            f'<text x="{left - 8}" y="{y(value) + 4:.1f}" text-anchor="end">{value:.1f}</text>'
        )
    out += [
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#444"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 18}" text-anchor="middle">'
        "recall (ready episodes caught)</text>",
        f'<text x="18" y="{top + plot_h / 2}" text-anchor="middle" '
        f'transform="rotate(-90 18 {top + plot_h / 2})">precision (handoffs to ready leads)</text>',
        f'<line x1="{x(target):.1f}" y1="{top}" x2="{x(target):.1f}" y2="{top + plot_h}" '
        'stroke="#888" stroke-dasharray="5,4"/>',
    ]
    for index, row in enumerate(rows):
        colour = COLOURS[index % len(COLOURS)]
        points = [(m.recall, m.precision) for _, m in row.curve if m.precision is not None]
        if points:
            path = " ".join(f"{x(r):.1f},{y(p):.1f}" for r, p in points)
            out.append(
                f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>'
            )
            out.extend(
                f'<circle cx="{x(r):.1f}" cy="{y(p):.1f}" r="2" fill="{colour}"/>'
                for r, p in points
            )
        chosen = row.metrics
        if chosen.precision is not None:
            out.append(
                f'<circle cx="{x(chosen.recall):.1f}" cy="{y(chosen.precision):.1f}" r="6" '
                f'fill="{colour}" stroke="black"/>'
            )
        legend_y = top + 16 + index * 20
        out.append(
            f'<line x1="{left + plot_w + 16}" y1="{legend_y - 4}" x2="{left + plot_w + 40}" '
            f'y2="{legend_y - 4}" stroke="{colour}" stroke-width="3"/>'
        )
        out.append(f'<text x="{left + plot_w + 46}" y="{legend_y}">{escape(row.name)}</text>')
    notes = [
        "lines: handoff threshold swept",
        "big dot: threshold at equal recall",
        f"dashed: target recall {target:.3f}",
    ]
    for index, note in enumerate(notes):
        out.append(
            f'<text x="{left + plot_w + 16}" y="{top + 16 + (len(rows) + 1 + index) * 20}" '
            f'fill="#555" font-size="11">{escape(note)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def curve_dict(curve: Sequence[tuple[float, Metrics]]) -> list[Mapping[str, object]]:
    return [{"threshold": threshold, **m.as_dict()} for threshold, m in curve]
