"""The argument parser: every command, its flags and its help."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from leadpulse.streams.cli import dlq
from leadpulse.streams.cli.apply import add_parsers as add_apply_parsers
from leadpulse.streams.cli.asyncapi import cmd_asyncapi
from leadpulse.streams.cli.collect import cmd_collect
from leadpulse.streams.cli.deliver import cmd_deliver
from leadpulse.streams.cli.dev import cmd_demo, cmd_dev
from leadpulse.streams.cli.feed import cmd_send, cmd_tail
from leadpulse.streams.cli.inspect import cmd_lead
from leadpulse.streams.cli.model import cmd_model_check, cmd_schema
from leadpulse.streams.cli.run import cmd_worker
from leadpulse.streams.cli.whatif import add_parser as add_whatif_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="leadpulse",
        description=(
            "Real-time behavioural lead scoring: Kafka events in, decaying scores in Redis, "
            "MQL-to-SAL handoffs out. Settings come from LEADPULSE_* environment variables; "
            "flags override them."
        ),
        epilog="Start with `leadpulse demo`, or `leadpulse dev` to run the embedded stack.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run_commands(sub)
    _add_tool_commands(sub)
    return parser


def _add_run_commands(sub: Any) -> None:
    p = sub.add_parser("worker", help="run the scoring worker (Faust) against Kafka and Redis")
    p.add_argument("--model", type=Path, help="scoring model YAML (default: the shipped model)")
    p.add_argument(
        "--web-port",
        type=int,
        help="HTTP port of the API, the /ui page, /health and /metrics (6066); "
        "the API and the page need LEADPULSE_API_TOKENS",
    )
    p.add_argument("--data-dir", type=Path, help="worker data directory (.leadpulse)")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--create-topics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create missing topics with LEADPULSE_PARTITIONS partitions first",
    )
    p.add_argument(
        "--forward-only",
        action="store_true",
        default=None,
        help="start even if the namespace's states were built with another model version: "
        "keep them and score new events under this model, history not rescored; logged and "
        "recorded (LEADPULSE_FORWARD_ONLY=1). Without it such a worker refuses to start",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "collect",
        help="run the Segment-compatible HTTP collector that tracker SDKs post to",
        description=(
            "Serves the Segment HTTP Tracking API (/v1/batch, /v1/track, /v1/identify, "
            "/v1/page, /v1/screen, /v1/group, /v1/alias and analytics.js' short paths) and "
            "produces every accepted message to the events topic before answering 200. "
            "Point an SDK at it: segment-analytics-python host=URL, rudder-sdk-python "
            "dataPlaneUrl=URL, analytics.js apiHost=HOST:PORT/v1. Write keys come from "
            "LEADPULSE_WRITE_KEYS=SOURCE=KEY,...; sources in LEADPULSE_SALES_SOURCES may "
            "send sales-only events."
        ),
        epilog="Also: GET /health and /ready on --port; /metrics and /stats (and /health, "
        "/ready) on --metrics-port only. Limits, rate, CORS origins, timeouts: "
        "LEADPULSE_COLLECTOR_* variables (see README).",
    )
    p.add_argument("--host", help="bind address (LEADPULSE_COLLECTOR_HOST, 127.0.0.1)")
    p.add_argument(
        "--port",
        type=int,
        help="public ingest port: Segment API, /health, /ready (LEADPULSE_COLLECTOR_PORT, 8088)",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        help="port of /metrics and /stats (LEADPULSE_COLLECTOR_METRICS_PORT, 9108); "
        "bound to LEADPULSE_COLLECTOR_METRICS_HOST, default the --host",
    )
    p.add_argument("--model", type=Path, help="model YAML whose `events:` maps track names")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--create-topics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create missing topics first (if the broker is reachable)",
    )
    p.add_argument("--new-key", action="store_true", help="print a fresh random write key, exit")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser(
        "deliver",
        help="send handoffs to webhooks, Slack and CRMs (signed, retried, in its own process)",
        description=(
            "Consumes the handoffs topic (and the transitions topic if a destination wants "
            "it) in consumer group LEADPULSE_DELIVER_GROUP (<app_id>-deliver) and POSTs each "
            "message to every destination of the destinations file that wants it: Standard "
            "Webhooks signed JSON or a Slack message. Failed attempts are retried from Redis "
            "on the destination's retry_schedule; exhausted ones go to "
            "LEADPULSE_DELIVERIES_DLQ_TOPIC. A destination answering 410 is disabled."
        ),
        epilog="Also: GET /health, /ready and /metrics on --web-port. The file format: "
        "README, 'Delivering handoffs'.",
    )
    p.add_argument(
        "--destinations",
        type=Path,
        help="destinations YAML (LEADPULSE_DESTINATIONS_FILE)",
    )
    p.add_argument("--web-port", type=int, help="HTTP port for /health, /ready, /metrics (6067)")
    p.add_argument(
        "--test",
        metavar="NAME",
        help="send one signed sample handoff to destination NAME, print the answer, exit",
    )
    p.add_argument(
        "--enable",
        metavar="NAME",
        help="enable destination NAME again after it answered 410 (its parked messages go out)",
    )
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--create-topics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create missing topics first (if the broker is reachable)",
    )
    p.set_defaults(func=cmd_deliver)

    p = sub.add_parser(
        "dev",
        help="start the embedded stack (Tansu broker + redis-server), a worker and a collector",
        description=(
            "Embedded stack for development: Tansu, redis-server, a scoring worker and the "
            "Segment-compatible collector; prints their addresses, a `website` write key "
            "for trackers, a `crm` one trusted for sales feedback, an admin API token and "
            "the live page's sign-in link. Ctrl-C stops everything."
        ),
    )
    p.add_argument("--kafka-port", type=int, help="broker port (default: a free port)")
    p.add_argument("--redis-port", type=int, help="redis-server port (default: a free port)")
    p.add_argument("--model", type=Path, help="scoring model YAML")
    p.add_argument("--web-port", type=int, default=6066, help="worker HTTP port (6066)")
    p.add_argument("--collector-port", type=int, default=8088, help="collector HTTP port (8088)")
    p.add_argument(
        "--collector-metrics-port",
        type=int,
        default=9108,
        help="collector /metrics and /stats port (9108)",
    )
    p.add_argument(
        "--destinations",
        type=Path,
        help="destinations YAML: also start `leadpulse deliver` beside the worker",
    )
    p.add_argument("--deliver-port", type=int, default=6067, help="deliverer HTTP port (6067)")
    p.add_argument(
        "--data-dir",
        default=".leadpulse/dev",
        help="data directory: worker state, logs, the dev write keys and API token "
        "(.leadpulse/dev)",
    )
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--forward-only",
        action="store_true",
        default=None,
        help="pass --forward-only to the worker: start with an edited model although the "
        "states were built with another version (see `leadpulse worker --help`)",
    )
    p.set_defaults(func=cmd_dev)


def _add_tool_commands(sub: Any) -> None:
    p = sub.add_parser(
        "send",
        help="validate and produce events from a JSON-lines file or stdin",
        description="Every line is validated first; invalid lines are reported with their number.",
    )
    p.add_argument("file", nargs="?", help="JSON-lines file (default or '-': stdin)")
    p.add_argument("--broker", help="bootstrap server, e.g. 127.0.0.1:9092")
    p.add_argument("--topic", help="topic (default: the events topic)")
    p.add_argument(
        "--skip-invalid", action="store_true", help="send the valid lines even if some are bad"
    )
    p.set_defaults(func=cmd_send)

    p = sub.add_parser(
        "tail",
        help="print messages of a topic readably (handoffs, transitions, dlq, events, or a name)",
    )
    p.add_argument("topic", help="handoffs | transitions | dlq | events | any topic name")
    p.add_argument("--broker", help="bootstrap server, e.g. 127.0.0.1:9092")
    p.add_argument("--from-beginning", action="store_true", help="start at the oldest message")
    p.add_argument("--max", type=int, default=0, help="stop after N messages")
    p.add_argument("--timeout", type=float, default=0, help="stop after N idle seconds")
    p.add_argument("--json", action="store_true", help="print the raw JSON")
    p.set_defaults(func=cmd_tail)

    dlq.add_parser(sub)

    p = sub.add_parser("lead", help="show a lead's score, grade, stage and why, from Redis")
    p.add_argument("lead_id")
    p.add_argument("--redis-url", help="Redis URL (default: LEADPULSE_REDIS_URL)")
    p.add_argument(
        "--model",
        type=Path,
        help="model YAML to explain with when the namespace records no model (the worker's "
        "recorded model is used otherwise)",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_lead)

    p = sub.add_parser(
        "demo",
        help="embedded stack + worker + a simulated funnel; prints handoffs live",
        description=(
            "Starts Tansu and redis-server, a worker, and simulates a few hundred leads "
            "over compressed time (half-lives of seconds), printing handoffs and recycles "
            "as they happen and a summary at the end. A simulated sales team answers the "
            "handoffs through the collector's sales key, by who each lead really is: buyers "
            "accepted and qualified to SQL by the model's framework, evaluators accepted or "
            "rejected as not ready, students and job seekers rejected, some handoffs never "
            "answered; the same answers for the same --seed. The summary counts them and "
            "checks that the worker applied every one."
        ),
    )
    p.add_argument("--leads", type=int, default=300, help="simulated leads (300)")
    p.add_argument("--duration", type=float, default=45.0, help="seconds of traffic (45)")
    p.add_argument("--seed", type=int, default=7, help="random seed (7)")
    p.add_argument("--model", type=Path, help="model YAML (default: the compressed demo model)")
    p.add_argument(
        "--no-sales",
        dest="sales",
        action="store_false",
        help="do not simulate sales answering the handoffs (no feedback events)",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="after the summary keep the stack running until Ctrl-C and print its export "
        "lines: look around the pages, or try `leadpulse model whatif` on the demo's history",
    )
    p.add_argument("--kafka-port", type=int)
    p.add_argument("--redis-port", type=int)
    p.set_defaults(func=cmd_demo)

    model = sub.add_parser("model", help="work with scoring model files")
    model_sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    p = model_sub.add_parser(
        "check", help="validate a model file; print a summary or the errors (exit 0/1)"
    )
    p.add_argument("file", type=Path)
    p.set_defaults(func=cmd_model_check)
    add_whatif_parser(model_sub)
    add_apply_parsers(model_sub)

    p = sub.add_parser("schema", help="print the JSON Schema of the wire messages")
    p.add_argument(
        "message",
        nargs="?",
        help="BehaviorEvent | StageTransition | Handoff | DeadLetter, or a feedback type "
        "(sales_accepted, sales_rejected, qualification, ...): the properties it needs",
    )
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser(
        "asyncapi",
        help="print the AsyncAPI 3.0 document of every topic and message (YAML)",
        description="Kafka topics only; the default topic names, each configurable.",
    )
    p.add_argument("--output", type=Path, help="write to FILE instead of stdout")
    p.add_argument("--format", choices=["yaml", "json"], default="yaml", help="(yaml)")
    p.set_defaults(func=cmd_asyncapi)
