"""The AsyncAPI document: in sync with the models, complete, and valid draft-07 schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, Field

from leadpulse.schemas import json_schemas
from leadpulse.schemas.asyncapi import AsyncAPISchemaError, to_asyncapi_schemas
from leadpulse.streams.cli import main
from leadpulse.streams.cli.asyncapi import default_document, render
from leadpulse.streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "docs" / "asyncapi.yaml"
REGENERATE = "run `leadpulse asyncapi --output docs/asyncapi.yaml` and commit the result"

DRAFT_2020_ONLY = {"$defs", "prefixItems", "$dynamicRef", "unevaluatedProperties", "$anchor"}


def walk(node: Any, path: str = "#") -> list[tuple[str, Any]]:
    """Every (JSON pointer, value) under node, node included."""
    found = [(path, node)]
    if isinstance(node, dict):
        for key, value in node.items():
            found += walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += walk(value, f"{path}/{i}")
    return found


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_checked_in_document_is_up_to_date() -> None:
    expected = render(default_document(), "yaml")
    actual = CHECKED_IN.read_text(encoding="utf-8") if CHECKED_IN.exists() else ""
    assert actual == expected, f"docs/asyncapi.yaml is out of date: {REGENERATE}"


def test_document_names_every_topic_with_its_default_name_and_direction() -> None:
    doc = default_document()
    defaults = {
        name: Settings.model_fields[f"{name}_topic"].default
        for name in ("events", "handoffs", "transitions", "dlq")
    }
    defaults["deliveriesDlq"] = Settings.model_fields["deliveries_dlq_topic"].default
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] == "leadpulse"
    assert doc["servers"]["kafka"]["protocol"] == "kafka"
    assert {c: ch["address"] for c, ch in doc["channels"].items()} == defaults
    for channel in doc["channels"].values():
        assert "configurable" in channel["description"]
    actions = {op["channel"]["$ref"]: op["action"] for op in doc["operations"].values()}
    assert actions == {
        "#/channels/events": "receive",
        "#/channels/handoffs": "send",
        "#/channels/transitions": "send",
        "#/channels/dlq": "send",
        "#/channels/deliveriesDlq": "send",
    }
    feedback = {
        "SalesAcceptedEvent",
        "SalesRejectedEvent",
        "SalesQualifiedEvent",
        "QualificationEvent",
        "DisqualifiedEvent",
        "RequalifyEvent",
    }
    assert set(doc["components"]["messages"]) == set(json_schemas()) | feedback
    assert set(doc["channels"]["events"]["messages"]) == {"BehaviorEvent"} | feedback
    for message in doc["components"]["messages"].values():
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
        assert message["bindings"]["kafka"]["bindingVersion"] == "0.5.0"


def test_every_reference_resolves_and_no_draft_2020_keyword_is_left() -> None:
    doc = default_document()
    refs = [value for path, value in walk(doc) if path.endswith("/$ref")]
    assert refs
    for ref in refs:
        assert resolve(doc, ref) is not None, ref
    for path, _ in walk(doc["components"]["schemas"]):
        assert path.rsplit("/", 1)[-1] not in DRAFT_2020_ONLY, path


def test_component_schemas_are_the_models_schemas_with_their_defs_lifted() -> None:
    schemas = default_document()["components"]["schemas"]
    originals = json_schemas()
    for name, original in originals.items():
        lifted = json.dumps(schemas[name]).replace("#/components/schemas/", "#/$defs/")
        assert json.loads(lifted) == {k: v for k, v in original.items() if k != "$defs"}
        for def_name in original.get("$defs", {}):
            assert def_name in schemas


def test_yaml_and_json_forms_hold_the_same_document(tmp_path: Path, capsys: Any) -> None:
    assert main(["asyncapi", "--format", "json"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert main(["asyncapi"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == as_json == default_document()
    out = tmp_path / "asyncapi.yaml"
    assert main(["asyncapi", "--output", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == render(default_document(), "yaml")
    assert "&id" not in out.read_text(encoding="utf-8")  # no YAML anchors


class Part(BaseModel):
    n: int


class Tuples(BaseModel):
    pair: tuple[int, str]
    rest: tuple[int, ...]
    part: Part = Field(description="a $ref with a sibling")


def test_draft_2020_tuples_and_ref_siblings_are_rewritten_for_draft_07() -> None:
    out = to_asyncapi_schemas({"Tuples": Tuples.model_json_schema()})
    props = out["Tuples"]["properties"]
    assert props["pair"]["items"] == [{"type": "integer"}, {"type": "string"}]
    assert "prefixItems" not in props["pair"]
    assert props["rest"]["items"] == {"type": "integer"}
    assert props["part"]["allOf"] == [{"$ref": "#/components/schemas/Part"}]
    assert props["part"]["description"] == "a $ref with a sibling"
    assert out["Part"]["properties"]["n"] == {"title": "N", "type": "integer"}


def test_data_keywords_are_copied_not_rewritten() -> None:
    schema = {"type": "object", "default": {"$ref": "#/$defs/X"}, "enum": [{"prefixItems": 1}]}
    assert to_asyncapi_schemas({"M": schema})["M"] == schema


@pytest.mark.parametrize(
    ("schemas", "message"),
    [
        ({"A": {"unevaluatedProperties": False}}, "no draft-07 equivalent"),
        ({"A": {"$ref": "https://example.com/x.json"}}, "only references to $defs"),
        (
            {"A": {"$defs": {"X": {"type": "string"}}}, "B": {"$defs": {"X": {"type": "integer"}}}},
            "two different schemas are both named 'X'",
        ),
        ({"A": {"$defs": {"X[int]": {}}}}, "not a valid AsyncAPI component name"),
    ],
)
def test_what_cannot_be_converted_is_an_error(schemas: dict[str, Any], message: str) -> None:
    with pytest.raises(AsyncAPISchemaError, match=message.replace("[", r"\[").replace("$", r"\$")):
        to_asyncapi_schemas(schemas)
