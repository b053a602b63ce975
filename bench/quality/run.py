"""`python -m bench.quality`: does decay qualify better? Three scorers, one simulated funnel.

See bench/quality/README.md for the funnel, the metrics and how to read the output.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS, machine
from bench.quality.funnel import Funnel, generate
from bench.quality.metrics import Metrics, measure, search_threshold
from bench.quality.report import Row, curve_dict, pr_svg, table
from bench.quality.scorers import SCORERS, ReplayCheck, load, replay_check, score, with_handoff
from leadpulse.scoring import ModelError, ScoringModel

DEFAULT_GRID = "30:300:10"


@dataclass
class Scorer:
    """One model being measured; every threshold it was scored at is kept."""

    name: str
    model: ScoringModel
    seen: dict[float, Metrics] = field(default_factory=dict)
    seconds: float = 0.0

    def at(self, threshold: float, funnel: Funnel) -> Metrics:
        if threshold not in self.seen:
            started = time.perf_counter()
            scored = score(funnel.events, with_handoff(self.model, threshold), until=funnel.end)
            self.seen[threshold] = measure(scored, funnel.truth)
            self.seconds += time.perf_counter() - started
        return self.seen[threshold]


def _recall(scorer: Scorer, funnel: Funnel, threshold: float) -> float:
    return scorer.at(threshold, funnel).recall


def grid(text: str) -> list[float]:
    """``START:STOP:STEP`` (STOP included) as thresholds."""
    try:
        start, stop, step = (float(part) for part in text.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected START:STOP:STEP (e.g. {DEFAULT_GRID}), got {text!r}"
        ) from None
    if not 0 < start < stop or step <= 0:
        raise argparse.ArgumentTypeError(f"need 0 < START < STOP and STEP > 0, got {text!r}")
    values: list[float] = []
    value = start
    while value <= stop + 1e-9:
        values.append(round(value, 6))
        value += step
    return values


def recall_target(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"recall must be in (0, 1], got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    names = ", ".join(f"{name} ({what})" for name, what in SCORERS.items())
    p = argparse.ArgumentParser(
        prog="python -m bench.quality",
        description=(
            "Score one simulated funnel (leads with a known, rising and fading intent) with "
            "several models, each at the handoff threshold that gives them equal recall, and "
            "compare handoff precision, lead time, handoffs per 1,000 leads and recycles. "
            "Writes bench/results/quality-<UTC time>.json, .md (the table) and .svg (the PR "
            "plot)."
        ),
    )
    p.add_argument("--leads", type=int, default=2000, help="simulated leads (default 2000)")
    p.add_argument("--days", type=float, default=180.0, help="simulated period (default 180)")
    p.add_argument("--seed", type=int, default=7, help="the funnel's seed (default 7)")
    p.add_argument(
        "--models",
        default=",".join(SCORERS),
        help=f"comma-separated scorers: names of bench/quality/*.yaml ({names}) or paths "
        "to model files (default: all three)",
    )
    p.add_argument(
        "--recall",
        type=recall_target,
        default=None,
        help="the recall every scorer is set to (default: the highest recall every scorer "
        "reaches on the grid)",
    )
    p.add_argument(
        "--grid",
        type=grid,
        default=grid(DEFAULT_GRID),
        help=f"handoff thresholds swept for the PR curve, START:STOP:STEP (default "
        f"{DEFAULT_GRID}); the equal-recall threshold is then bisected between two of them",
    )
    p.add_argument(
        "--quick", action="store_true", help="500 leads and a coarser grid, for development"
    )
    p.add_argument("--no-save", action="store_true", help="print only, write no files")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.quick:
        args.leads = min(args.leads, 500)
        args.grid = args.grid[::2]
    if args.leads < 1:
        parser().error(f"--leads must be at least 1, got {args.leads}")
    names = [name.strip() for name in args.models.split(",") if name.strip()]
    if not names:
        parser().error("--models names no scorer")
    scorers: list[Scorer] = []
    problems: list[str] = []
    for name in names:
        try:
            scorers.append(Scorer(Path(name).stem if name not in SCORERS else name, load(name)))
        except ModelError as error:
            problems.extend(error.issues)
    if problems:
        print("cannot load every model file:", *problems, sep="\n  ", file=sys.stderr)
        return 2

    started = time.perf_counter()
    funnel = generate(args.leads, args.days, args.seed)
    personas = ", ".join(f"{kind} {count}" for kind, count in sorted(funnel.personas().items()))
    print(
        f"funnel: {funnel.leads:,} leads ({personas}), {funnel.event_count():,} events over "
        f"{args.days:g} days, {funnel.ready_episodes():,} sales-ready episodes, seed "
        f"{args.seed} ({time.perf_counter() - started:.1f} s)"
    )

    for scorer in scorers:
        for threshold in args.grid:
            scorer.at(threshold, funnel)
        best = max(m.recall for m in scorer.seen.values())
        print(
            f"  {scorer.name}: {len(args.grid)} thresholds in {scorer.seconds:.1f} s, "
            f"highest recall {best:.3f}"
        )
    target = args.recall
    if target is None:
        target = min(max(m.recall for m in s.seen.values()) for s in scorers)
    print(f"target recall: {target:.4f}")

    rows: list[Row] = []
    unreached: dict[str, str] = {}
    for scorer in scorers:
        reaching = [t for t in args.grid if scorer.seen[t].recall >= target]
        if not reaching:
            best = max(m.recall for m in scorer.seen.values())
            unreached[scorer.name] = f"highest recall on the grid is {best:.4f}"
            continue
        low = max(reaching)
        above = [t for t in args.grid if t > low]
        if not above:
            unreached[scorer.name] = (
                f"recall still {scorer.seen[low].recall:.4f} at the grid's top {low:g}: "
                "raise --grid's STOP"
            )
            continue
        found = search_threshold(
            functools.partial(_recall, scorer, funnel),
            target,
            low=low,
            high=min(above),
        )
        curve = sorted(scorer.seen.items())
        rows.append(Row(scorer.name, found.threshold, scorer.seen[found.threshold], curve))
    for name, why in unreached.items():
        print(f"  {name} does not reach recall {target:.4f}: {why}", file=sys.stderr)

    checks: dict[str, ReplayCheck] = {}
    for row in rows:
        scorer = next(s for s in scorers if s.name == row.name)
        check = replay_check(
            funnel.events, with_handoff(scorer.model, row.threshold), until=funnel.end
        )
        checks[row.name] = check
        verdict = "the same" if check.equal else "DIFFERENT"
        print(
            f"  replay check, {row.name} at {row.threshold:g}: {verdict} decisions through the "
            f"whatif replay ({check.replay_handoffs} handoffs, {check.replay_recycles} recycles; "
            f"the engine {check.handoffs}, {check.recycles}; "
            f"{len(check.differing_leads)} leads differ)"
        )
    title = f"Handoff precision vs recall, {funnel.leads:,} simulated leads, seed {args.seed}"
    markdown = table(rows)
    print()
    print(markdown)
    elapsed = time.perf_counter() - started
    print(f"took {elapsed:.0f} s")
    if args.no_save:
        return 0 if rows and all(c.equal for c in checks.values()) else 1
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H-%M-%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    base = RESULTS / f"quality-{stamp}"
    result: dict[str, Any] = {
        "machine": machine(),
        "seed": args.seed,
        "leads": funnel.leads,
        "days": args.days,
        "events": funnel.event_count(),
        "personas": dict(funnel.personas()),
        "ready_episodes": funnel.ready_episodes(),
        "target_recall": target,
        "replay_check": {
            name: {
                "equal": check.equal,
                "handoffs": check.handoffs,
                "replay_handoffs": check.replay_handoffs,
                "recycles": check.recycles,
                "replay_recycles": check.replay_recycles,
                "differing_leads": list(check.differing_leads),
            }
            for name, check in checks.items()
        },
        "seconds": elapsed,
        "scorers": {
            row.name: {
                "model_version": next(s for s in scorers if s.name == row.name).model.model_version,
                "threshold": row.threshold,
                "metrics": row.metrics.as_dict(),
                "curve": curve_dict(row.curve),
            }
            for row in rows
        },
        "unreached": unreached,
    }
    Path(f"{base}.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    Path(f"{base}.md").write_text(markdown)
    Path(f"{base}.svg").write_text(pr_svg(rows, title=title, target=target))
    print(f"wrote {base}.json, .md, .svg")
    return 0 if rows and all(c.equal for c in checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
