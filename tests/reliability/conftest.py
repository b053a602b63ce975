"""Reliability campaigns: the embedded stack, once per session, as in tests/integration.

Everything under tests/reliability is marked ``reliability`` (select or skip
the campaigns with ``-m reliability`` / ``-m "not reliability"``). A campaign
that needs to stop Redis starts a private redis-server of its own, so the
session server that other tests share is never disturbed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.devstack import DevStack

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    dev = DevStack()
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()
