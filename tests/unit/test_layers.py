"""Imports point down the layers, never up, never sideways, and the layers have no cycle.

Read from the source (no import runs), so an import inside a function or
under ``if TYPE_CHECKING:`` counts as much as one at the top of a module.
Lowest first; a module belongs to the longest unit its name starts with
(names as installed, under ``leadpulse.``):

    schemas < scoring < streams.{settings, errors}
      < {streams.store, streams.kafka, streams.observability}
      < {streams.pipeline, streams.collector, streams.delivery, streams.http}
      < streams.replay < streams.processes < streams.dev < streams.cli
"""

from __future__ import annotations

import ast
import graphlib
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("schemas", "scoring", "streams")

LAYERS: tuple[tuple[str, ...], ...] = (
    # the package root runs before every streams module: it may import nothing of ours
    ("leadpulse.streams",),
    ("leadpulse.schemas",),
    ("leadpulse.scoring",),
    ("leadpulse.streams.settings", "leadpulse.streams.errors"),
    ("leadpulse.streams.store", "leadpulse.streams.kafka", "leadpulse.streams.observability"),
    (
        "leadpulse.streams.pipeline",
        "leadpulse.streams.collector",
        "leadpulse.streams.delivery",
        "leadpulse.streams.http",
    ),
    ("leadpulse.streams.replay",),
    ("leadpulse.streams.processes",),
    ("leadpulse.streams.dev",),
    ("leadpulse.streams.cli",),
)
RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}

SIDEWAYS_ALLOWED = {
    # A lead's keys are sharded by the Kafka partition its events arrive on: the store
    # must use the very function the producers' partitioner uses, not a copy of it.
    ("leadpulse.streams.store.redis.keys", "leadpulse.streams.kafka.partitioner"),
    # MeasuredStore times the worker's calls at the LeadStore port: it wraps that port.
    ("leadpulse.streams.observability.metrics", "leadpulse.streams.store"),
}
"""(importing module, imported module) pairs allowed between units of one rank."""


@dataclass(frozen=True)
class Import:
    importer: str
    line: int
    imported: str
    deferred: bool = False
    """Inside a function: runs when that is called, not when the module is imported."""
    typing_only: bool = False
    """Under ``if TYPE_CHECKING:``: never runs."""

    def __str__(self) -> str:
        return f"{self.importer} line {self.line} imports {self.imported}"


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["leadpulse", *parts])


def ours(name: str) -> bool:
    """A module of this project: ``leadpulse.<one of PACKAGES>[...]``."""
    top, _, rest = name.partition(".")
    return top == "leadpulse" and rest.split(".")[0] in PACKAGES


