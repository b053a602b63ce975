"""The pipeline and the worker's HTTP edge do not import each other: the process joins them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

STREAMS = Path(__file__).resolve().parents[2] / "streams"


def imported(package: str) -> dict[str, set[str]]:
    """Every module each file of `streams/<package>` imports (also inside functions)."""
    found: dict[str, set[str]] = {}
    for path in sorted((STREAMS / package).glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
        found[path.name] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("pipeline", ("leadpulse.streams.http",)),
        ("http", ("leadpulse.streams.pipeline", "leadpulse.streams.processes")),
    ],
)
def test_no_import_between_pipeline_and_http(package: str, forbidden: tuple[str, ...]) -> None:
    modules = imported(package)
    assert "app.py" in modules or "routes.py" in modules  # the files were found
    bad = {
        f"{file}: {name}"
        for file, names in modules.items()
        for name in names
        if any(name == f or name.startswith(f + ".") for f in forbidden)
    }
    assert not bad
