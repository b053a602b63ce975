"""`leadpulse model whatif`: what a new model would have done on the retained history.

Parses the flags, loads the two models (errors as `leadpulse model check`
prints them), runs `streams.replay.run_whatif` and prints the comparison:
side by side, or one JSON object. Writes nothing anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from leadpulse.scoring import ModelError, ScoringModel, load_model, parse_duration
from leadpulse.streams.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    active_store,
    load_scoring_model,
    load_settings,
    worker_model,
)
from leadpulse.streams.settings import Settings

RECORD_TIMEOUT = 5.0
"""Seconds to wait for Redis to say which model the namespace records."""

DESCRIPTION = (
    "Replays the events topic (from its earliest retained record, or --since) through the "
    "current model and NEW.yaml, in memory, exactly as the worker scores (identity merges, "
    "sales feedback and decay sweeps included), and prints both side by side: leads per "
    "stage, MQLs, handoffs, recycles, handoffs per week, time from first touch to handoff, "
    "the leads gained and lost with why, and the outcome backtest: of the handoffs sales "
    "accepted, rejected, qualified to SQL or disqualified, how many NEW would also have "
    "made, and how much earlier or later. It WRITES NOTHING: no Redis, no topic, no "
    "consumer-group offsets (it reads the topic without a consumer group)."
)
EPILOG = (
    "The broker, topic names and partitions come from the same LEADPULSE_* settings the "
    "worker uses (in `leadpulse dev`'s export lines nothing else is needed); the current "
    "model is --current FILE, else the model the namespace records in Redis (the one the "
    "worker's states were built with), else the worker's LEADPULSE_MODEL_FILE (or the "
    "shipped default). Exit status 0, 1 on an error (no broker, empty topic, a bad model file), "
    "2 on a bad flag."
)


def add_parser(model_sub: Any) -> None:
    p = model_sub.add_parser(
        "whatif",
        help="what NEW.yaml would have done on the retained history (writes nothing)",
        description=DESCRIPTION,
        epilog=EPILOG,
    )
    p.add_argument("file", type=Path, metavar="NEW.yaml", help="the model to try")
    p.add_argument(
        "--since",
        metavar="DURATION",
        help="replay only the last DURATION (e.g. 30d, 12h); default the whole retained history",
    )
    p.add_argument(
        "--current",
        type=Path,
        metavar="FILE",
        help="the current model (default: the one the namespace records, as the worker does)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_model_whatif)


def _load(path: Path) -> ScoringModel | None:
    """The model, or None after printing its problems as `leadpulse model check` does."""
    try:
        return load_model(path)
    except (ModelError, OSError) as error:
        _problems(path, error)
    return None


def _problems(path: object, error: ModelError | OSError) -> None:
    if isinstance(error, ModelError):
        for issue in error.issues:
            print(issue, file=sys.stderr)
        print(f"{path}: {len(error.issues)} problem(s); model rejected", file=sys.stderr)
    else:
        print(f"{path}: cannot read: {error.strerror}", file=sys.stderr)


def _current(settings: Settings, path: Path | None) -> tuple[ScoringModel, str] | None:
    """The current model and where it came from, or None after printing why not.

    `--current FILE` wins; else the worker's model as `leadpulse lead` finds it
    (the namespace's record, else the settings' file); a Redis that does not
    answer leaves the settings' file, and says so.
    """
    if path is not None:
        model = _load(path)
        return None if model is None else (model, str(path))
    try:
        return asyncio.run(_recorded(settings))
    except SystemExit as error:  # the settings' model file is unusable
        print(error, file=sys.stderr)
        return None


async def _recorded(settings: Settings) -> tuple[ScoringModel, str]:
    from redis.exceptions import RedisError

    from leadpulse.streams.errors import LeadpulseError

    async def ask() -> tuple[ScoringModel, str]:
        store = await active_store(settings)
        try:
            return await worker_model(store, settings)
        finally:
            await store.close()

    try:
        return await asyncio.wait_for(ask(), RECORD_TIMEOUT)
    except (TimeoutError, OSError, RedisError, LeadpulseError) as error:
        where = settings.model_file or "the shipped default model"
        reason = str(error) or type(error).__name__
        return load_scoring_model(settings), f"{where} (Redis did not say: {reason})"


def cmd_model_whatif(args: argparse.Namespace) -> int:
    from leadpulse.streams.replay import ReplayError, as_json, run_whatif

    # kafka-python warns that a consumer without a group commits nothing: that is the point
    logging.getLogger("kafka").setLevel(logging.ERROR)

    since: float | None = None
    now = time.time()
    if args.since is not None:
        try:
            since = now - parse_duration(args.since)
        except ValueError as error:
            print(f"leadpulse model whatif: --since: {error}", file=sys.stderr)
            return EXIT_USAGE
    settings = load_settings()
    new = _load(args.file)
    if new is None:
        return EXIT_FAILED
    found = _current(settings, args.current)
    if found is None:
        return EXIT_FAILED
    current, source = found
    bar = Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None
    try:
        result = run_whatif(
            settings,
            current,
            new,
            since=since,
            now=now,
            on_history=bar.start if bar else None,
            progress=bar.advance if bar else None,
        )
    except ReplayError as error:
        if bar:
            bar.clear()
        print(f"leadpulse model whatif: {error}", file=sys.stderr)
        return EXIT_FAILED
    if bar:
        bar.clear()
    history = result.history
    if args.json:
        body = as_json(result.comparison, history_starts=history.retained_from, now=now)
        body["current"]["source"] = source
        body["new"]["source"] = str(args.file)
        body["since_asked"] = _iso(history.asked_since)
        print(json.dumps(body, indent=2))
        return EXIT_OK
    print(render(result.comparison, history, source=source, new_source=str(args.file), now=now))
    print(
        f"\n{result.comparison.events} events replayed in {result.seconds:.1f} s; nothing written."
    )
    return EXIT_OK


class Progress:
    """A one-line progress bar on a terminal: events replayed of those the offsets promise."""

    WIDTH = 30

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self.total = 0
        self.done = 0
        self.shown = -1.0

    def start(self, history: Any) -> None:
        self.total = max(1, int(history.expected))

    def advance(self, n: int) -> None:
        self.done += n
        share = min(1.0, self.done / self.total) if self.total else 0.0
        if share - self.shown < 0.01 and share < 1.0:
            return
        self.shown = share
        filled = int(share * self.WIDTH)
        self.out.write(
            f"\rreplaying [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{share:4.0%}  {self.done}/{self.total} events"
        )
        self.out.flush()

    def clear(self) -> None:
        self.out.write("\r" + " " * (self.WIDTH + 50) + "\r")
        self.out.flush()


def _iso(at: float | None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at, UTC).isoformat()


def _when(at: float | None) -> str:
    return "-" if at is None else f"{datetime.fromtimestamp(at, UTC):%Y-%m-%d %H:%M} UTC"


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else "+"
    s = abs(seconds)
    if s >= 86_400:
        return f"{sign}{s / 86_400:.1f}d"
    if s >= 3600:
        return f"{sign}{s / 3600:.1f}h"
    if s >= 60:
        return f"{sign}{s / 60:.1f}m"
    return f"{sign}{s:.0f}s"


def render(comparison: Any, history: Any, *, source: str, new_source: str, now: float) -> str:
    """The side-by-side text (no I/O)."""
    c, n = comparison.current, comparison.new
    lines = [
        f"history: {history.topic}, {comparison.events} events from {_when(comparison.since)} "
        f"to {_when(now)}",
        f"retained history starts {_when(history.retained_from)}",
    ]
    if history.starts_later:
        lines.append(
            f"note: --since asked for {_when(history.asked_since)}, but the retained history "
            "starts later; the figures cover only what is retained"
        )
    rows: list[tuple[str, str, str]] = [
        ("model", c.model_version, n.model_version),
    ]
    rows += [
        (f"leads in {stage} now", str(c.stages.get(stage, 0)), str(n.stages.get(stage, 0)))
        for stage in sorted(set(c.stages) | set(n.stages))
    ]
    rows += [
        ("MQLs", str(c.mqls), str(n.mqls)),
        ("handoffs", str(c.handoffs), str(n.handoffs)),
        ("recycles", str(c.recycles), str(n.recycles)),
        (
            "first touch -> handoff (median)",
            _span(c.median_touch_to_handoff).lstrip("+"),
            _span(n.median_touch_to_handoff).lstrip("+"),
        ),
    ]
    left = max(len(r[0]) for r in rows)
    mid = max(len(r[1]) for r in rows)
    out = [*lines, "", f"{'':{left}}  {'current':{mid}}  new"]
    out += [f"{a:{left}}  {b:{mid}}  {d}" for a, b, d in rows]
    out += ["", f"current model: {source}", f"new model:     {new_source}"]
    weeks = sorted(set(c.per_week) | set(n.per_week))
    if weeks:
        out += ["", "handoffs per week (current | new):"]
        out += [f"  {w}  {c.per_week.get(w, 0):6d} | {n.per_week.get(w, 0)}" for w in weeks]
    out += ["", "outcome backtest: of the current model's handoffs sales ...,"]
    out.append("  the new model would also have handed off (median shift, + later / - earlier)")
    for outcome, b in comparison.backtest.items():
        out.append(
            f"  {outcome:13s} {b.handoffs:6d}   also {b.also:6d}   shift {_span(b.median_shift)}"
        )
    for title, leads, sample in (
        ("gained", comparison.gained, comparison.gained_sample),
        ("lost", comparison.lost, comparison.lost_sample),
    ):
        out += ["", f"leads {title}: {len(leads)}"]
        for w in sample:
            parts = ", ".join(f"{rule} {a:.1f} -> {b:.1f}" for rule, a, b in w.parts) or (
                "same rule points: the thresholds differ"
            )
            out.append(
                f"  {w.lead_id} at {_when(w.at)}: engagement {w.current_engagement:.1f} -> "
                f"{w.new_engagement:.1f}; {parts}"
            )
    return "\n".join(out)
