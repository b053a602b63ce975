"""The collector's wiring points one way: cli -> processes -> collector, and dev never into cli.

Read from the source (no import runs), so a lazy import inside a function
counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STREAMS = Path(__file__).resolve().parents[2] / "streams"


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


def reaching(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    found = {}
    for path in sorted((STREAMS / folder).glob("*.py")):
        bad = sorted(n for n in imported(path) if n.startswith(forbidden))
        if bad:
            found[path.name] = bad
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("dev", ("leadpulse.streams.cli",)),
        ("processes", ("leadpulse.streams.cli", "leadpulse.streams.dev")),
        (
            "collector",
            (
                "leadpulse.streams.cli",
                "leadpulse.streams.dev",
                "leadpulse.streams.processes",
                "leadpulse.streams.http",
            ),
        ),
    ],
)
def test_no_import_points_back_up(folder: str, forbidden: tuple[str, ...]) -> None:
    assert reaching(folder, forbidden) == {}


def test_the_collector_command_only_calls_its_process() -> None:
    names = imported(STREAMS / "cli" / "collect.py")
    assert "leadpulse.streams.processes.collector.run_collector" in names
    assert not {
        n
        for n in names
        if n.startswith(("leadpulse.streams.collector.app", "leadpulse.streams.collector.sink"))
    }
