"""The namespace's model record: its stored encoding, its history, loading its model."""

from __future__ import annotations

import json
import re
from importlib.resources import files

import pytest

from leadpulse.scoring import default_model
from leadpulse.streams.store.models import (
    FIRST_START,
    FORWARD_ONLY,
    MODEL_HISTORY,
    ModelChange,
    ModelRecord,
    ModelRecordError,
    decode_model_record,
    encode_model_record,
)

SHIPPED_TEXT = files("leadpulse.scoring").joinpath("default_model.yaml").read_text("utf-8")
RECORD = ModelRecord.first("t-1+aaaaaaaaaaaa", "version: t-1\n", "/m/a.yaml", 1765000000.5)


def test_the_stored_encoding_is_pinned() -> None:
    assert encode_model_record(RECORD) == (
        b'{"format":1,"version":"t-1+aaaaaaaaaaaa","source":"version: t-1\\n",'
        b'"origin":"/m/a.yaml","recorded_at":1765000000.5,"history":[{"from_version":null,'
        b'"to_version":"t-1+aaaaaaaaaaaa","at":1765000000.5,"mode":"first-start"}]}'
    )
    assert decode_model_record(encode_model_record(RECORD)) == RECORD


def test_a_change_appends_to_the_history_and_keeps_the_last() -> None:
    record = RECORD
    for n in range(MODEL_HISTORY + 5):
        record = record.changed_to(f"t-{n}+x", f"version: t-{n}\n", "b.yaml", 2.0 + n, FORWARD_ONLY)
    assert len(record.history) == MODEL_HISTORY == 50
    assert record.history[-1] == ModelChange(
        from_version="t-53+x", to_version="t-54+x", at=56.0, mode=FORWARD_ONLY
    )
    assert record.history[0].to_version == "t-5+x"  # the first start and 4 more were dropped
    assert (record.version, record.source, record.recorded_at) == (
        "t-54+x",
        "version: t-54\n",
        56.0,
    )
    assert RECORD.history == (
        ModelChange(
            from_version=None, to_version="t-1+aaaaaaaaaaaa", at=1765000000.5, mode=FIRST_START
        ),
    )


def test_a_newer_releases_fields_are_ignored() -> None:
    newer = json.loads(encode_model_record(RECORD))
    newer.update(format=2, namespace_of="green", history=[{**newer["history"][0], "by": "x"}])
    assert decode_model_record(json.dumps(newer).encode()) == RECORD


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"{oops", "the model record is not JSON"),
        (b"[1]", "the model record is a JSON list"),
        (b'{"version":"v"}', "unknown model record format None"),
        (b'{"format":0}', "unknown model record format 0"),
        (b'{"format":true}', "unknown model record format True"),
        (b'{"format":1,"version":"v","source":"s","origin":"o"}', "recorded_at: Field required"),
        (
            b'{"format":1,"version":"","source":"s","origin":"o","recorded_at":1}',
            "version: String should have at least 1 character",
        ),
        (
            b'{"format":1,"version":"v","source":"s","origin":"o","recorded_at":1,'
            b'"history":[{"from_version":null,"to_version":"v","at":1,"mode":"rescored"}]}',
            "history.0.mode",
        ),
    ],
)
def test_a_bad_record_says_what_is_wrong(blob: bytes, reason: str) -> None:
    with pytest.raises(ModelRecordError, match=reason.replace("(", r"\(")):
        decode_model_record(blob)


def test_the_recorded_model_loads_from_its_text() -> None:
    text = "version: '1'\n"  # no engagement, fit, lifecycle: not a model
    with pytest.raises(ModelRecordError, match="the recorded model v-1 does not load: "):
        ModelRecord.first("v-1", text, "x.yaml", 1.0).model()
    shipped = default_model()
    record = ModelRecord.first(shipped.model_version, SHIPPED_TEXT, "default_model.yaml", 1.0)
    model = record.model()
    assert model == shipped
    assert model.source == f"default_model.yaml (recorded {shipped.model_version})"


def test_a_text_that_gives_another_version_is_refused() -> None:
    base = default_model()
    record = ModelRecord.first("not-" + base.model_version, SHIPPED_TEXT, "d.yaml", 1.0)
    expected = re.escape(f"gives version {base.model_version}, not the recorded not-")
    with pytest.raises(ModelRecordError, match=expected):
        record.model()
