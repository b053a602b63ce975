"""Reliability campaigns: the session's embedded stack (tests/conftest.py).

Everything under tests/reliability is marked ``reliability`` (select or skip
the campaigns with ``-m reliability`` / ``-m "not reliability"``). A campaign
that needs to stop Redis starts a private redis-server of its own, so the
session server that other tests share is never disturbed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.reliability)
