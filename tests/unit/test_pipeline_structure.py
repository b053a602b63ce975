"""The pipeline's shape, pinned: one visible sequence, parts that do not hold each other.

Read from the source (ast), so a part that starts reaching into the
processor, or a step that moves, fails here before it confuses a reader.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PIPELINE = Path(__file__).resolve().parents[2] / "streams" / "pipeline"
PARTS = ["identity", "letters", "outbox", "sweeper", "states", "plan"]
"""The modules the processor composes; none may know the processor or a sibling part."""
COMPOSED = {"Processor", "DeadLetters", "Outbox", "Identity", "Sweeper"}


def tree(module: str) -> ast.Module:
    return ast.parse((PIPELINE / f"{module}.py").read_text(), filename=f"{module}.py")


def dotted(node: ast.expr) -> str | None:
    """`self.identity.resolve` for that expression; None for anything but names and dots."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return None if inner is None else f"{inner}.{node.attr}"
    return None


class _Calls(ast.NodeVisitor):
    """The `self...` calls of a function body, in source order (outer call first)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_Call(self, node: ast.Call) -> None:
        name = dotted(node.func)
        if name is not None and name.startswith("self."):
            name = name.removeprefix("self.")
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                name = f"{name}({first.value!r})"  # a retried step: by what it is called
            self.names.append(name)
        self.generic_visit(node)


def self_calls(module: str, cls: str, method: str) -> list[str]:
    for node in tree(module).body:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.AsyncFunctionDef | ast.FunctionDef) and item.name == method:
                    calls = _Calls()
                    for statement in item.body:
                        calls.visit(statement)
                    return calls.names
    raise AssertionError(f"{cls}.{method} not found in {module}.py")


@pytest.mark.parametrize("module", PARTS)
def test_a_part_imports_neither_the_processor_nor_another_part(module: str) -> None:
    imported: set[str] = set()
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.ImportFrom) and node.module is not None:
            assert node.module != "leadpulse.streams.pipeline.processor", module
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            assert all(a.name != "leadpulse.streams.pipeline.processor" for a in node.names), module
    assert imported & COMPOSED == set()


@pytest.mark.parametrize("module", [*PARTS, "processor", "runtime"])
def test_nothing_reaches_into_another_objects_private_attributes(module: str) -> None:
    reached = [
        f"{dotted(node.value) or '<expr>'}.{node.attr} (line {node.lineno})"
        for node in ast.walk(tree(module))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id == "self")
    ]
    assert reached == []


def test_a_batch_is_decode_identity_apply_commit_publish_then_the_dlq() -> None:
    assert self_calls("processor", "Processor", "process") == [
        "_decode",
        "identity.resolve",
        "_score",
        "_merge",
        "letters.flush",
        "letters.discard",  # only when the batch fails: a retry queues its letters again
    ]


def test_plain_events_are_loaded_applied_committed_and_published_in_that_order() -> None:
    assert self_calls("processor", "Processor", "_score") == [
        "_load",
        "_apply",
        "_reject",
        "_commit",
        "_publish",
    ]


def test_merges_are_decided_by_identity_and_written_by_the_same_commit_and_publish() -> None:
    assert self_calls("processor", "Processor", "_merge") == [
        "identity.detach",
        "store.snapshot",
        "identity.wanted",
        "identity.decide",
        "_reject",
        "_commit",
        "_publish",
        "identity.forget",
    ]


def test_a_sweep_is_decided_by_the_sweeper_and_written_by_the_same_steps() -> None:
    assert self_calls("processor", "Processor", "sweep") == [
        "clock",
        "sweeper.plan",
        "_shards",
        "_commit",
        "_publish",
    ]


def test_the_module_docstring_lists_the_steps_in_that_order_progress_last() -> None:
    docstring = ast.get_docstring(tree("processor")) or ""
    steps = re.findall(r"^(\d)\. (\w+):", docstring, flags=re.MULTILINE)
    assert steps == [
        ("1", "decode"),
        ("2", "identity"),
        ("3", "apply"),
        ("4", "commit"),
        ("5", "publish"),
        ("6", "progress"),
    ]


def test_progress_is_recorded_after_the_batch_was_processed() -> None:
    # _scored runs Processor.process, halving a batch that fails permanently
    steps = ["_scored", "retry('recording progress')", "watermarks.processed"]
    calls = self_calls("runtime", "Runtime", "score")
    assert [name for name in calls if name in steps] == steps
