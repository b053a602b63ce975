"""The `leadpulse` command line, end to end on the embedded stack."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from leadpulse.streams.dev.devstack import free_port
from leadpulse.streams.dev.workerproc import WorkerProcess
from leadpulse.streams.settings import Settings
from tests.integration.harness import READ_TOKEN, read_state, wait_for

ROOT = Path(__file__).resolve().parents[2]


def leadpulse(
    *args: str, settings: Settings | None = None, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if settings is not None:
        env.update(
            {
                "LEADPULSE_BROKER": settings.broker,
                "LEADPULSE_REDIS_URL": settings.redis_url,
                "LEADPULSE_EVENTS_TOPIC": settings.events_topic,
                "LEADPULSE_HANDOFFS_TOPIC": settings.handoffs_topic,
                "LEADPULSE_TRANSITIONS_TOPIC": settings.transitions_topic,
                "LEADPULSE_DLQ_TOPIC": settings.dlq_topic,
            }
        )
    return subprocess.run(
        [sys.executable, "-m", "leadpulse.streams.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
        cwd=ROOT,
    )


def line(kind: str, lead: str, **extra: Any) -> str:
    body = {
        "event_id": uuid.uuid4().hex,
        "type": kind,
        "lead_id": lead,
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }
    return json.dumps(body)


def test_help_lists_every_command() -> None:
    result = leadpulse("--help")
    assert result.returncode == 0
    commands = ("worker", "collect", "dev", "send", "tail", "lead", "demo", "model", "schema")
    for command in (*commands, "asyncapi"):
        assert command in result.stdout
    sub = leadpulse("dev", "--help")
    assert "--kafka-port" in sub.stdout
    assert "--redis-port" in sub.stdout
    assert "--collector-port" in sub.stdout
    sub = leadpulse("collect", "--help")
    assert "LEADPULSE_WRITE_KEYS" in sub.stdout
    assert "--new-key" in sub.stdout


def test_model_check_accepts_default_and_rejects_bad_file(tmp_path: Path) -> None:
    good = leadpulse("model", "check", str(ROOT / "scoring" / "default_model.yaml"))
    assert good.returncode == 0
    assert "lifecycle: MQL at engagement ≥ 50" in good.stdout
    bad_file = tmp_path / "bad.yaml"
    bad_file.write_text("version: x\nengagement:\n  rules:\n    - {name: a, event: B}\n")
    bad = leadpulse("model", "check", str(bad_file))
    assert bad.returncode == 1
    assert f"{bad_file}:4: engagement.rules[0]" in bad.stderr
    missing = leadpulse("model", "check", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1
    assert "nope.yaml" in missing.stderr


def test_schema_prints_json_schema() -> None:
    result = leadpulse("schema", "Handoff")
    assert result.returncode == 0
    assert json.loads(result.stdout)["title"] == "Handoff"
    assert leadpulse("schema", "Nope").returncode == 2


def test_send_validates_first_then_tail_and_lead_show_the_result(
    running: tuple[Settings, WorkerProcess],
) -> None:
    settings, _ = running
    lead = f"cli-{uuid.uuid4().hex[:8]}"
    lines = [
        line("identify", lead, traits={"company_size": 300, "title": "CTO"}),
        '{"event_id": "x", "type": "page_view"}',
        line("page_view", lead, properties={"url": "https://x.io/pricing"}),
        line("demo_request", lead),
    ]
    refused = leadpulse("send", "-", settings=settings, stdin="\n".join(lines))
    assert refused.returncode == 1
    assert "line 2: occurred_at: Field required" in (refused.stderr)
    assert "nothing sent" in refused.stderr
    time.sleep(1)
    assert read_state(settings, lead)[1] is None

    sent = leadpulse("send", "--skip-invalid", settings=settings, stdin="\n".join(lines))
    assert sent.returncode == 0, sent.stderr
    assert "sent 3 event(s)" in sent.stdout
    assert "skipped 1 invalid" in sent.stdout

    tail = leadpulse(
        "tail", "handoffs", "--from-beginning", "--max", "1", "--timeout", "30", settings=settings
    )
    assert tail.returncode == 0, tail.stderr
    assert f"HANDOFF  {lead}" in tail.stdout
    assert "why: demo-request +60.0" in tail.stdout

    moves = leadpulse(
        "tail", "transitions", "--from-beginning", "--timeout", "3", settings=settings
    )
    assert f"{lead}  IQL -> MQL" in moves.stdout
    assert f"{lead}  MQL -> SAL" in moves.stdout

    wait_for(lambda: read_state(settings, lead)[1] is not None)
    model = ["--model", str(settings.model_file)]
    shown = leadpulse("lead", lead, *model, settings=settings)
    assert shown.returncode == 0, shown.stderr
    assert "stage       SAL" in shown.stdout
    assert "demo-request" in shown.stdout
    as_json = json.loads(leadpulse("lead", lead, "--json", *model, settings=settings).stdout)
    parts = as_json["explanation"]["parts"]
    assert sum(p["points"] for p in parts) == pytest.approx(
        as_json["explanation"]["engagement"], abs=1e-6
    )
    with urllib.request.urlopen(  # the worker's HTTP API serves the same view
        urllib.request.Request(
            f"http://127.0.0.1:{settings.web_port}/leads/{lead}",
            headers={"Authorization": f"Bearer {READ_TOKEN}"},
        ),
        timeout=5,
    ) as reply:
        served = json.load(reply)
    assert served["explanation"]["stage"] == "sal"
    assert served["model_version"] == as_json["model_version"]
    unknown = leadpulse("lead", "nobody-" + lead, *model, settings=settings)
    assert unknown.returncode == 1
    assert "no such lead" in unknown.stdout


def test_dev_starts_the_stack_and_stops_everything_on_ctrl_c(tmp_path: Path) -> None:
    kafka_port, redis_port, web_port = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "leadpulse.streams.cli",
            "dev",
            "--kafka-port",
            str(kafka_port),
            "--redis-port",
            str(redis_port),
            "--web-port",
            str(web_port),
            "--data-dir",
            str(tmp_path / "dev"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        token_file = tmp_path / "dev" / "api_token"  # written before the worker starts
        wait_for(token_file.exists, timeout=60, what="dev's API token file")
        token = token_file.read_text().strip()
        worker = WorkerProcess(
            Settings(web_port=web_port, api_tokens=f"dev={token}:admin"), tmp_path / "unused.log"
        )  # only for its /health probe (wait_assigned)
        worker.wait_assigned(timeout=60)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == 0, output
    assert f"kafka      127.0.0.1:{kafka_port}" in output
    assert f"redis      redis://127.0.0.1:{redis_port}/0" in output
    # the page's sign-in link and the admin token it keeps in the data dir
    assert f"page       http://127.0.0.1:{web_port}/ui?token={token}  " in output
    assert f"api token  {token}  (dev, admin" in output
    leftovers = subprocess.run(
        ["pgrep", "-f", f"127.0.0.1:{kafka_port}|--port {redis_port}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert leftovers.stdout.strip() == ""
