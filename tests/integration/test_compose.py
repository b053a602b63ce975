"""docker-compose.yml is checked by a real compose parser (no engine runs here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from leadpulse.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


SECRETS = {
    "LEADPULSE_WRITE_KEYS": "website=wk_compose_test_0123456789",
    "LEADPULSE_API_TOKENS": "ops=tk_compose_test_0123456789:admin",
    "CRM_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "GRAFANA_ADMIN_PASSWORD": "compose-test-password",
}
"""What an operator puts in .env: the stack has no defaults for these."""


def compose_config(
    exe: str, environ: dict[str, str], tmp: Path
) -> subprocess.CompletedProcess[str]:
    """`compose config` with exactly `environ` (an empty env file: no .env of the checkout)."""
    env_file = tmp / "empty.env"
    env_file.write_text("")
    return subprocess.run(
        [
            *exe.split(),
            "--env-file",
            str(env_file),
            "-f",
            str(ROOT / "docker-compose.yml"),
            "config",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp), **environ},
    )


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    exe = shutil.which("docker-compose")
    assert exe is not None, "docker-compose (Debian package) is installed by `make install`"
    result = compose_config(exe, SECRETS, tmp_path_factory.mktemp("compose"))
    assert result.returncode == 0, result.stderr
    parsed: dict[str, Any] = yaml.safe_load(result.stdout)
    return parsed


def compose_client() -> str | None:
    """`docker compose` (the client plugin, no engine needed) or `docker-compose`, or None."""
    docker = shutil.which("docker")
    if docker is not None:
        probe = subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False, timeout=30
        )
        if probe.returncode == 0:
            return f"{docker} compose"
    return shutil.which("docker-compose")


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_stops_compose_naming_it(missing: str, tmp_path: Path) -> None:
    exe = compose_client()
    if exe is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed")
    given = {name: value for name, value in SECRETS.items() if name != missing}
    for environ in (given, {**given, missing: ""}):  # unset, and set empty (`:?` refuses both)
        result = compose_config(exe, environ, tmp_path)
        assert result.returncode != 0, result.stdout
        assert f"set {missing} in .env, see .env.example" in result.stderr, result.stderr


def test_services_and_health_checks(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"kafka", "redis", "worker", "collector", "traffic"} <= set(services)
    for name in ("kafka", "redis", "worker", "collector"):
        assert services[name]["healthcheck"]["test"], name
    assert services["traffic"]["profiles"] == ["demo"]
    # liveness probes /health (/ready is for orchestrators routing traffic)
    for name, port in (("worker", 6066), ("collector", 8088)):
        probe = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/health'" in probe, (name, probe)
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile
    assert "127.0.0.1:6066/health'" in dockerfile


def test_kafka_runs_in_kraft_mode(compose: dict[str, Any]) -> None:
    env = compose["services"]["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"


def test_redis_persists_with_aof(compose: dict[str, Any]) -> None:
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert compose["services"]["redis"]["volumes"]


def test_worker_waits_for_healthy_dependencies(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert worker["depends_on"] == {
        "kafka": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    assert worker["build"]["context"] == str(ROOT)
    assert (ROOT / "Dockerfile").is_file()


def test_worker_environment_names_real_settings(compose: dict[str, Any]) -> None:
    env = compose["services"]["worker"]["environment"]
    names = {f"LEADPULSE_{field.upper()}" for field in Settings.model_fields}
    assert set(env) <= names, set(env) - names
    settings = Settings.model_validate(
        {key.removeprefix("LEADPULSE_").lower(): value for key, value in env.items()}
    )
    assert settings.bootstrap_servers == ["kafka:9092"]
    assert settings.partitions == 12


@pytest.mark.parametrize("service", ["collector", "traffic"])
def test_collector_environment_names_real_settings(compose: dict[str, Any], service: str) -> None:
    env = compose["services"][service]["environment"]
    names = {f"LEADPULSE_{field.upper()}" for field in Settings.model_fields}
    assert set(env) <= names, set(env) - names
    settings = Settings.model_validate(
        {key.removeprefix("LEADPULSE_").lower(): value for key, value in env.items()}
    )
    assert list(settings.write_key_sources.values()) == ["website"]


def test_traffic_posts_to_the_collector_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    entrypoint = services["traffic"]["entrypoint"]
    url = entrypoint[entrypoint.index("--collector") + 1]
    port = services["collector"]["environment"]["LEADPULSE_COLLECTOR_PORT"]
    assert url == f"http://collector:{port}"
    assert services["collector"]["command"] == ["collect"]


def test_monitoring_profile_scrapes_both_processes(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["monitoring"], name
        for volume in services[name]["volumes"]:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
            assert Path(source).exists(), source
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    worker_port = services["worker"]["environment"].get("LEADPULSE_WEB_PORT", "6066")
    collector_port = services["collector"]["environment"]["LEADPULSE_COLLECTOR_METRICS_PORT"]
    deliver_port = services["deliver"]["environment"]["LEADPULSE_DELIVER_WEB_PORT"]
    assert targets == {
        "leadpulse-worker": [f"worker:{worker_port}"],
        "leadpulse-collector": [f"collector:{collector_port}"],
        "leadpulse-deliverer": [f"deliver:{deliver_port}"],
    }


def test_deliver_profile_runs_the_deliverer_on_a_valid_destinations_file(
    compose: dict[str, Any],
) -> None:
    from leadpulse.streams.delivery.config import load_destinations

    service = compose["services"]["deliver"]
    assert service["profiles"] == ["delivery"]
    assert service["command"] == ["deliver"]
    env = service["environment"]
    names = {f"LEADPULSE_{field.upper()}" for field in Settings.model_fields}
    assert {key for key in env if key.startswith("LEADPULSE_")} <= names
    port = env["LEADPULSE_DELIVER_WEB_PORT"]
    assert f"127.0.0.1:{port}/health'" in " ".join(service["healthcheck"]["test"])
    (volume,) = service["volumes"]
    source = Path(volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0])
    target = volume["target"] if isinstance(volume, dict) else volume.split(":")[1]
    assert target == env["LEADPULSE_DESTINATIONS_FILE"]
    destinations = load_destinations(source, environ=env)
    assert [d.name for d in destinations.destinations] == ["crm", "sales-channel"]


def test_dashboard_queries_only_metrics_that_exist() -> None:
    """Every `leadpulse_*` name in the Grafana dashboard is one the processes register."""
    import json
    import re

    from prometheus_client import CollectorRegistry

    from leadpulse.streams.observability.metrics import (
        CollectorMetrics,
        DeliveryMetrics,
        WorkerMetrics,
    )

    registry = CollectorRegistry()
    WorkerMetrics(registry)
    CollectorMetrics(registry)
    DeliveryMetrics(registry)
    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"], "gauge": [""]}
    series = {
        family.name + suffix for family in registry.collect() for suffix in suffixes[family.type]
    }
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/leadpulse.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"leadpulse_[a-z_]+", expr)}
    assert used <= series, sorted(used - series)
    # and every metric has a panel
    shown = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in used}
    assert {family.name for family in registry.collect()} <= shown
