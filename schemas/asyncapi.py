"""An AsyncAPI 3.0 document of leadpulse's Kafka topics, built from the message models.

Pure: `asyncapi_document` returns a dict (what `leadpulse asyncapi` prints as YAML
or JSON); the caller supplies the version and the topic names. The payload
schemas are pydantic's JSON Schemas (`json_schemas`), made valid AsyncAPI Schema
objects (a superset of JSON Schema draft-07) by `to_asyncapi_schemas`: every
`$defs` entry becomes a `components.schemas` entry, `#/$defs/X` references become
`#/components/schemas/X`, and the few draft 2020-12 keywords pydantic may emit are
rewritten to their draft-07 form; a keyword with no draft-07 equivalent is an
error, so a model change can never produce a document the AsyncAPI parser rejects
without a failing test.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from leadpulse.schemas.feedback import FEEDBACK_MODELS
from leadpulse.schemas.json_schema import json_schemas

ASYNCAPI_VERSION: Final = "3.0.0"
KAFKA_BINDING_VERSION: Final = "0.5.0"
SCHEMA_REF_PREFIX: Final = "#/components/schemas/"
PYDANTIC_REF_PREFIX: Final = "#/$defs/"
COMPONENT_NAME: Final = re.compile(r"^[a-zA-Z0-9.\-_]+$")
"""What AsyncAPI 3.0 allows as a key of `components.*`."""

# Keywords whose value is one schema, a list of schemas, or a map of name -> schema;
# the values of every other keyword (enum, const, default, examples, ...) are data.
_ONE_SCHEMA: Final = frozenset(
    {
        "items",
        "additionalItems",
        "additionalProperties",
        "contains",
        "propertyNames",
        "not",
        "if",
        "then",
        "else",
    }
)
_SCHEMA_LIST: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP: Final = frozenset({"properties", "patternProperties"})
_NO_DRAFT_07_FORM: Final = frozenset(
    {
        "$anchor",
        "$dynamicAnchor",
        "$dynamicRef",
        "$recursiveAnchor",
        "$recursiveRef",
        "$vocabulary",
        "unevaluatedItems",
        "unevaluatedProperties",
        "minContains",
        "maxContains",
        "dependentRequired",
        "dependentSchemas",
        "definitions",
    }
)


class AsyncAPISchemaError(ValueError):
    """A JSON Schema that cannot be written as an AsyncAPI (draft-07) Schema object."""


@dataclass(frozen=True)
class Topics:
    """The five topic names (leadpulse's defaults unless configured otherwise)."""

    events: str
    handoffs: str
    transitions: str
    dlq: str
    deliveries_dlq: str


@dataclass(frozen=True)
class _Channel:
    id: str
    topic: str
    setting: str
    title: str
    description: str
    message: str
    action: str
    operation: str
    operation_title: str
    summary: str
    key: str
    more_messages: tuple[str, ...] = ()
    """Further messages of the channel (the feedback events on the events channel)."""


def to_asyncapi_schemas(schemas: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Name -> pydantic JSON Schema, as `components.schemas` (the models and their `$defs`).

    A `$defs` entry shared by several models (`RuleContribution`) appears once;
    two different schemas under one name are an `AsyncAPISchemaError`.
    """
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, schema: dict[str, Any], where: str) -> None:
        if not COMPONENT_NAME.match(name):
            raise AsyncAPISchemaError(f"{where}: {name!r} is not a valid AsyncAPI component name")
        if name in out and out[name] != schema:
            raise AsyncAPISchemaError(f"{where}: two different schemas are both named {name!r}")
        out[name] = schema

    for name, schema in schemas.items():
        top = dict(schema)
        defs = top.pop("$defs", {})
        for def_name, definition in defs.items():
            add(def_name, _convert(definition, f"{name}.$defs.{def_name}"), name)
        add(name, _convert(top, name), name)
    return out


def _convert(node: Any, where: str) -> Any:
    """One schema in its draft-07 form, references pointing into components.schemas."""
    if isinstance(node, bool):
        return node
    if not isinstance(node, Mapping):
        raise AsyncAPISchemaError(f"{where}: a schema must be an object or a boolean")
    out: dict[str, Any] = {}
    for keyword, value in node.items():
        at = f"{where}.{keyword}"
        if keyword in _NO_DRAFT_07_FORM:
            raise AsyncAPISchemaError(f"{at}: no draft-07 equivalent for {keyword!r}")
        if keyword == "$defs":
            raise AsyncAPISchemaError(f"{at}: nested $defs are not supported")
        if keyword == "$ref":
            out[keyword] = _reference(value, at)
        elif keyword in _ONE_SCHEMA:
            out[keyword] = _convert(value, at)
        elif keyword in _SCHEMA_LIST:
            out[keyword] = [_convert(item, f"{at}[{i}]") for i, item in enumerate(value)]
        elif keyword in _SCHEMA_MAP:
            out[keyword] = {name: _convert(s, f"{at}.{name}") for name, s in value.items()}
        elif keyword == "discriminator" and isinstance(value, Mapping):
            # OpenAPI's {propertyName, mapping}; AsyncAPI Schema takes the property name
            out[keyword] = value["propertyName"]
        else:
            out[keyword] = copy.deepcopy(value)
    if "prefixItems" in out:
        # draft 2020-12 tuples: prefixItems + items (the rest) -> items [...] + additionalItems
        prefix = out.pop("prefixItems")
        rest = out.pop("items", None)
        out["items"] = prefix
        if rest is not None:
            out["additionalItems"] = rest
    if not out:
        out["description"] = "Any JSON value."  # pydantic's JsonValue: {} reads as a mistake
    if "$ref" in out and len(out) > 1:
        # draft-07 ignores the siblings of $ref: keep them next to an allOf instead
        out["allOf"] = [{"$ref": out.pop("$ref")}, *out.get("allOf", [])]
    return out


def _reference(ref: Any, where: str) -> str:
    if not isinstance(ref, str) or not ref.startswith(PYDANTIC_REF_PREFIX):
        raise AsyncAPISchemaError(f"{where}: only references to $defs are supported, not {ref!r}")
    return SCHEMA_REF_PREFIX + ref.removeprefix(PYDANTIC_REF_PREFIX)


def _channels(topics: Topics) -> list[_Channel]:
    return [
        _Channel(
            id="events",
            topic=topics.events,
            setting="LEADPULSE_EVENTS_TOPIC",
            title="Behavioural events",
            description=(
                "Behavioural events from trackers, sales tools and the collector; the "
                "unit leadpulse scores. Events of one subject share a key, so they stay "
                "in order on one partition. Anything that fails validation is "
                "dead-lettered to the DLQ topic, and the worker keeps going."
            ),
            message="BehaviorEvent",
            action="receive",
            operation="receiveEvents",
            operation_title="Receive behavioural events",
            summary="The scoring worker consumes and scores every event.",
            key="The event's subject: its lead_id, else its anonymous_id (a UTF-8 string).",
            more_messages=tuple(_feedback_message(kind) for kind in FEEDBACK_MODELS),
        ),
        _Channel(
            id="handoffs",
            topic=topics.handoffs,
            setting="LEADPULSE_HANDOFFS_TOPIC",
            title="MQL-to-SAL handoffs",
            description=(
                "A lead crossed from MQL to SAL: who, how hot, how good a fit and why. "
                "`handoff_id` is deterministic for one crossing (it equals the "
                "transition's id), so consumers can de-duplicate redeliveries."
            ),
            message="Handoff",
            action="send",
            operation="sendHandoffs",
            operation_title="Send MQL-to-SAL handoffs",
            summary="The worker publishes a handoff when a lead becomes sales-accepted.",
            key="The lead id (a UTF-8 string), the handoff's lead_id.",
        ),
        _Channel(
            id="transitions",
            topic=topics.transitions,
            setting="LEADPULSE_TRANSITIONS_TOPIC",
            title="Funnel stage transitions",
            description=(
                "Every move of a lead between funnel stages (handoffs included), for CRM "
                "sync and audit; `transition_id` de-duplicates redeliveries."
            ),
            message="StageTransition",
            action="send",
            operation="sendTransitions",
            operation_title="Send stage transitions",
            summary="The worker publishes every stage transition it decides.",
            key="The lead id (a UTF-8 string), the transition's lead_id.",
        ),
        _Channel(
            id="dlq",
            topic=topics.dlq,
            setting="LEADPULSE_DLQ_TOPIC",
            title="Dead letters",
            description=(
                "Whatever leadpulse could never process, kept whole with the reason: "
                "records that do not decode (the original bytes, base64 when not UTF-8, "
                "with their source topic, partition and offset), a lead's events whose "
                "stored state cannot be read, messages the broker refused (a handoff "
                "too large), and the collector's rejected messages. Fix and replay."
            ),
            message="DeadLetter",
            action="send",
            operation="sendDeadLetters",
            operation_title="Send dead letters",
            summary="The worker and the collector dead-letter what they cannot process.",
            key=(
                "The key of the rejected record as received (a UTF-8 string; "
                "`base64:...` when it was not UTF-8; empty when it had none); for the "
                "collector's rejects, the message's messageId, else the source name."
            ),
        ),
        _Channel(
            id="deliveriesDlq",
            topic=topics.deliveries_dlq,
            setting="LEADPULSE_DELIVERIES_DLQ_TOPIC",
            title="Exhausted webhook deliveries",
            description=(
                "A handoff or transition one destination of `leadpulse deliver` never "
                "accepted: every attempt failed (or the answer was a permanent failure), "
                "so it is kept here with each attempt's time, HTTP status and error, and "
                "the message itself. Fix the destination and replay."
            ),
            message="DeliveryFailure",
            action="send",
            operation="sendDeliveryFailures",
            operation_title="Send exhausted deliveries",
            summary="The deliverer publishes a delivery whose last attempt failed.",
            key="The lead id (a UTF-8 string), the failure's lead_id.",
        ),
    ]


def _feedback_message(kind: str) -> str:
    """`sales_accepted` -> `SalesAcceptedEvent`: the message name of a feedback type."""
    return "".join(part.capitalize() for part in kind.split("_")) + "Event"


def _feedback_schemas() -> dict[str, dict[str, Any]]:
    """Each feedback type as a BehaviorEvent whose `type` and `properties` are fixed."""
    out: dict[str, dict[str, Any]] = {}
    for kind, model in FEEDBACK_MODELS.items():
        schema = model.model_json_schema()
        properties_name = schema.get("title", model.__name__) + "Properties"
        out[properties_name] = schema
        out[_feedback_message(kind)] = {
            "title": _feedback_message(kind),
            "description": (
                f"A `{kind}` feedback event: a BehaviorEvent with type `{kind}` whose "
                "properties are checked at decode; only trusted sources (a sales write "
                "key, the operator's own integration) may send it."
            ),
            "allOf": [
                {"$ref": PYDANTIC_REF_PREFIX + "BehaviorEvent"},
                {
                    "type": "object",
                    "required": ["type", "properties"],
                    "properties": {
                        "type": {"const": kind},
                        "properties": {"$ref": PYDANTIC_REF_PREFIX + properties_name},
                    },
                },
            ],
        }
    return out


_MESSAGE_TITLES: Final = {
    "BehaviorEvent": "Behavioural event",
    "Handoff": "MQL-to-SAL handoff",
    "StageTransition": "Stage transition",
    "DeadLetter": "Dead letter",
    "DeliveryFailure": "Exhausted delivery",
    **{_feedback_message(kind): f"Feedback: {kind}" for kind in FEEDBACK_MODELS},
}


def asyncapi_document(
    version: str,
    topics: Topics,
    *,
    consumer_group: str = "leadpulse",
    host: str,
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document of every leadpulse topic and message."""
    schemas = {**json_schemas(), **_feedback_schemas()}
    channels = _channels(topics)
    components_schemas = to_asyncapi_schemas(schemas)
    messages: dict[str, Any] = {}
    for channel in channels:
        for name in (channel.message, *channel.more_messages):
            summary = str(schemas[name].get("description", "")).split("\n", 1)[0]
            messages[name] = {
                "name": name,
                "title": _MESSAGE_TITLES[name],
                "summary": summary,
                "contentType": "application/json",
                "payload": {"$ref": SCHEMA_REF_PREFIX + name},
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": channel.key},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                },
            }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": "leadpulse",
            "version": version,
            "description": _INFO_DESCRIPTION,
            "license": {
                "name": "Apache-2.0",
                "url": "https://www.apache.org/licenses/LICENSE-2.0",
            },
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": host,
                "protocol": "kafka",
                "title": "Kafka cluster",
                "description": (
                    f"A placeholder: leadpulse connects to the bootstrap servers in "
                    f"LEADPULSE_BROKER (default `{host}`). TLS and SASL come from "
                    "LEADPULSE_KAFKA_SECURITY_PROTOCOL, LEADPULSE_KAFKA_SASL_* and "
                    "LEADPULSE_KAFKA_SSL_CAFILE."
                ),
            }
        },
        "channels": {
            c.id: {
                "address": c.topic,
                "title": c.title,
                "description": (
                    c.description + " " + _CONFIGURABLE.format(setting=c.setting, topic=c.topic)
                ),
                "messages": {
                    name: {"$ref": f"#/components/messages/{name}"}
                    for name in (c.message, *c.more_messages)
                },
            }
            for c in channels
        },
        "operations": {
            c.operation: {
                "action": c.action,
                "channel": {"$ref": f"#/channels/{c.id}"},
                "title": c.operation_title,
                "summary": c.summary,
                "messages": [
                    {"$ref": f"#/channels/{c.id}/messages/{name}"}
                    for name in (c.message, *c.more_messages)
                ],
                **(
                    {
                        "bindings": {
                            "kafka": {
                                "groupId": {
                                    "type": "string",
                                    "enum": [consumer_group],
                                    "description": "The consumer group: LEADPULSE_APP_ID.",
                                },
                                "bindingVersion": KAFKA_BINDING_VERSION,
                            }
                        }
                    }
                    if c.action == "receive"
                    else {}
                ),
            }
            for c in channels
        },
        "components": {"messages": messages, "schemas": components_schemas},
    }


