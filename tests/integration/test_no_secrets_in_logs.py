"""A full `leadpulse dev` run logs none of its secrets (issue 15, 2.4).

The run is what a user does on a first day: `leadpulse dev --destinations FILE` with
write keys, API tokens and a webhook secret configured, events sent to the collector with
a key in Basic auth and in the body (and one wrong key), the page opened by its
``?token=`` link, the API read with a Bearer token (and a wrong one), a handoff delivered
to a signed webhook that fails once and to a Slack-format incoming webhook whose URL path
and query are its secret. Afterwards every log file in the data directory and everything
the command printed is searched for every secret. The dev banner prints the write keys,
the admin token and the sign-in link on purpose (the user needs them); those lines are the
only place they may appear.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from kafka import KafkaProducer

from leadpulse.schemas.codec import encode
from leadpulse.streams.dev.devstack import free_port
from leadpulse.streams.dev.workerproc import DeliverProcess
from leadpulse.streams.settings import Settings
from tests.integration.delivery_harness import (
    SECRET,
    fails_first,
    ok,
    receiver,
    sample,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]

WEBSITE_KEY = "wk-website-3f9Qx7LpZ2"
CRM_KEY = "wk-crm-8Hn2Vb6TqW1"
ADMIN_TOKEN = "tok-admin-Jq4Rz8Ws1Kx"
READ_TOKEN = "tok-read-Pm5Tn9Bv3Cy"
SLACK_PATH = "/services/T0LEADPULSE/B0SECRET/hook-5Kd8Wq2Zr7Xm"
SLACK_QUERY = "token=slack-query-7Yh3Nc6Ve4"
WRONG_KEY = "wk-wrong-value-Zz9"
SECRETS = {
    "website write key": WEBSITE_KEY,
    "crm write key": CRM_KEY,
    "admin token": ADMIN_TOKEN,
    "read token": READ_TOKEN,
    "webhook secret": SECRET,
    "webhook secret body": SECRET.removeprefix("whsec_"),
    "slack webhook path": SLACK_PATH.rsplit("/", 1)[1],
    "slack query token": SLACK_QUERY.split("=", 1)[1],
    "a wrong write key": WRONG_KEY,
}
BANNER = ("  page ", "  api token ", "  write key ", '    analytics.Client("')
"""Lines of the dev banner that show the user their own keys and token, on purpose."""


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirects)


def request(url: str, *, data: bytes | None = None, headers: dict[str, str]) -> int:
    """The status of one request; a redirect is not followed (its status is the answer)."""
    call = urllib.request.Request(url, data=data, headers=headers)
    try:
        with OPENER.open(call, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return error.code


def basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def test_a_full_dev_run_logs_no_secret(tmp_path: Path) -> None:
    kafka_port, redis_port = free_port(), free_port()
    web_port, collector_port, deliver_port = free_port(), free_port(), free_port()
    data_dir = tmp_path / "dev"
    with receiver({"/hook": fails_first(1), SLACK_PATH: ok}) as server:
        destinations = tmp_path / "destinations.yaml"
        destinations.write_text(
            json.dumps(
                {
                    "allow_hosts": ["127.0.0.1"],
                    "destinations": [
                        {"name": "crm", "url": server.url("/hook"), "secret": SECRET},
                        {
                            "name": "slack",
                            "url": f"{server.url(SLACK_PATH)}?{SLACK_QUERY}",
                            "format": "slack",
                        },
                    ],
                }
            )
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
        env |= {
            "LEADPULSE_WRITE_KEYS": f"website={WEBSITE_KEY},crm={CRM_KEY}",
            "LEADPULSE_SALES_SOURCES": "crm",
            "LEADPULSE_API_TOKENS": f"ops={ADMIN_TOKEN}:admin,viewer={READ_TOKEN}:read",
        }
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "leadpulse.streams.cli",
                "dev",
                *("--kafka-port", str(kafka_port), "--redis-port", str(redis_port)),
                *("--web-port", str(web_port), "--collector-port", str(collector_port)),
                *("--collector-metrics-port", str(free_port())),
                *("--deliver-port", str(deliver_port), "--destinations", str(destinations)),
                *("--data-dir", str(data_dir)),
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
            worker = f"http://127.0.0.1:{web_port}"
            wait_until(
                lambda: request(f"{worker}/ready", headers={}) == 200, 90, "the dev worker ready"
            )
            collector = f"http://127.0.0.1:{collector_port}"
            event = {"type": "track", "event": "Demo Requested", "userId": "u-logs-1"}
            body = json.dumps({"batch": [event]}).encode()
            json_type = {"Content-Type": "application/json"}
            signed = json_type | {"Authorization": basic(WEBSITE_KEY)}
            assert request(f"{collector}/v1/batch", data=body, headers=signed) == 200
            keyed = json.dumps({"batch": [event], "writeKey": CRM_KEY}).encode()
            assert request(f"{collector}/v1/batch", data=keyed, headers=json_type) == 200
            wrong = json_type | {"Authorization": basic(WRONG_KEY)}
            assert request(f"{collector}/v1/batch", data=body, headers=wrong) == 401
            bearer = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            assert request(f"{worker}/stats", headers=bearer) == 200
            assert (
                request(f"{worker}/stats", headers={"Authorization": f"Bearer {WRONG_KEY}"}) == 401
            )
            assert request(f"{worker}/ui?token={READ_TOKEN}", headers={}) in {302, 303}
            assert request(f"{worker}/ui?token={WRONG_KEY}", headers={}) == 401

            handoff = sample()
            producer = KafkaProducer(bootstrap_servers=f"127.0.0.1:{kafka_port}")
            try:
                producer.send("leadpulse.handoffs", key=b"k", value=encode(handoff))
                producer.flush(30)
            finally:
                producer.close(5)
            wait_until(lambda: server.count("/hook", handoff.handoff_id) == 2, 60, "retried")
            wait_until(lambda: len(server.at(SLACK_PATH)) == 1, 60, "posted to slack")
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
    assert process.returncode == 0, output[-3000:]
    logs = {path: path.read_text(errors="replace") for path in data_dir.rglob("*.log")}
    assert {p.name for p in logs} >= {"collector.log", "deliver.log"}, sorted(logs)
    logs[Path("<leadpulse dev output, banner lines left out>")] = "\n".join(
        line for line in output.splitlines() if not line.startswith(BANNER)
    )
    found = [
        f"{what} in {path}: {line.strip()[:200]}"
        for path, text in logs.items()
        for line in text.splitlines()
        for what, secret in SECRETS.items()
        if secret in line
    ]
    assert found == []
    banner = [line for line in output.splitlines() if line.startswith(BANNER)]
    assert any(WEBSITE_KEY in line for line in banner), "the banner shows the write key"
