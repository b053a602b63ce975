"""The scorers compared: model files, one scoring function, the threshold knob.

`score` is the one place events meet a model. Today it folds each lead's
events through the scoring engine (`apply_many`, then `evaluate` at the end
of the period for the recycles decay or a window expiry causes after the
last event), exactly as a worker would for events arriving in event-time
order. It can be swapped for the `whatif` replay machinery without touching
the metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from leadpulse.schemas import BehaviorEvent, Stage, StageTransition
from leadpulse.scoring import ScoringModel, apply_many, evaluate, load_model, new_lead, to_epoch

HERE = Path(__file__).parent
SCORERS: dict[str, str] = {
    "decayed": "the default model's rules, each decaying with its half-life",
    "cumulative": "the same rules without decay: points add up for good (Mautic, legacy HubSpot)",
    "windowed": "the same rules counting only the last 30 days (Marketo-style)",
}
"""The model files in bench/quality/ (NAME.yaml), in the order the table shows them."""


def model_path(name: str) -> Path:
    """A scorer's model file: a name from SCORERS, or a path to any model file."""
    if name in SCORERS:
        return HERE / f"{name}.yaml"
    return Path(name)


def load(name: str) -> ScoringModel:
    """`load_model` of the scorer's file; a ModelError names the file, line and problem."""
    return load_model(model_path(name))


@dataclass(frozen=True)
class Scored:
    """What one model made of the events: each lead's transitions, in order."""

    model_version: str
    transitions: Mapping[str, tuple[StageTransition, ...]]
    events: int

    def handoffs(self) -> dict[str, list[float]]:
        """Epoch seconds of each lead's handoffs (MQL -> SAL), in order."""
        return {
            lead: [to_epoch(t.occurred_at) for t in made if is_handoff(t)]
            for lead, made in self.transitions.items()
        }

    def recycles(self) -> dict[str, list[float]]:
        """Epoch seconds of each lead's recycles (MQL or SAL -> NURTURE), in order."""
        return {
            lead: [to_epoch(t.occurred_at) for t in made if is_recycle(t)]
            for lead, made in self.transitions.items()
        }


def is_handoff(transition: StageTransition) -> bool:
    return transition.from_stage is Stage.MQL and transition.to_stage is Stage.SAL


def is_recycle(transition: StageTransition) -> bool:
    return transition.from_stage in (Stage.MQL, Stage.SAL) and transition.to_stage is Stage.NURTURE


def score(
    events_by_lead: Mapping[str, Sequence[BehaviorEvent]],
    model: ScoringModel,
    *,
    until: float | None = None,
) -> Scored:
    """Every lead's events through `model`, in event-time order, then decay up to `until`.

    `until` (epoch seconds) is the end of the period, default the latest
    event time. Refuses a lead whose events are not in event-time order: a
    worker applies arrival order, and only time order makes it reproducible.
    """
    latest = max(
        (to_epoch(events[-1].occurred_at) for events in events_by_lead.values() if events),
        default=0.0,
    )
    end = latest if until is None else until
    made: dict[str, tuple[StageTransition, ...]] = {}
    count = 0
    for lead_id, events in events_by_lead.items():
        for before, after in pairwise(events):
            if after.occurred_at < before.occurred_at:
                raise ValueError(
                    f"lead {lead_id}: event {after.event_id} is earlier than "
                    f"{before.event_id}; give each lead's events in event-time order"
                )
        state, moves = apply_many(new_lead(lead_id), events, model)
        state, decayed = evaluate(state, end, model)
        made[lead_id] = moves + decayed
        count += len(events)
    return Scored(model_version=model.model_version, transitions=made, events=count)


def with_handoff(model: ScoringModel, threshold: float) -> ScoringModel:
    """`model` with its handoff threshold at `threshold`, the lifecycle scaled with it.

    The mql and recycle thresholds keep their ratio to the handoff threshold
    (the default model's 50 / 70 and 25 / 70), so a lower handoff threshold
    stays valid (mql <= handoff) and the hysteresis keeps its shape.
    """
    lifecycle = model.lifecycle
    base = lifecycle.handoff.engagement
    if base <= 0:
        raise ValueError(f"{model.source}: handoff engagement must be above 0 to scale it")
    if threshold <= 0:
        raise ValueError(f"handoff threshold must be above 0, got {threshold}")
    ratio = threshold / base
    changed = lifecycle.model_copy(
        update={
            "mql": lifecycle.mql * ratio,
            "recycle": lifecycle.recycle * ratio,
            "handoff": lifecycle.handoff.model_copy(update={"engagement": threshold}),
        }
    )
    spec = model.spec.model_copy(update={"lifecycle": changed})
    return ScoringModel.from_spec(spec, f"{model.source} (handoff {threshold:g})")


@dataclass(frozen=True)
class ReplayCheck:
    """`score` and the `whatif` replay over the same events: what each decided."""

    handoffs: int
    recycles: int
    replay_handoffs: int
    replay_recycles: int
    differing_leads: tuple[str, ...]
    """Leads whose handoff times differ between the two."""

    @property
    def equal(self) -> bool:
        return (
            not self.differing_leads
            and self.handoffs == self.replay_handoffs
            and self.recycles == self.replay_recycles
        )


def replay_check(
    events_by_lead: Mapping[str, Sequence[BehaviorEvent]],
    model: ScoringModel,
    *,
    until: float,
) -> ReplayCheck:
    """Score the events with `score` and again through the `whatif` replay; compare.

    The replay is the worker's own pipeline (`streams.replay`: the Processor,
    its sweeps, over an in-memory store), fed the events as one partition's
    records in event-time order, each stamped with its event time. It is
    too slow for the threshold search, so the search uses `score` and the
    chosen thresholds are checked here: the table's figures hold for the
    worker only if both decide the same handoffs at the same times.
    """
    import asyncio

    from leadpulse.schemas import encode
    from leadpulse.streams.pipeline.records import Record
    from leadpulse.streams.replay.run import by_lead, replay_records

    scored = score(events_by_lead, model, until=until)
    ordered = sorted(
        (event for events in events_by_lead.values() for event in events),
        key=lambda event: (event.occurred_at, event.event_id),
    )
    records = [
        Record(
            key=event.subject.encode(),
            value=encode(event),
            topic="leadpulse.events",
            partition=0,
            offset=offset,
            timestamp=to_epoch(event.occurred_at),
        )
        for offset, event in enumerate(ordered)
    ]
    run = asyncio.run(replay_records(records, model, partitions=1, now=until))
    mine = {lead: times for lead, times in scored.handoffs().items() if times}
    theirs = {lead: [h.at for h in made] for lead, made in by_lead(run.handoffs).items()}
    differing = tuple(
        sorted(lead for lead in mine.keys() | theirs.keys() if mine.get(lead) != theirs.get(lead))
    )
    return ReplayCheck(
        handoffs=sum(len(times) for times in mine.values()),
        recycles=sum(len(times) for times in scored.recycles().values()),
        replay_handoffs=len(run.handoffs),
        replay_recycles=run.recycles,
        differing_leads=differing,
    )
