"""`leadpulse asyncapi`: the AsyncAPI 3.0 document of every topic and message.

The document always shows the *default* topic names (the environment is not
read), so the checked-in docs/asyncapi.yaml is the same on every machine; its
descriptions say which LEADPULSE_* variable renames each topic.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from typing import Any

import yaml

from leadpulse.schemas.asyncapi import Topics, asyncapi_document
from leadpulse.streams.cli.common import EXIT_FAILED, EXIT_OK
from leadpulse.streams.settings import Settings, value_after_scheme

YAML_HEADER = (
    "# AsyncAPI document of leadpulse's Kafka topics. Generated from the models in schemas/:\n"
    "# do not edit; run `leadpulse asyncapi --output docs/asyncapi.yaml` instead.\n"
)


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


def default_document() -> dict[str, Any]:
    """The document for this release with the default topic names, broker and group."""
    topics = Topics(
        events=_default("events_topic"),
        handoffs=_default("handoffs_topic"),
        transitions=_default("transitions_topic"),
        dlq=_default("dlq_topic"),
        deliveries_dlq=_default("deliveries_dlq_topic"),
    )
    return asyncapi_document(
        version("leadpulse"),
        topics,
        consumer_group=_default("app_id"),
        host=value_after_scheme(_default("broker")),
    )


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line strings as literal blocks, never anchors or aliases."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(document: dict[str, Any], output_format: str) -> str:
    """The document as YAML (with a header comment) or JSON, ending in a newline."""
    if output_format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    body = yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)
    return YAML_HEADER + body


def cmd_asyncapi(args: argparse.Namespace) -> int:
    text = render(default_document(), args.format)
    if args.output is None or str(args.output) == "-":
        sys.stdout.write(text)
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as error:
        print(f"{args.output}: cannot write: {error.strerror}", file=sys.stderr)
        return EXIT_FAILED
    print(f"wrote {args.output}", file=sys.stderr)
    return EXIT_OK
