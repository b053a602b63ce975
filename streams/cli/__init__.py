"""`leadpulse` command line: run, feed, watch and inspect the scorer.

One module per command family (`run`, `feed`, `inspect`, `model`), the
parser in `parser`, text formatting apart in `format`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from leadpulse.streams.cli.common import EXIT_INTERRUPTED, EXIT_OK
from leadpulse.streams.cli.parser import build_parser

__all__ = ["build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with suppress(BrokenPipeError):
        try:
            result: int = args.func(args)
        except KeyboardInterrupt:  # the command cleaned up on its way out
            return EXIT_INTERRUPTED
        return result
    return EXIT_OK
