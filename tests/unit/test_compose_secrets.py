"""docker-compose.yml fails closed: no secret has a default, each is required with ``:?``.

Read as written (before any interpolation), so a fallback such as
``${LEADPULSE_WRITE_KEYS:-website=wk_demo}`` is seen even where the environment
would hide it. The compose parser's own refusal is in
tests/integration/test_compose.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRETS = {"LEADPULSE_WRITE_KEYS", "LEADPULSE_API_TOKENS", "CRM_WEBHOOK_SECRET"}
SECRETS |= {"GRAFANA_ADMIN_PASSWORD", "LEADPULSE_SESSION_SECRET"}
"""Every secret the stack takes, by the variable it is read from."""
SECRET_WORDS = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)
REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?])[^}]*)?\}")
"""``${NAME}``, ``${NAME:-default}``, ``${NAME-default}``, ``${NAME:?message}``, ..."""
REQUIRED = "set {name} in .env, see .env.example"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def references() -> list[tuple[str, str, str, str]]:
    """(service, setting, variable, what follows its name) of every ``${...}`` in a service."""
    found = []
    for service, spec in compose()["services"].items():
        environment = spec.get("environment") or {}
        assert isinstance(environment, dict), f"{service}: environment as a mapping, please"
        found.extend(
            (service, setting, match.group(1), match.group(2) or "")
            for setting, value in environment.items()
            for match in REFERENCE.finditer(str(value))
        )
    return found


def test_every_secret_is_required_with_the_message_naming_it() -> None:
    seen = {variable for _, _, variable, _ in references()}
    assert seen >= SECRETS, SECRETS - seen
    for service, setting, variable, rest in references():
        if variable in SECRETS:
            assert rest == ":?" + REQUIRED.format(name=variable), (service, setting, rest)


def test_nothing_that_looks_like_a_secret_has_a_default() -> None:
    for service, setting, variable, rest in references():
        looks_secret = SECRET_WORDS.search(variable) or SECRET_WORDS.search(setting)
        if looks_secret:
            assert variable in SECRETS, f"{service}.{setting}: ${{{variable}}} is not listed"
            assert not rest.startswith((":-", "-")), f"{service}.{setting} defaults to {rest}"


def test_no_secret_is_written_into_the_file() -> None:
    """A setting named like a secret takes its value from the environment, never a literal."""
    for service, spec in compose()["services"].items():
        for setting, value in (spec.get("environment") or {}).items():
            if SECRET_WORDS.search(setting):
                assert REFERENCE.fullmatch(str(value)), f"{service}.{setting} = {value!r}"
    text = (ROOT / "docker-compose.yml").read_text()
    for literal in ("wk_", "tk_", "whsec_"):
        assert literal not in text, literal


def test_env_example_documents_each_secret_and_fills_in_none() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    assignments = dict(
        line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line
    )
    referenced = {variable for _, _, variable, _ in references()}
    assert set(assignments) == referenced
    assert all(value == "" for value in assignments.values()), assignments  # no usable defaults
    for name in assignments:
        before = lines[: lines.index(f"{name}=")]
        assert before[-1].startswith("#"), f"{name} has no explanation above it"
