"""`leadpulse lead` and GET /leads/{id} say which model built a state (issue 16, item 1)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from leadpulse.schemas import BehaviorEvent
from leadpulse.scoring import LeadState, apply, new_lead, parse_model
from leadpulse.streams.cli.format import format_lead
from leadpulse.streams.cli.inspect import worker_model
from leadpulse.streams.http.views import UNKNOWN_MODEL, explain_lead
from leadpulse.streams.settings import Settings
from leadpulse.streams.store import Commit, MemoryLeadStore, encode_state
from leadpulse.streams.store.models import ModelRecord

TEXT = """\
version: "v-1"
engagement:
  rules:
    - {name: view, event: page_view, points: 5, half_life: 1d}
fit:
  rules:
    - {name: big, trait: company_size, between: [100, 100000], points: 40}
  grades: {A: 40}
lifecycle: {mql: 50, handoff: {engagement: 70, min_grade: A}, recycle: 25}
"""
NEW_TEXT = TEXT.replace("points: 5,", "points: 8,")
OLD = parse_model(TEXT, "old.yaml")
NEW = parse_model(NEW_TEXT, "new.yaml")
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _viewed(lead: str) -> LeadState:
    event = BehaviorEvent(event_id=f"{lead}-1", type="page_view", lead_id=lead, occurred_at=AT)
    return apply(new_lead(lead), event, OLD)[0]


async def _store(*states: LeadState) -> MemoryLeadStore:
    store = MemoryLeadStore()
    await store.commit([Commit(s.lead_id, 0, encode_state(s), []) for s in states])
    return store


async def test_a_state_the_namespaces_model_built_has_no_warning() -> None:
    store = await _store(_viewed("lead-1"))
    await store.record_model(
        ModelRecord.first(OLD.model_version, TEXT, "old.yaml", 1.0), replacing=None
    )
    view = await explain_lead(store, OLD, "lead-1", AT.timestamp())
    assert view["model_version"] == OLD.model_version
    assert view["state_model_version"] == view["state_model"] == OLD.model_version
    assert view["namespace_model_version"] == OLD.model_version
    assert view["model_warning"] is None
    text = format_lead(view)
    assert f"built by    {OLD.model_version}" in text
    assert "warning" not in text


async def test_a_state_from_before_a_forward_only_switch_is_flagged() -> None:
    store = await _store(_viewed("lead-1"))
    first = ModelRecord.first(OLD.model_version, TEXT, "old.yaml", 1.0)
    await store.record_model(first, replacing=None)
    switched = first.changed_to(NEW.model_version, NEW_TEXT, "new.yaml", 2.0, "forward-only")
    await store.record_model(switched, replacing=OLD.model_version)
    view = await explain_lead(store, NEW, "lead-1", AT.timestamp())
    assert view["state_model_version"] == OLD.model_version
    assert view["namespace_model_version"] == NEW.model_version
    assert view["model_warning"] == (
        f"this state was built with model {OLD.model_version}, but the namespace's model is "
        f"now {NEW.model_version} (a forward-only switch): the events before it were scored "
        f"under {OLD.model_version} and are not rescored, later ones score under "
        f"{NEW.model_version}"
    )
    assert f"warning     this state was built with model {OLD.model_version}" in format_lead(view)


async def test_a_state_without_a_version_says_unknown() -> None:
    store = await _store(LeadState(lead_id="lead-old", clock=AT.timestamp()))
    view = await explain_lead(store, OLD, "lead-old", AT.timestamp())
    assert view["state_model_version"] is None
    assert (
        view["state_model"]
        == UNKNOWN_MODEL
        == ("unknown (written before model versions were recorded)")
    )
    assert view["namespace_model_version"] is None  # nothing recorded: the explaining model
    assert view["model_warning"] == (
        "the model that built this state is unknown (written before model versions were "
        f"recorded); the namespace's model is {OLD.model_version}"
    )
    assert f"built by    {UNKNOWN_MODEL}" in format_lead(view)


async def test_the_cli_explains_with_the_recorded_model_else_the_file(tmp_path: Path) -> None:
    store = MemoryLeadStore()
    path = tmp_path / "old.yaml"
    path.write_text(TEXT)
    settings = Settings(model_file=path)
    model, origin = await worker_model(store, settings)
    assert model == OLD
    assert origin == f"{path} (the namespace records no model)"
    await store.record_model(
        ModelRecord.first(NEW.model_version, NEW_TEXT, "/etc/new.yaml", 1765000000.0),
        replacing=None,
    )
    model, origin = await worker_model(store, settings)
    assert model == NEW
    assert origin == (
        "the namespace's recorded model (from /etc/new.yaml, recorded 2025-12-06 05:46:40 UTC)"
    )
    store.model_blob = b"{broken"
    model, origin = await worker_model(store, settings)
    assert model == OLD
    assert origin.startswith(f"{path} (the model record is not JSON: ")
