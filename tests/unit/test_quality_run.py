"""`python -m bench.quality`: the command runs end to end and refuses what it cannot load."""

from __future__ import annotations

import argparse

import pytest

from bench.quality.run import grid, main


def test_a_small_run_prints_the_table(capsys):
    assert main(["--leads", "60", "--models", "decayed", "--grid", "40:200:40", "--no-save"]) == 0
    out = capsys.readouterr().out
    assert "funnel: 60 leads" in out
    assert "target recall:" in out
    assert "| decayed |" in out


def test_a_model_that_does_not_load_is_named(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text('version: "x"\nengagement: {rules: []}\n')
    assert main(["--models", f"decayed,{bad}", "--no-save"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err


def test_grid():
    assert grid("30:60:10") == [30.0, 40.0, 50.0, 60.0]
    with pytest.raises(argparse.ArgumentTypeError, match="START:STOP:STEP"):
        grid("30-60")
    with pytest.raises(argparse.ArgumentTypeError, match="0 < START < STOP"):
        grid("60:30:10")
