"""What a worker checks before it starts scoring (issue 15, 1.7)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from leadpulse.streams.dev.devstack import DevStack
from leadpulse.streams.dev.workerproc import worker_command
from tests.integration.harness import worker_settings


def test_a_worker_refuses_to_start_when_the_partitions_setting_differs_from_kafka(
    stack: DevStack, tmp_path: Path
) -> None:
    settings = worker_settings(stack, tmp_path, partitions=4)  # the topics have 4
    argv, env = worker_command(settings.replace(partitions=12))
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path
    )
    assert done.returncode != 0
    assert (
        f"the events topic {settings.events_topic} has 4 partitions but LEADPULSE_PARTITIONS "
        "is 12: set LEADPULSE_PARTITIONS=4"
    ) in done.stderr
    assert "Traceback" not in done.stderr
