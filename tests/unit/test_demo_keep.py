"""`leadpulse demo --keep`: the flag, and what `stay` prints before it waits."""

from __future__ import annotations

from pathlib import Path

import pytest

from leadpulse.streams.cli.parser import build_parser
from leadpulse.streams.dev.demo import stay
from leadpulse.streams.settings import Settings


def test_keep_is_off_unless_asked() -> None:
    assert build_parser().parse_args(["demo"]).keep is False
    assert build_parser().parse_args(["demo", "--keep"]).keep is True


def test_stay_prints_the_export_lines_and_stops_on_ctrl_c(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = Settings(
        broker="kafka://127.0.0.1:19092",
        redis_url="redis://127.0.0.1:16379/0",
        model_file=Path("/models/demo.yaml"),
        web_port=16066,
        api_tokens="demo=tk_0123456789abcdefghijklmnopqrstuv:admin",
    )
    waited: list[bool] = []

    def interrupted() -> None:
        waited.append(True)
        raise KeyboardInterrupt

    stay(settings, wait=interrupted)
    out = capsys.readouterr().out
    assert waited == [True]
    assert out.splitlines()[1:] == [
        "the stack stays up (Ctrl-C stops it). In another terminal:",
        "  export LEADPULSE_BROKER=kafka://127.0.0.1:19092",
        "  export LEADPULSE_REDIS_URL=redis://127.0.0.1:16379/0",
        "  cp /models/demo.yaml new.yaml      # the demo's model: change a rule or a threshold",
        "  leadpulse model whatif new.yaml      # what it would have done (writes nothing)",
        "  leadpulse model apply new.yaml       # switch to it, the history rescored",
        "  leadpulse model status",
        "  page http://127.0.0.1:16066/ui?token=tk_0123456789abcdefghijklmnopqrstuv",
        "stopping the demo's stack ...",
    ]
