"""What every command shares: exit codes, settings and model loading."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from leadpulse.scoring import ModelError, ScoringModel, default_model, load_model
from leadpulse.streams.settings import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C (or SIGTERM, for commands that start children), as shells report."""

TOPIC_ALIASES = {
    "events": "events_topic",
    "handoffs": "handoffs_topic",
    "transitions": "transitions_topic",
    "dlq": "dlq_topic",
}


def load_settings(**overrides: Any) -> Settings:
    """Environment settings with CLI flags on top (flags win)."""
    try:
        base = Settings()
    except ValidationError as error:
        raise SystemExit(f"leadpulse: bad LEADPULSE_* environment:\n{_described(error)}") from None
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return base.replace(**values) if values else base
    except ValidationError as error:
        raise SystemExit(f"leadpulse: bad option:\n{_described(error)}") from None


def _described(error: ValidationError) -> str:
    """One line per problem, naming the variable; never the value (it may be a secret)."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        name = "_".join(str(part) for part in problem["loc"]).upper()
        lines.append(f"  LEADPULSE_{name}: {problem['msg']}")
    return "\n".join(lines)


def load_scoring_model(settings: Settings) -> ScoringModel:
    try:
        return load_model(settings.model_file) if settings.model_file else default_model()
    except ModelError as error:
        raise SystemExit("leadpulse: model file rejected:\n" + "\n".join(error.issues)) from None
    except OSError as error:
        raise SystemExit(f"leadpulse: cannot read model file: {error}") from None
