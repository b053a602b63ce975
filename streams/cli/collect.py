"""`leadpulse collect`: the Segment-compatible HTTP collector (`streams.processes.collector`)."""

from __future__ import annotations

import argparse

from leadpulse.streams.cli.common import EXIT_OK, load_scoring_model, load_settings
from leadpulse.streams.collector.auth import new_write_key
from leadpulse.streams.processes.topics import create_topics_if_reachable

__all__ = ["cmd_collect", "create_topics_if_reachable"]
"""`create_topics_if_reachable` too: `leadpulse deliver --create-topics` imports it from here."""


def cmd_collect(args: argparse.Namespace) -> int:
    if args.new_key:
        print(new_write_key())
        return EXIT_OK
    from leadpulse.streams.processes.collector import run_collector

    settings = load_settings(
        collector_host=args.host,
        collector_port=args.port,
        collector_metrics_port=args.metrics_port,
        model_file=args.model,
    )
    model = load_scoring_model(settings)
    return run_collector(settings, model, create_topics=args.create_topics, loglevel=args.loglevel)
