"""scoring/ stays pure: no broker, store or runtime imports, no clock reads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SCORING = Path(__file__).resolve().parents[2] / "scoring"
FORBIDDEN_MODULES = {"faust", "redis", "aiokafka", "kafka", "streams", "leadpulse.streams", "mode"}


def forbidden(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in FORBIDDEN_MODULES)


FORBIDDEN_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "perf_counter"),
}
FORBIDDEN_FROM_TIME = {"time", "time_ns", "monotonic", "monotonic_ns", "perf_counter"}


def dotted(node: ast.AST) -> list[str]:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def violations(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [f"import {alias.name}" for alias in node.names if forbidden(alias.name)]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if forbidden(module):
                found.append(f"from {module} import ...")
            if module == "time":
                found += [
                    f"from time import {alias.name}"
                    for alias in node.names
                    if alias.name in FORBIDDEN_FROM_TIME
                ]
        elif isinstance(node, ast.Attribute):
            parts = dotted(node)
            if len(parts) >= 2 and (parts[-2], parts[-1]) in FORBIDDEN_CALLS:
                found.append(".".join(parts))
    return found


def test_the_checker_catches_what_it_should() -> None:
    bad = (
        "import redis\nfrom faust import App\nimport aiokafka.errors\n"
        "from leadpulse.streams.app import x\nfrom time import monotonic\nimport time, datetime\n"
        "a = time.time()\nb = datetime.datetime.now(tz=None)\nc = datetime.date.today()\n"
        "d = datetime.datetime.utcnow\n"
    )
    assert sorted(violations(bad)) == sorted(
        [
            "import redis",
            "from faust import ...",
            "import aiokafka.errors",
            "from leadpulse.streams.app import ...",
            "from time import monotonic",
            "time.time",
            "datetime.datetime.now",
            "datetime.date.today",
            "datetime.datetime.utcnow",
        ]
    )
    assert (
        violations("from datetime import UTC, datetime\nx = datetime.fromtimestamp(0, tz=UTC)\n")
        == []
    )


@pytest.mark.parametrize("path", sorted(SCORING.glob("*.py")), ids=lambda path: path.name)
def test_scoring_module_is_pure(path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8")) == []


def test_there_are_modules_to_check() -> None:
    assert len(list(SCORING.glob("*.py"))) >= 10
