"""The model a namespace's states are built with: one record per store (`LeadStore`).

Every state a worker commits is built with its model (`LeadState.model_version`
says which). The namespace (the Redis key prefix) records that model once:
its version, its source text (so tools such as ``leadpulse lead`` and
``leadpulse model whatif`` load the worker's model without its file), where
it came from, when it was recorded, and a bounded history of the changes
(`ModelChange`: from, to, when, how). A worker starting with another model
refuses unless told how to go on (`streams.processes.models`).

Stored as JSON, ``{"format":1,...}``; keys this release does not know (a
newer release's) are ignored when read, so a rollback still reads it.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from leadpulse.scoring import ModelError, ScoringModel, parse_model

MODEL_HISTORY = 50
"""Changes a record keeps, the most recent last: older ones are dropped."""
FORMAT = 1
"""The version `encode_model_record` writes."""

Mode = Literal["first-start", "forward-only", "apply"]
FIRST_START: Final[Mode] = "first-start"
"""The first worker of a namespace recorded its model."""
FORWARD_ONLY: Final[Mode] = "forward-only"
"""A worker took over with another model, keeping the states (``--forward-only``)."""
APPLY: Final[Mode] = "apply"
"""`leadpulse model apply` built the namespace's states by replaying the history."""


def when(epoch: float) -> str:
    """An epoch time as people read it: ``2026-12-07 16:05:09 UTC``."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


class ModelRecordError(ValueError):
    """The stored record cannot be read by this release: says why."""


class ModelChange(BaseModel):
    """One change of the namespace's model."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    from_version: str | None
    """The version before; None for the first start."""
    to_version: str
    at: float
    """Epoch seconds (wall clock) the change was recorded."""
    mode: Mode


class ModelRecord(BaseModel):
    """The namespace's model now, and how it got there."""

    model_config = ConfigDict(frozen=True, extra="ignore", allow_inf_nan=False)

    version: str = Field(min_length=1)
    """`ScoringModel.model_version` of `source`."""
    source: str
    """The model file's text (YAML), as the recording worker read it."""
    origin: str
    """Where the text came from: the model file's path, or the shipped default."""
    recorded_at: float
    """Epoch seconds (wall clock) this version was recorded."""
    history: tuple[ModelChange, ...] = ()
    """Changes, oldest first: the last `MODEL_HISTORY`."""

    @classmethod
    def first(cls, version: str, source: str, origin: str, at: float) -> ModelRecord:
        """The record of a namespace's first model."""
        change = ModelChange(from_version=None, to_version=version, at=at, mode=FIRST_START)
        return cls(version=version, source=source, origin=origin, recorded_at=at, history=(change,))

    def changed_to(
        self, version: str, source: str, origin: str, at: float, mode: Mode
    ) -> ModelRecord:
        """This record after a change to `version`, the change appended to the history."""
        change = ModelChange(from_version=self.version, to_version=version, at=at, mode=mode)
        return ModelRecord(
            version=version,
            source=source,
            origin=origin,
            recorded_at=at,
            history=(*self.history, change)[-MODEL_HISTORY:],
        )

    def model(self) -> ScoringModel:
        """The recorded model, parsed from `source`.

        ModelRecordError if the text no longer parses or gives another version
        (a release whose model format changed reads it differently).
        """
        name = f"{self.origin} (recorded {self.version})"
        try:
            model = parse_model(self.source, name)
        except ModelError as error:
            raise ModelRecordError(
                f"the recorded model {self.version} does not load: " + "; ".join(error.issues)
            ) from None
        if model.model_version != self.version:
            raise ModelRecordError(
                f"the recorded model text gives version {model.model_version}, "
                f"not the recorded {self.version}"
            )
        return model


def encode_model_record(record: ModelRecord) -> bytes:
    body = record.model_dump(mode="json")
    return json.dumps({"format": FORMAT, **body}, separators=(",", ":")).encode()


def decode_model_record(blob: bytes) -> ModelRecord:
    """The record in `blob`; ModelRecordError naming what is wrong."""
    try:
        document = json.loads(blob)
    except ValueError as error:
        raise ModelRecordError(f"the model record is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise ModelRecordError(f"the model record is a JSON {type(document).__name__}")
    version = document.get("format")
    if not isinstance(version, int) or isinstance(version, bool) or version < FORMAT:
        raise ModelRecordError(f"unknown model record format {version!r}")
    try:
        return ModelRecord.model_validate(document)
    except ValidationError as error:
        raise ModelRecordError(
            "the model record does not validate: "
            + "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        ) from None


FencePhase = Literal["draining", "fenced"]
DRAINING: Final[FencePhase] = "draining"
"""Workers take no new batch (they restart into the new namespace); batches in flight
still record their progress."""
FENCED: Final[FencePhase] = "fenced"
"""Nothing more is recorded: the namespace's progress is the switch point."""


class FencedError(Exception):
    """The namespace is switched away from (`Fence`): its progress takes no more records."""


@dataclass(frozen=True, slots=True)
class Fence:
    """`leadpulse model apply` is switching the workers from this namespace to `to`.

    Set in two steps, so that no event is scored twice: `DRAINING` first
    (a worker refuses its next batch and restarts), then `FENCED` once the
    batches in flight are recorded (the progress is frozen, and is where
    the new namespace takes over). Kept on a namespace switched away from,
    so that a worker started with the old settings never writes into it.
    """

    phase: FencePhase
    to: str
    """The namespace the workers switch to."""
    at: float
    """Epoch seconds (wall clock) the phase was set."""
