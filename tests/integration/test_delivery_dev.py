"""`leadpulse dev --destinations FILE` starts the deliverer beside the worker (free ports only)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from kafka import KafkaProducer

from leadpulse.schemas.codec import encode
from leadpulse.streams.dev.devstack import free_port
from leadpulse.streams.dev.workerproc import DeliverProcess
from leadpulse.streams.settings import Settings
from tests.integration.delivery_harness import SECRET, ok, receiver, sample, wait_until

ROOT = Path(__file__).resolve().parents[2]


def test_dev_with_destinations_delivers_and_stops_the_deliverer(tmp_path: Path) -> None:
    kafka_port, redis_port = free_port(), free_port()
    web_port, collector_port, deliver_port = free_port(), free_port(), free_port()
    collector_metrics_port = free_port()
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
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leadpulse.streams.cli",
                "dev",
                *("--kafka-port", str(kafka_port), "--redis-port", str(redis_port)),
                *("--web-port", str(web_port), "--collector-port", str(collector_port)),
                *("--collector-metrics-port", str(collector_metrics_port)),
                *("--deliver-port", str(deliver_port), "--destinations", str(destinations)),
                *("--data-dir", str(tmp_path / "dev")),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )
        try:
            probe = DeliverProcess(Settings(deliver_web_port=deliver_port), tmp_path / "x.log")
            wait_until(lambda: bool(probe.ready().get("ready")), 90, "the dev deliverer ready")
            handoff = sample()
            producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{kafka_port}")
            try:
                producer.send("leadpulse.handoffs", key=b"k", value=encode(handoff))
                producer.flush(30)
            finally:
                producer.close(5)
            wait_until(lambda: server.count("/hook", handoff.handoff_id) == 1, 30, "delivered")
            assert server.at("/hook", handoff.handoff_id)[0].verified
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
    assert process.returncode == 0, output
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
