"""A pytest plugin for `make mutate` only (pyproject's ``[tool.mutmut]`` loads it).

mutmut 3.7 records which tests reach which function under ``item._nodeid``,
an attribute pytest 9 no longer sets (it has ``item.nodeid``). mutmut 3.8 reads
``nodeid`` but needs click>=8.4.2, which faust-streaming 0.15.3 refuses; so
3.7 stays pinned and every collected item gets the attribute it reads.
"""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item._nodeid = item.nodeid  # type: ignore[attr-defined]
