"""A worker's model against the namespace's: recorded, accepted, or refused at start.

The namespace (the Redis key prefix) records the model its states are built
with (`streams.store.models.ModelRecord`). A starting worker compares its own
model's version with the record (docs/architecture.md#model-versions):

- no record: the worker records its model (mode ``first-start``) and starts;
- the same version: it starts;
- another version, in a namespace `leadpulse model apply` built, replacing the
  worker's version: the worker was started with the file of before the apply
  (its supervisor restarted it into the new namespace); it scores with the
  namespace's recorded model (``adopted``) and says so;
- another version otherwise: it refuses (`ModelRefusedError`, naming both versions
  and where each came from), unless started with ``--forward-only``
  (``LEADPULSE_FORWARD_ONLY=1``): then it records its model (mode
  ``forward-only``) and starts, the states keep what the old model folded in,
  and only new events score under the new one.

Recording is a compare-and-set on the recorded version, so workers starting
together with the same new model all start, and add one history entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Literal

from leadpulse.scoring import ModelError, ScoringModel, parse_model
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import LeadStore
from leadpulse.streams.store.models import APPLY, FORWARD_ONLY, ModelRecord, when

DEFAULT_ORIGIN = "the shipped default model (default_model.yaml)"
"""The origin recorded for a worker started without LEADPULSE_MODEL_FILE."""
HOW_TO_GO_ON = (
    "start the worker with --forward-only (`leadpulse worker --forward-only`, "
    "`leadpulse dev --forward-only`, or LEADPULSE_FORWARD_ONLY=1)"
)
HOW_TO_RESCORE = "rescore the history with `leadpulse model apply FILE` while the workers run"


class ModelRefusedError(Exception):
    """The worker must not start with its model: the message says why and how to go on."""


@dataclass(frozen=True, slots=True)
class Started:
    """How the worker's model relates to the namespace's, once accepted."""

    how: Literal["same", "first-start", "forward-only", "adopted"]
    previous: ModelRecord | None
    """The record before this start changed it (None: there was none, or no change)."""
    record: ModelRecord
    """The record now."""
    by_us: bool
    """Whether this worker wrote the record (another one starting together may have)."""


def model_source(settings: Settings, model: ScoringModel) -> tuple[str, str]:
    """(text, origin) of the worker's model: the file's text and path, or the shipped model.

    `ModelRefusedError` if the file no longer holds the model the worker
    loaded (edited, or unreadable, since): the record's text must give its
    version, and which of the two the operator meant is theirs to say.
    """
    if settings.model_file is None:
        text = files("leadpulse.scoring").joinpath("default_model.yaml").read_text("utf-8")
        origin = DEFAULT_ORIGIN
    else:
        origin = str(settings.model_file)
        try:
            text = settings.model_file.read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            text = ""
    try:
        now = parse_model(text, origin).model_version
    except ModelError:
        now = "not a valid model"
    if now != model.model_version:
        raise ModelRefusedError(
            f"the model file {origin} changed while the worker started (it loaded version "
            f"{model.model_version}, the file now holds {now}); start it again"
        )
    return text, origin


def refusal(model: ScoringModel, origin: str, recorded: ModelRecord, namespace: str) -> str:
    """What a worker whose model is not the namespace's says (both versions, both files)."""
    return (
        f"the model from {origin} is version {model.model_version}, but the states of "
        f"namespace '{namespace}' were built with version {recorded.version} (from "
        f"{recorded.origin}, recorded {when(recorded.recorded_at)}). Starting would score "
        f"them with another model without saying so. To switch to {model.model_version} "
        f"with the history rescored, {HOW_TO_RESCORE}; to keep the states and score new "
        f"events under {model.model_version} (history is not rescored), {HOW_TO_GO_ON}; "
        f"or start it with the model of version {recorded.version} again."
    )


async def reconcile_model(
    store: LeadStore,
    model: ScoringModel,
    *,
    text: str,
    origin: str,
    namespace: str,
    now: float,
    forward_only: bool,
) -> Started:
    """Accept the worker's model (recording it if need be) or raise `ModelRefusedError`."""
    recorded = await store.recorded_model()
    mine = model.model_version
    if recorded is not None and recorded.version == mine:
        return Started("same", None, recorded, by_us=False)
    if recorded is not None and replaced_by_apply(recorded) == mine:
        return Started("adopted", None, recorded, by_us=False)
    if recorded is None:
        wanted = ModelRecord.first(mine, text, origin, now)
    elif forward_only:
        wanted = recorded.changed_to(mine, text, origin, now, FORWARD_ONLY)
    else:
        raise ModelRefusedError(refusal(model, origin, recorded, namespace))
    stored = await store.record_model(
        wanted, replacing=None if recorded is None else recorded.version
    )
    if stored is None or stored.version != mine:
        # another worker recorded another model in between: compare with that one
        if stored is None:
            raise ModelRefusedError(
                f"the model record of namespace '{namespace}' disappeared while this worker "
                "recorded its model; start it again"
            )
        if not forward_only:
            raise ModelRefusedError(refusal(model, origin, stored, namespace))
        raise ModelRefusedError(
            f"while this worker recorded its model {mine} with --forward-only, another worker "
            f"recorded {stored.version} (from {stored.origin}) in namespace '{namespace}'; "
            "start the workers of one namespace with one model"
        )
    if recorded is None:
        return Started("first-start", recorded, stored, by_us=stored == wanted)
    return Started("forward-only", recorded, stored, by_us=stored == wanted)


def replaced_by_apply(record: ModelRecord) -> str | None:
    """The version `leadpulse model apply` replaced when it built this record's namespace."""
    if record.history and record.history[-1].mode == APPLY:
        return record.history[-1].from_version
    return None
