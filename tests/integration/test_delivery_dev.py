"""`leadpulse dev --destinations FILE` starts the deliverer beside the worker (free ports only)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from leadpulse.streams.dev.workerproc import DeliverProcess
from leadpulse.streams.settings import Settings
from tests.integration.delivery_harness import (
    SECRET,
    ok,
    produce_handoffs,
    receiver,
    sample,
    wait_until,
)
from tests.integration.devrun import dev_run

ROOT = Path(__file__).resolve().parents[2]


def test_dev_with_destinations_delivers_and_stops_the_deliverer(tmp_path: Path) -> None:
    with receiver({"/hook": ok}) as server:
        destinations = tmp_path / "destinations.yaml"
        destinations.write_text(
            json.dumps(
                {
                    "allow_hosts": ["127.0.0.1"],
                    "destinations": [{"name": "crm", "url": server.url("/hook"), "secret": SECRET}],
                }
            )
        )
        with dev_run(tmp_path / "dev", "--destinations", str(destinations)) as run:
            deliver_port = run.deliver_port
            probe = DeliverProcess(Settings(deliver_web_port=deliver_port), tmp_path / "x.log")
            wait_until(lambda: bool(probe.ready().get("ready")), 90, "the dev deliverer ready")
            handoff = sample()
            produce_handoffs(Settings(broker=f"kafka://127.0.0.1:{run.kafka_port}"), [handoff])
            wait_until(lambda: server.count("/hook", handoff.handoff_id) == 1, 30, "delivered")
            assert server.at("/hook", handoff.handoff_id)[0].verified
            returncode, output = run.stop()
    assert returncode == 0, output
    assert f"deliverer  http://127.0.0.1:{deliver_port}" in output
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", deliver_port)) != 0, "deliverer still listening"


def test_dev_refuses_a_bad_destinations_file_before_starting_anything(tmp_path: Path) -> None:
    bad = tmp_path / "destinations.yaml"
    bad.write_text("allow_hosts: []\ndestinations:\n  - {name: crm, url: 'https://x.io/h'}\n")
    done = subprocess.run(
        [sys.executable, "-m", "leadpulse.streams.cli", "dev", "--destinations", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert f"{bad}:3: destinations[0].url: host 'x.io' is not in allow_hosts" in done.stderr
    assert "starting Tansu" not in done.stdout
