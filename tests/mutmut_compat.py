"""A pytest plugin for `make mutate` only (pyproject's ``[tool.mutmut]`` loads it).

mutmut 3.7 records which tests reach which function under ``item._nodeid``,
an attribute pytest 9 no longer sets (it has ``item.nodeid``). mutmut 3.8 reads
``nodeid`` but needs click>=8.4.2, which faust-streaming 0.15.3 refuses; so
3.7 stays pinned and every collected item gets the attribute it reads.

mutmut names a mutant after its file's path (``scoring/engine.py`` gives
``scoring.engine``) and runs the tests from its copy of the tree in mutants/.
The source folders install as ``leadpulse.scoring`` and so on, and the
editable install's import hook maps those names to the repository's own
folders, not to mutmut's copy. So, while this plugin is loaded, every
``leadpulse.<folder>[.module]`` is the module ``<folder>[.module]`` imported
from the working directory (mutmut's copy): one module object under both
names, whose functions carry the path-derived names mutmut looks for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

import pytest

FOLDERS = ("streams", "scoring", "schemas")


class _FromWorkingCopy(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Answers ``leadpulse.<folder>...`` with the module ``<folder>...`` (mutmut's copy)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        prefix, _, rest = fullname.partition(".")
        if prefix != "leadpulse" or rest.split(".")[0] not in FOLDERS:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(spec.name.removeprefix("leadpulse."))
        self._specs[module.__name__] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run; the import system set `__spec__` to the alias's: put it back."""
        module.__spec__ = self._specs[module.__name__]


if sys.path[0] != "":  # run from mutmut's copy of the tree: its folders come first
    sys.path.insert(0, "")
sys.meta_path.insert(0, _FromWorkingCopy())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item._nodeid = item.nodeid  # type: ignore[attr-defined]
