"""What every command shares: exit codes, settings and model loading."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from leadpulse.scoring import ModelError, ScoringModel, default_model, load_model
from leadpulse.streams.processes.lifecycle import EXIT_FAILED, EXIT_OK
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import LeadStore
from leadpulse.streams.store.models import ModelRecordError, when

if TYPE_CHECKING:
    from leadpulse.streams.store.redis import RedisLeadStore

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "TOPIC_ALIASES",
    "active_store",
    "load_scoring_model",
    "load_settings",
    "worker_model",
]

EXIT_USAGE = 2
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


async def active_store(settings: Settings) -> RedisLeadStore:
    """The store of the namespace the workers score in (`leadpulse model apply` may have
    switched it); the caller closes it."""
    from leadpulse.streams.store.namespaces import Deployment
    from leadpulse.streams.store.redis import RedisLeadStore

    deployment = Deployment.from_settings(settings)
    try:
        namespace = await deployment.active_namespace()
    finally:
        await deployment.close()
    return RedisLeadStore.from_settings(settings, namespace)


async def worker_model(store: LeadStore, settings: Settings) -> tuple[ScoringModel, str]:
    """The worker's model: the one the namespace records, else the settings' model file.

    With the words saying which it is. A record this release cannot load
    (or read) falls back to the file too, and says why.
    """
    why = "the namespace records no model"
    try:
        record = await store.recorded_model()
        if record is not None:
            return record.model(), (
                f"the namespace's recorded model (from {record.origin}, recorded "
                f"{when(record.recorded_at)})"
            )
    except ModelRecordError as error:
        why = str(error)
    where = settings.model_file or "the shipped default model"
    return load_scoring_model(settings), f"{where} ({why})"
