"""`leadpulse deliver`: its flags, then the deliverer process (`streams.processes.deliverer`)."""

from __future__ import annotations

import argparse

from leadpulse.streams.cli.common import load_settings


def cmd_deliver(args: argparse.Namespace) -> int:
    from leadpulse.streams.processes.deliverer import run_deliverer

    settings = load_settings(destinations_file=args.destinations, deliver_web_port=args.web_port)
    return run_deliverer(
        settings,
        test=args.test,
        enable=args.enable,
        create_topics=args.create_topics,
        loglevel=args.loglevel,
    )
