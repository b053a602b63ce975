"""`leadpulse model check` and `leadpulse schema`."""

from __future__ import annotations

import argparse
import json
import sys

from leadpulse.schemas import json_schemas
from leadpulse.schemas.feedback import feedback_schemas
from leadpulse.scoring import ModelError, load_model, summary
from leadpulse.streams.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def cmd_model_check(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.file)
    except ModelError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        print(f"{args.file}: {len(error.issues)} problem(s); model rejected", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"{args.file}: cannot read: {error.strerror}", file=sys.stderr)
        return EXIT_FAILED
    print(summary(model))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """A wire message's JSON Schema, or a feedback type's (the `properties` it needs)."""
    schemas = {**json_schemas(), **feedback_schemas()}
    if args.message:
        if args.message not in schemas:
            print(f"unknown message {args.message!r}; one of {', '.join(schemas)}", file=sys.stderr)
            return EXIT_USAGE
        print(json.dumps(schemas[args.message], indent=2))
    else:
        print(json.dumps(schemas, indent=2))
    return EXIT_OK