def project_modules(root: Path) -> dict[str, Path]:
    """Every module of schemas/, scoring/ and streams/ by its dotted (installed) name."""
    return {
        module_name(path, root): path
        for package in PACKAGES
        for path in sorted((root / package).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(tree: ast.AST) -> Iterator[tuple[ast.AST, bool, bool]]:
    """Every node, with whether it is inside a function and under TYPE_CHECKING."""
    todo: list[tuple[ast.AST, bool, bool]] = [(tree, False, False)]
    while todo:
        node, deferred, typing_only = todo.pop()
        yield node, deferred, typing_only
        deferred = deferred or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        if _is_type_checking(node):
            assert isinstance(node, ast.If)
            todo += [(child, deferred, True) for child in node.body]
            todo += [(child, deferred, typing_only) for child in node.orelse]
        else:
            todo += [(child, deferred, typing_only) for child in ast.iter_child_nodes(node)]


def imports_of(
    module: str, source: str, known: Iterable[str], *, is_package: bool = False
) -> list[Import]:
    """The project modules `source` imports, anywhere in it, each with its line.

    ``from a import b`` is an import of ``a.b`` when that is a module (so
    ``from leadpulse.streams import cli`` is not mistaken for the package root), else of
    ``a``; relative imports are resolved against `module`.
    """
    known = set(known)
    found = []
    for node, deferred, typing_only in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".")
                if not is_package:
                    package.pop()
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        else:
            continue
        found += [
            Import(module, node.lineno, name, deferred, typing_only) for name in names if ours(name)
        ]
    return sorted(found, key=lambda edge: (edge.line, edge.imported))


def unit_of(module: str) -> str | None:
    """The longest unit `module` is in (``…streams.store.redis.keys``: ``…streams.store``).

    The package root ``leadpulse.streams`` is a unit of its own module only: a new
    ``leadpulse.streams.x`` package has no layer until it is given one.
    """
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        unit = ".".join(parts[:end])
        if unit in RANK and (unit != "leadpulse.streams" or module == "leadpulse.streams"):
            return unit
    return None


def all_imports(root: Path) -> list[Import]:
    modules = project_modules(root)
    found: list[Import] = []
    for name, path in modules.items():
        source = path.read_text(encoding="utf-8")
        found += imports_of(name, source, modules, is_package=path.name == "__init__.py")
    return found


def allows(pair: tuple[str, str], edge: Import) -> bool:
    importer, imported = pair
    return edge.importer == importer and (
        edge.imported == imported or edge.imported.startswith(imported + ".")
    )


def allowed_sideways(edge: Import) -> bool:
    return any(allows(pair, edge) for pair in SIDEWAYS_ALLOWED)


def violations(found: Iterable[Import]) -> list[str]:
    """Every import that points upward or sideways (not allowed), as a readable line."""
    bad = []
    for edge in found:
        mine, theirs = unit_of(edge.importer), unit_of(edge.imported)
        if mine is None or theirs is None:
            bad.append(f"{edge}: no layer for {edge.importer if mine is None else edge.imported}")
        elif RANK[theirs] > RANK[mine]:
            bad.append(f"{edge}: upward, {mine} -> {theirs}")
        elif RANK[theirs] == RANK[mine] and theirs != mine and not allowed_sideways(edge):
            bad.append(f"{edge}: sideways, {mine} -> {theirs} (not in SIDEWAYS_ALLOWED)")
    return bad


def unit_cycle(found: Iterable[Import]) -> list[str]:
    """A cycle among the units (empty if none), e.g. ``[a, b, a]``."""
    graph: dict[str, set[str]] = {}
    for edge in found:
        mine, theirs = unit_of(edge.importer), unit_of(edge.imported)
        if mine is not None and theirs is not None and mine != theirs:
            graph.setdefault(mine, set()).add(theirs)
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as error:
        return [str(unit) for unit in error.args[1]]
    return []


def test_no_import_points_upward_or_sideways() -> None:
    bad = violations(all_imports(ROOT))
    assert not bad, "imports against the layers (README, Layout):\n" + "\n".join(bad)


def test_the_units_have_no_cycle() -> None:
    cycle = unit_cycle(all_imports(ROOT))
    assert cycle == [], "the units import each other: " + " -> ".join(cycle)


def test_every_module_has_a_layer() -> None:
    modules = project_modules(ROOT)
    assert len(modules) > 100  # the scan found the tree
    assert sorted(name for name in modules if unit_of(name) is None) == []


def test_every_allowed_sideways_import_exists() -> None:
    """An allowance nothing uses any more is removed, so the list stays minimal."""
    found = all_imports(ROOT)
    unused = {pair for pair in SIDEWAYS_ALLOWED if not any(allows(pair, e) for e in found)}
    assert unused == set()


KNOWN = {
    "leadpulse.streams",
    "leadpulse.streams.cli",
    "leadpulse.streams.cli.dlq",
    "leadpulse.streams.dev",
    "leadpulse.streams.dev.demo",
    "leadpulse.streams.pipeline",
    "leadpulse.streams.pipeline.records",
    "leadpulse.streams.observability",
    "leadpulse.streams.observability.metrics",
    "leadpulse.streams.store",
    "leadpulse.streams.kafka",
    "leadpulse.streams.kafka.partitioner",
}


def test_the_checker_sees_every_kind_of_import() -> None:
    source = (
        "import json\n"
        "from leadpulse.streams.pipeline.records import Report\n"
        "def f():\n"
        "    import leadpulse.streams.dev.demo\n"
        "    from leadpulse.streams import cli\n"
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from ..kafka import partitioner\n"
        "from . import metrics\n"
    )
    found = list(imports_of("leadpulse.streams.observability.stats", source, KNOWN))
    assert [str(edge) for edge in found] == [
        "leadpulse.streams.observability.stats line 2 imports leadpulse.streams.pipeline.records",
        "leadpulse.streams.observability.stats line 4 imports leadpulse.streams.dev.demo",
        "leadpulse.streams.observability.stats line 5 imports leadpulse.streams.cli",
        "leadpulse.streams.observability.stats line 8 imports leadpulse.streams.kafka.partitioner",
        "leadpulse.streams.observability.stats line 9 imports"
        " leadpulse.streams.observability.metrics",
    ]
    assert violations(found) == [
        "leadpulse.streams.observability.stats line 2 imports leadpulse.streams.pipeline.records: "
        "upward, leadpulse.streams.observability -> leadpulse.streams.pipeline",
        "leadpulse.streams.observability.stats line 4 imports leadpulse.streams.dev.demo: "
        "upward, leadpulse.streams.observability -> leadpulse.streams.dev",
        "leadpulse.streams.observability.stats line 5 imports leadpulse.streams.cli: "
        "upward, leadpulse.streams.observability -> leadpulse.streams.cli",
        "leadpulse.streams.observability.stats line 8 imports leadpulse.streams.kafka.partitioner: "
        "sideways, leadpulse.streams.observability -> leadpulse.streams.kafka"
        " (not in SIDEWAYS_ALLOWED)",
    ]


def test_the_checker_allows_only_the_listed_sideways_imports() -> None:
    allowed = Import(
        "leadpulse.streams.store.redis.keys", 28, "leadpulse.streams.kafka.partitioner"
    )
    other_module = Import("leadpulse.streams.store.codec", 3, "leadpulse.streams.kafka.partitioner")
    reverse = Import("leadpulse.streams.kafka.topics", 9, "leadpulse.streams.store")
    assert violations([allowed]) == []
    assert violations([other_module, reverse]) == [
        "leadpulse.streams.store.codec line 3 imports leadpulse.streams.kafka.partitioner: "
        "sideways, leadpulse.streams.store -> leadpulse.streams.kafka (not in SIDEWAYS_ALLOWED)",
        "leadpulse.streams.kafka.topics line 9 imports leadpulse.streams.store: "
        "sideways, leadpulse.streams.kafka -> leadpulse.streams.store (not in SIDEWAYS_ALLOWED)",
    ]
    assert violations([Import("leadpulse.streams.cli.run", 1, "leadpulse.streams.nothing")]) == [
        "leadpulse.streams.cli.run line 1 imports leadpulse.streams.nothing:"
        " no layer for leadpulse.streams.nothing"
    ]


def test_the_cycle_check_finds_a_cycle() -> None:
    edges = [
        Import("leadpulse.streams.store.redis.keys", 28, "leadpulse.streams.kafka.partitioner"),
        Import("leadpulse.streams.kafka.topics", 9, "leadpulse.streams.store"),
        Import("leadpulse.streams.cli.run", 1, "leadpulse.schemas"),
    ]
    assert sorted(set(unit_cycle(edges))) == ["leadpulse.streams.kafka", "leadpulse.streams.store"]
    assert unit_cycle(edges[:1] + edges[2:]) == []


WORKER_COMMAND = {
    "leadpulse.streams.cli",  # main()
    "leadpulse.streams.cli.__main__",
    "leadpulse.streams.cli.parser",  # build_parser()
    "leadpulse.streams.cli.common",  # load_settings(), load_scoring_model()
    "leadpulse.streams.cli.run",  # cmd_worker()
}
"""The `leadpulse.streams.cli` modules whose functions run for `leadpulse worker`."""


def worker_path(root: Path) -> set[str]:
    """Every project module `leadpulse worker` can load, read from the source.

    What runs: the module-level code of each module loaded, the functions of
    `WORKER_COMMAND`, and anything below `leadpulse.streams.cli` they reach. The other
    commands' functions do not run, so their deferred imports are not
    followed; TYPE_CHECKING imports never run.
    """
    modules = project_modules(root)
    seen: set[str] = set()
    todo = ["leadpulse.streams.cli.__main__", "leadpulse.streams.cli.run"]
    while todo:
        name = todo.pop()
        if name in seen or name not in modules:
            continue
        seen.add(name)
        path = modules[name]
        source = path.read_text(encoding="utf-8")
        other_command = unit_of(name) == "leadpulse.streams.cli" and name not in WORKER_COMMAND
        for edge in imports_of(name, source, modules, is_package=path.name == "__init__.py"):
            if edge.typing_only or (edge.deferred and other_command):
                continue
            parts = edge.imported.split(".")
            # importing a.b.c runs a and a.b first
            todo += [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
    return seen


def test_the_worker_command_never_reaches_the_dev_harness() -> None:
    """`leadpulse worker` never loads leadpulse.streams.dev, not even lazily on its way."""
    reached = worker_path(ROOT)
    assert "leadpulse.streams.processes.worker" in reached  # the walk followed the deferred imports
    assert "leadpulse.streams.pipeline.app" in reached
    assert "leadpulse.streams.cli.parser" in reached  # which imports every command's module
    assert sorted(m for m in reached if unit_of(m) == "leadpulse.streams.dev") == []


def test_the_worker_path_walk_follows_what_runs() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    import leadpulse.streams.dev.demo\n"
        "def cmd():\n"
        "    import leadpulse.streams.dev.devstack\n"
        "import leadpulse.streams.dev\n"
    )
    found = imports_of(
        "leadpulse.streams.cli.dev", source, KNOWN | {"leadpulse.streams.dev.devstack"}
    )
    assert [(e.line, e.imported, e.deferred, e.typing_only) for e in found] == [
        (3, "leadpulse.streams.dev.demo", False, True),
        (5, "leadpulse.streams.dev.devstack", True, False),
        (6, "leadpulse.streams.dev", False, False),
    ]


WORKER_ENTRY = """
import json, sys
from leadpulse.streams.cli import main
try:
    main(["worker", "--help"])
except SystemExit:
    pass
DEV = "leadpulse.streams.dev"
before = sorted(m for m in sys.modules if m == DEV or m.startswith(DEV + "."))
import leadpulse.streams.dev.workerproc
after = sorted(m for m in sys.modules if m == DEV or m.startswith(DEV + "."))
print(json.dumps([before, after]))
"""


def test_leadpulse_worker_loads_no_dev_module() -> None:
    """The entry point with every command's parser, up to the worker command: no dev module."""
    done = subprocess.run(
        [sys.executable, "-c", WORKER_ENTRY],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    before, after = json.loads(done.stdout.splitlines()[-1])
    assert before == []
    assert "leadpulse.streams.dev.workerproc" in after  # the check sees a dev module once one loads