_CONFIGURABLE: Final = "The topic name is configurable: {setting} (default `{topic}`)."

_INFO_DESCRIPTION: Final = """\
Real-time behavioural lead scoring on Kafka: behavioural events in, decaying \
engagement scores, fit grades and funnel stages in Redis, stage transitions and \
MQL-to-SAL handoffs out, a dead-letter topic for whatever cannot be processed, \
and one for webhook deliveries that were exhausted.

Every message is UTF-8 JSON; its key is a UTF-8 string (the lead id, or for events \
the lead id else the anonymous id), so one lead's messages stay in order on one \
partition. The channels show the default topic names; each is configurable \
(LEADPULSE_EVENTS_TOPIC, LEADPULSE_HANDOFFS_TOPIC, LEADPULSE_TRANSITIONS_TOPIC, \
LEADPULSE_DLQ_TOPIC, LEADPULSE_DELIVERIES_DLQ_TOPIC), and `leadpulse worker` \
creates missing topics with LEADPULSE_PARTITIONS partitions.

Events usually arrive through the collector (`leadpulse collect`), an HTTP service \
compatible with the Segment HTTP Tracking API that tracker SDKs post to; it produces \
accepted messages to the events topic and dead-letters the rejected ones. The HTTP \
API itself is not part of this document: only the Kafka topics are. \
`leadpulse send` produces events from a JSON-lines file. Sales tools answer \
handoffs with feedback events (sales_accepted, sales_rejected, qualification, \
disqualified, requalify) on the events channel; `leadpulse deliver` posts handoffs \
to webhooks and dead-letters the deliveries it could not complete.

Generated from the pydantic models in `schemas/` by \
`leadpulse asyncapi`; `leadpulse schema` prints the same JSON Schemas.
"""
