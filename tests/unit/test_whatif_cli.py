"""`leadpulse model whatif`'s own parts: the progress bar, --help, bad flags."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from leadpulse.streams.cli import build_parser, main
from leadpulse.streams.cli.whatif import Progress


def test_the_progress_bar_counts_up_to_the_history_and_clears_itself() -> None:
    out = io.StringIO()
    bar = Progress(out)
    bar.start(SimpleNamespace(expected=200))
    bar.advance(50)
    bar.advance(1)  # under 1 % more: not redrawn
    bar.advance(149)
    bar.clear()
    lines = out.getvalue().split("\r")
    assert lines[1] == "replaying [#######.......................]  25%  50/200 events"
    assert lines[2] == "replaying [##############################] 100%  200/200 events"
    assert lines[3].strip() == ""
    assert len(lines) == 5


def test_help_says_it_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args(["model", "whatif", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "It WRITES NOTHING: no Redis, no topic, no consumer-group offsets" in text
    assert "--since DURATION" in text


def test_a_bad_since_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "whatif", "new.yaml", "--since", "30 days"]) == 2
    assert "--since: invalid duration" in capsys.readouterr().err
