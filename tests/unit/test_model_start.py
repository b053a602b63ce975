"""A worker's model against the namespace's record at start (`streams.processes.models`)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from leadpulse.scoring import ScoringModel, default_model, parse_model
from leadpulse.streams.processes.models import (
    DEFAULT_ORIGIN,
    ModelRefusedError,
    Started,
    model_source,
    reconcile_model,
    replaced_by_apply,
)
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import MemoryLeadStore
from leadpulse.streams.store.models import (
    APPLY,
    FIRST_START,
    FORWARD_ONLY,
    ModelChange,
    ModelRecord,
)

TEXT = """\
version: "s-1"
engagement:
  rules:
    - {name: view, event: page_view, points: 5, half_life: 1d}
fit:
  rules:
    - {name: big, trait: company_size, between: [100, 100000], points: 40}
  grades: {A: 40}
lifecycle: {mql: 50, handoff: {engagement: 70, min_grade: A}, recycle: 25}
"""
NEW_TEXT = TEXT.replace("points: 5,", "points: 6,")
OLD = parse_model(TEXT, "/models/old.yaml")
NEW = parse_model(NEW_TEXT, "/models/new.yaml")
T1, T2 = 1765100000.0, 1765200000.0


async def start(
    store: MemoryLeadStore, model: ScoringModel, at: float, *, forward_only: bool = False
) -> Started:
    text = TEXT if model is OLD else NEW_TEXT
    return await reconcile_model(
        store,
        model,
        text=text,
        origin=model.source,
        namespace="lp",
        now=at,
        forward_only=forward_only,
    )


async def test_the_first_start_records_the_model() -> None:
    store = MemoryLeadStore()
    started = await start(store, OLD, T1)
    assert started.how == "first-start"
    assert await store.recorded_model() == ModelRecord(
        version=OLD.model_version,
        source=TEXT,
        origin="/models/old.yaml",
        recorded_at=T1,
        history=(
            ModelChange(from_version=None, to_version=OLD.model_version, at=T1, mode=FIRST_START),
        ),
    )


async def test_the_same_model_starts_and_records_nothing() -> None:
    store = MemoryLeadStore()
    await start(store, OLD, T1)
    before = store.model_blob
    started = await start(store, OLD, T2, forward_only=True)
    assert started.how == "same"
    assert store.model_blob == before


async def test_another_model_is_refused_naming_both_versions_and_files() -> None:
    store = MemoryLeadStore()
    await start(store, OLD, T1)
    with pytest.raises(ModelRefusedError) as refused:
        await start(store, NEW, T2)
    assert str(refused.value) == (
        f"the model from /models/new.yaml is version {NEW.model_version}, but the states of "
        f"namespace 'lp' were built with version {OLD.model_version} (from /models/old.yaml, "
        "recorded 2025-12-07 09:33:20 UTC). Starting would score them with another model "
        f"without saying so. To switch to {NEW.model_version} with the history rescored, "
        "rescore the history with `leadpulse model apply FILE` while the workers run; "
        f"to keep the states and score new events under {NEW.model_version} "
        "(history is not rescored), start the worker with --forward-only (`leadpulse worker "
        "--forward-only`, `leadpulse dev --forward-only`, or LEADPULSE_FORWARD_ONLY=1); or "
        f"start it with the model of version {OLD.model_version} again."
    )
    recorded = await store.recorded_model()
    assert recorded is not None
    assert recorded.version == OLD.model_version


async def test_forward_only_records_the_switch_in_the_history() -> None:
    store = MemoryLeadStore()
    await start(store, OLD, T1)
    started = await start(store, NEW, T2, forward_only=True)
    assert (started.how, started.by_us) == ("forward-only", True)
    recorded = await store.recorded_model()
    assert recorded is not None
    assert (recorded.version, recorded.source, recorded.origin, recorded.recorded_at) == (
        NEW.model_version,
        NEW_TEXT,
        "/models/new.yaml",
        T2,
    )
    assert recorded.history == (
        ModelChange(from_version=None, to_version=OLD.model_version, at=T1, mode=FIRST_START),
        ModelChange(
            from_version=OLD.model_version, to_version=NEW.model_version, at=T2, mode=FORWARD_ONLY
        ),
    )
    assert recorded.model() == NEW


async def test_workers_switching_together_all_start_and_record_one_change() -> None:
    store = MemoryLeadStore()
    await start(store, OLD, T1)
    started = await asyncio.gather(*(start(store, NEW, T2, forward_only=True) for _ in range(3)))
    assert sorted(s.by_us for s in started) == [False, False, True]
    recorded = await store.recorded_model()
    assert recorded is not None
    assert [change.mode for change in recorded.history] == [FIRST_START, FORWARD_ONLY]


async def test_a_different_first_model_recorded_meanwhile_is_refused() -> None:
    class Racing(MemoryLeadStore):
        async def recorded_model(self) -> ModelRecord | None:
            got = await super().recorded_model()
            if got is None:  # another worker records its model right after this read
                await super().record_model(
                    ModelRecord.first(OLD.model_version, TEXT, "/models/old.yaml", T1),
                    replacing=None,
                )
            return got

    racing = Racing()
    with pytest.raises(
        ModelRefusedError, match=re.escape(f"built with version {OLD.model_version}")
    ):
        await start(racing, NEW, T2)
    recorded = await racing.recorded_model()
    assert recorded is not None
    assert recorded.version == OLD.model_version  # the other worker's record stays


def test_the_source_is_the_files_text_or_the_shipped_model(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(TEXT)
    settings = Settings(model_file=path)
    assert model_source(settings, OLD) == (TEXT, str(path))
    shipped = default_model()
    text, origin = model_source(Settings(), shipped)
    assert origin == DEFAULT_ORIGIN
    assert parse_model(text).model_version == shipped.model_version
    assert "# " in text  # the file as shipped, comments and all


def test_a_file_edited_since_it_was_loaded_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(NEW_TEXT)  # the worker loaded OLD from it, then it was edited
    with pytest.raises(ModelRefusedError) as refused:
        model_source(Settings(model_file=path), OLD)
    assert str(refused.value) == (
        f"the model file {path} changed while the worker started (it loaded version "
        f"{OLD.model_version}, the file now holds {NEW.model_version}); start it again"
    )
    path.write_text("version: [")
    with pytest.raises(ModelRefusedError, match="the file now holds not a valid model"):
        model_source(Settings(model_file=path), OLD)


def test_worker_and_dev_take_forward_only_and_dev_passes_it_to_its_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from leadpulse.streams.cli.parser import build_parser
    from leadpulse.streams.dev.workerproc import worker_command

    parser = build_parser()
    assert parser.parse_args(["worker", "--forward-only"]).forward_only is True
    assert parser.parse_args(["worker"]).forward_only is None  # the setting decides
    assert parser.parse_args(["dev", "--forward-only"]).forward_only is True
    # dev's settings get forward_only=True; its worker's environment carries it on
    _, env = worker_command(Settings().replace(forward_only=True))
    assert env["LEADPULSE_FORWARD_ONLY"] == "True"
    for name, value in env.items():
        if name.startswith("LEADPULSE_"):
            monkeypatch.setenv(name, value)
    assert Settings().forward_only is True
    monkeypatch.setenv("LEADPULSE_FORWARD_ONLY", "1")
    assert Settings().forward_only is True
    monkeypatch.delenv("LEADPULSE_FORWARD_ONLY")
    assert Settings().forward_only is False


def applied_record(version: str, replaced: str, text: str) -> ModelRecord:
    """The record `leadpulse model apply` writes in the namespace it builds."""
    change = ModelChange(from_version=replaced, to_version=version, at=T2, mode=APPLY)
    return ModelRecord(
        version=version, source=text, origin="/models/new.yaml", recorded_at=T2, history=(change,)
    )


async def test_a_worker_with_the_file_an_apply_replaced_adopts_the_applied_model() -> None:
    store = MemoryLeadStore()
    record = applied_record(NEW.model_version, OLD.model_version, NEW_TEXT)
    assert await store.record_model(record, replacing=None) == record
    started = await start(store, OLD, T2 + 1)
    assert started.how == "adopted"
    assert started.record == record
    assert await store.recorded_model() == record  # nothing recorded


async def test_a_worker_with_a_third_model_is_refused_in_an_applied_namespace() -> None:
    third = parse_model(TEXT.replace("points: 5,", "points: 7,"), "/models/third.yaml")
    store = MemoryLeadStore()
    await store.record_model(
        applied_record(NEW.model_version, OLD.model_version, NEW_TEXT), replacing=None
    )
    with pytest.raises(ModelRefusedError, match="leadpulse model apply FILE"):
        await reconcile_model(
            store,
            third,
            text="",
            origin="/models/third.yaml",
            namespace="lp.m0123456789ab",
            now=T2,
            forward_only=False,
        )


def test_replaced_by_apply_is_the_last_changes_from_version_only_for_an_apply() -> None:
    assert replaced_by_apply(applied_record("b", "a", "")) == "a"
    first = ModelRecord.first("a", "", "x.yaml", T1)
    assert replaced_by_apply(first) is None
    assert replaced_by_apply(first.changed_to("b", "", "y.yaml", T2, FORWARD_ONLY)) is None
