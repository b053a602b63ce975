"""Private Faust/aiokafka parts are used from one module, for the versions it was written for."""

from __future__ import annotations

import re
from pathlib import Path

from leadpulse.streams.kafka.transport import WRITTEN_FOR, check_versions

ROOT = Path(__file__).resolve().parents[2]
PRIVATE = re.compile(
    r"\._committed_offset|\._fetch_max_wait_ms|producer, \"_producer\"|\._producer\._"
)


def test_the_installed_versions_are_the_ones_written_for() -> None:
    assert check_versions() == []
    pins = (ROOT / "pyproject.toml").read_text()
    for name, version in WRITTEN_FOR.items():
        assert f'"{name}=={version}"' in pins


def test_private_attributes_are_touched_in_the_compatibility_module_only() -> None:
    users = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "streams").rglob("*.py")
        if PRIVATE.search(path.read_text())
    }
    assert users == {"streams/kafka/transport.py"}
