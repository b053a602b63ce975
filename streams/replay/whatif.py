"""`leadpulse model whatif` without its flags: find the models, read the history, compare.

Writes nothing: the history is read by a consumer without a group
(`history.open_history`), both models run in memory (`run.Replayer`), and
the comparison is returned for the CLI to print.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from leadpulse.scoring import ScoringModel
from leadpulse.streams.pipeline.records import Topics
from leadpulse.streams.replay.compare import Comparison, compare
from leadpulse.streams.replay.history import History, ReplayError, batches, open_history
from leadpulse.streams.replay.run import Replayer, RunResult, replay_models
from leadpulse.streams.settings import Settings


@dataclass(frozen=True)
class WhatIf:
    comparison: Comparison
    history: History
    seconds: float
    runs: tuple[RunResult, RunResult]
    """The current model's run, then the new one's."""


def replayer(settings: Settings, model: ScoringModel) -> Replayer:
    """A replayer configured as the worker of `settings` is (partitions, TTLs, skew, topics)."""
    return Replayer(
        model,
        partitions=settings.partitions,
        topics=Topics(
            handoffs=settings.handoffs_topic,
            transitions=settings.transitions_topic,
            dlq=settings.dlq_topic,
        ),
        anonymous_ttl=settings.anonymous_ttl,
        known_ttl=settings.known_ttl,
        max_future_skew=settings.max_future_skew,
        sweep_limit=settings.sweep_limit,
    )


def run_whatif(
    settings: Settings,
    current: ScoringModel,
    new: ScoringModel,
    *,
    since: float | None = None,
    now: float | None = None,
    on_history: Callable[[History], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> WhatIf:
    """Replay the events topic through both models in lockstep and compare them.

    `since` is an epoch time (None: the whole retained history); `now` the
    end of the history and the final sweep's time (default: the clock).
    `on_history` sees the history before the replay starts (a progress bar's
    total). Raises `ReplayError` for no broker, a missing or empty topic.
    """
    started = time.monotonic()
    end = time.time() if now is None else now
    consumer, history = open_history(settings, since=since, now=end)
    try:
        if history.retained_from is None:
            raise ReplayError(f"topic {history.topic} is empty: there is no history to replay")
        if history.expected == 0:
            raise ReplayError(
                f"topic {history.topic} has no records since the requested start; "
                "its history ends before it"
            )
        if on_history is not None:
            on_history(history)
        runs = asyncio.run(
            replay_models(
                batches(consumer, history, settings.batch_size),
                [replayer(settings, current), replayer(settings, new)],
                partitions=history.partitions,
                now=end,
                progress=progress,
            )
        )
    finally:
        consumer.close()
    if runs[0].events == 0:
        raise ReplayError(
            f"topic {history.topic} has no records since the requested start; "
            "its history ends before it"
        )
    comparison = compare(runs[0], runs[1], since=history.since)
    return WhatIf(comparison, history, time.monotonic() - started, (runs[0], runs[1]))
