"""A process's command only parses its flags and calls the process's module.

Read from the source (no import runs), so a lazy import inside a function
counts as much as one at the top. Which way imports point between packages
is tests/unit/test_layers.py's.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CLI = Path(__file__).resolve().parents[2] / "streams" / "cli"


def imported(path: Path) -> set[str]:
    """Every module `path` imports (``from x import y`` gives x and x.y)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize(
    ("command", "runs", "parts"),
    [
        (
            "collect.py",
            "leadpulse.streams.processes.collector.run_collector",
            ("leadpulse.streams.collector.app", "leadpulse.streams.collector.sink"),
        ),
        (
            "deliver.py",
            "leadpulse.streams.processes.deliverer.run_deliverer",
            ("leadpulse.streams.delivery", "leadpulse.streams.store", "leadpulse.streams.kafka"),
        ),
        (
            "run.py",
            "leadpulse.streams.processes.worker.run_worker",
            (
                "leadpulse.streams.pipeline",
                "leadpulse.streams.store",
                "leadpulse.streams.kafka",
                "leadpulse.streams.dev",
            ),
        ),
    ],
)
def test_the_command_only_calls_its_process(
    command: str, runs: str, parts: tuple[str, ...]
) -> None:
    names = imported(CLI / command)
    assert runs in names
    assert sorted(n for n in names if n.startswith(parts)) == []
