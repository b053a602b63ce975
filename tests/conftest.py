"""Fixtures shared by the integration tests and the reliability campaigns."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from leadpulse.streams.dev.devstack import DevStack


@pytest.fixture(scope="session")
def stack() -> Iterator[DevStack]:
    """One embedded stack (Tansu + redis-server) per session, always stopped.

    Tests share it and isolate themselves with topics and consumer groups of
    their own (`tests.integration.harness.worker_settings`); a test that must
    stop or flush Redis starts a private redis-server instead.
    """
    dev = DevStack()
    try:
        dev.start()
        yield dev
    finally:
        dev.stop()
