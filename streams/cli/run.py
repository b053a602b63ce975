"""`leadpulse worker`: its flags, then the worker process (`streams.processes.worker`).

Only the worker: `dev` and `demo` are in `streams.cli.dev`, so running a
worker never loads the development harness (`streams.dev`).
"""

from __future__ import annotations

import argparse

from leadpulse.streams.cli.common import load_scoring_model, load_settings


def cmd_worker(args: argparse.Namespace) -> int:
    from leadpulse.streams.processes.worker import prepare_topics, run_worker

    settings = load_settings(
        model_file=args.model,
        web_port=args.web_port,
        data_dir=args.data_dir,
        forward_only=args.forward_only,
    )
    model = load_scoring_model(settings)
    prepare_topics(settings, create=args.create_topics)
    return run_worker(settings, model, loglevel=args.loglevel)
