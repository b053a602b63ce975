"""`leadpulse` command line: run, feed, watch and inspect the scorer."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError

from schemas import DecodeError, decode, decode_event, json_schemas
from schemas.messages import DeadLetter, Handoff, StageTransition
from scoring import ModelError, ScoringModel, default_model, load_model, summary
from streams.settings import Settings
from streams.workerproc import stop_process, worker_command

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

TOPIC_ALIASES = {
    "events": "events_topic",
    "handoffs": "handoffs_topic",
    "transitions": "transitions_topic",
    "dlq": "dlq_topic",
}


def _settings(**overrides: Any) -> Settings:
    """Environment settings with CLI flags on top (flags win)."""
    try:
        base = Settings()
    except ValidationError as error:
        raise SystemExit(f"leadpulse: bad LEADPULSE_* environment: {error}") from None
    values = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=values) if values else base


def _model(settings: Settings) -> ScoringModel:
    try:
        return load_model(settings.model_file) if settings.model_file else default_model()
    except ModelError as error:
        raise SystemExit("leadpulse: model file rejected:\n" + "\n".join(error.issues)) from None
    except OSError as error:
        raise SystemExit(f"leadpulse: cannot read model file: {error}") from None


# -- model / schema -------------------------------------------------------------------


def cmd_model_check(args: argparse.Namespace) -> int:
    try:
        model = load_model(args.file)
    except ModelError as error:
        for issue in error.issues:
            print(issue, file=sys.stderr)
        print(f"{args.file}: {len(error.issues)} problem(s); model rejected", file=sys.stderr)
        return EXIT_FAILED
    except OSError as error:
        print(f"{args.file}: cannot read: {error.strerror}", file=sys.stderr)
        return EXIT_FAILED
    print(summary(model))
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    schemas = json_schemas()
    if args.message:
        if args.message not in schemas:
            print(f"unknown message {args.message!r}; one of {', '.join(schemas)}", file=sys.stderr)
            return EXIT_USAGE
        print(json.dumps(schemas[args.message], indent=2))
    else:
        print(json.dumps(schemas, indent=2))
    return EXIT_OK


# -- worker / dev ---------------------------------------------------------------------


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _settings(model_file=args.model, web_port=args.web_port, data_dir=args.data_dir)
    model = _model(settings)
    if args.create_topics:
        import concurrent.futures

        from streams.topics import ensure_topics

        # kafka-python 3's admin client sets an asyncio event loop on the calling
        # thread; the Faust worker started after it on that thread exits at once
        # (status 1, no log). A short-lived thread keeps that loop away from it.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(ensure_topics, settings).result()
    run_worker(settings, model, loglevel=args.loglevel)
    return EXIT_OK


def run_worker(settings: Settings, model: ScoringModel, *, loglevel: str = "info") -> None:
    """Run the Faust worker in this process until SIGINT/SIGTERM."""
    import faust

    from streams.app import build, freeze_heap

    # faust.Worker chdirs into workdir and exits with status 1, silently, if it is missing
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    pipeline = build(settings, model)
    worker = faust.Worker(
        pipeline.app,
        loglevel=loglevel,
        loop=_event_loop(),
        redirect_stdouts=False,
        workdir=str(settings.data_dir),
    )
    freeze_heap()
    worker.execute_from_commandline()


def _event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def cmd_dev(args: argparse.Namespace) -> int:
    from streams.devstack import DevStack

    settings = _settings(model_file=args.model)
    _model(settings)  # reject a bad model before starting anything
    stack = DevStack(args.kafka_port, args.redis_port, topics=_topic_partitions(settings))
    print("starting Tansu broker and redis-server ...", flush=True)
    with stack:
        settings = settings.model_copy(
            update={
                "broker": f"kafka://{stack.bootstrap}",
                "redis_url": stack.redis_url,
                "web_port": args.web_port,
                "data_dir": Path(args.data_dir),
                "session_timeout": 2.0,  # Tansu joins a group in about half of it
            }
        )
        for name, value in stack.describe().items():
            print(f"  {name:10} {value}")
        print(f"  {'http':10} http://{settings.web_host}:{settings.web_port}/stats")
        print(f"\n  export LEADPULSE_BROKER=kafka://{stack.bootstrap}")
        print(f"  export LEADPULSE_REDIS_URL={stack.redis_url}\n", flush=True)
        argv, env = worker_command(settings, "--loglevel", args.loglevel)
        worker = subprocess.Popen(argv, env=env)
        try:
            return worker.wait()
        except KeyboardInterrupt:
            print("\nstopping worker ...", flush=True)
            stop_process(worker)
            return EXIT_OK
        finally:
            stop_process(worker)


def _topic_partitions(settings: Settings) -> dict[str, int]:
    return {
        settings.events_topic: settings.partitions,
        settings.handoffs_topic: settings.partitions,
        settings.transitions_topic: settings.partitions,
        settings.dlq_topic: settings.partitions,
    }


# -- send / tail ----------------------------------------------------------------------


def _read_lines(source: IO[str]) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, start=1):
        if line.strip():
            yield number, line


def cmd_send(args: argparse.Namespace) -> int:
    from kafka import KafkaProducer

    settings = _settings(broker=args.broker)
    topic = args.topic or settings.events_topic
    source = sys.stdin if args.file in (None, "-") else Path(args.file).open(encoding="utf-8")  # noqa: SIM115
    now = datetime.now(UTC)
    valid: list[tuple[bytes, bytes]] = []
    bad = 0
    with source:
        for number, line in _read_lines(source):
            try:
                event = decode_event(line, now=now)
            except DecodeError as error:
                bad += 1
                print(f"line {number}: {error.reason}", file=sys.stderr)
                continue
            valid.append((event.subject.encode(), line.strip().encode()))
    if bad and not args.skip_invalid:
        print(
            f"{bad} invalid line(s); nothing sent (use --skip-invalid to send the rest)",
            file=sys.stderr,
        )
        return EXIT_FAILED
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all", linger_ms=5)
    try:
        for key, value in valid:
            producer.send(topic, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=5)
    print(f"sent {len(valid)} event(s) to {topic}" + (f"; skipped {bad} invalid" if bad else ""))
    return EXIT_OK


def describe_message(topic_kind: str, value: bytes) -> str:
    """One readable line per handoff / transition / dead letter."""
    try:
        if topic_kind == "handoffs":
            h = decode(value, Handoff)
            why = ", ".join(f"{r.rule} {r.points:+.1f}" for r in h.reasons[:3])
            return (
                f"{h.occurred_at:%Y-%m-%d %H:%M:%S}  HANDOFF  {h.lead_id}  engagement "
                f"{h.engagement:.1f}  fit {h.fit:.0f} ({h.grade})  why: {why}"
            )
        if topic_kind == "transitions":
            t = decode(value, StageTransition)
            cause = f"event {t.event_id}" if t.event_id else "decay"
            return (
                f"{t.occurred_at:%Y-%m-%d %H:%M:%S}  {t.lead_id}  {t.from_stage.upper()} -> "
                f"{t.to_stage.upper()}  engagement {t.engagement:.1f}  grade {t.grade}  ({cause})"
            )
        if topic_kind == "dlq":
            d = decode(value, DeadLetter)
            return (
                f"{d.failed_at:%Y-%m-%d %H:%M:%S}  DLQ  {d.source_topic}[{d.source_partition}]"
                f"@{d.source_offset}  {d.reason}"
            )
    except DecodeError:
        pass
    return value.decode("utf-8", errors="replace")


def cmd_tail(args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer

    settings = _settings(broker=args.broker)
    kind = args.topic if args.topic in TOPIC_ALIASES else "raw"
    topic = getattr(settings, TOPIC_ALIASES[args.topic]) if kind != "raw" else args.topic
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=settings.bootstrap_servers,
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
        consumer_timeout_ms=int(args.timeout * 1000) if args.timeout else float("inf"),
    )
    shown = 0
    try:
        for message in consumer:
            if args.json:
                print(message.value.decode("utf-8", errors="replace"), flush=True)
            else:
                print(describe_message(kind, message.value), flush=True)
            shown += 1
            if args.max and shown >= args.max:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return EXIT_OK


# -- lead -----------------------------------------------------------------------------


def cmd_lead(args: argparse.Namespace) -> int:
    settings = _settings(redis_url=args.redis_url, model_file=args.model)
    model = _model(settings)
    view = asyncio.run(_lead_view(settings, model, args.lead_id))
    if args.json:
        print(json.dumps(view, indent=2))
    else:
        print(format_lead(view))
    return EXIT_OK if view.get("found", True) else EXIT_FAILED


async def _lead_view(settings: Settings, model: ScoringModel, lead_id: str) -> dict[str, Any]:
    from streams.store_redis import RedisLeadStore, connect
    from streams.views import explain_lead

    store = RedisLeadStore(connect(settings), due_shards=settings.due_shards)
    try:
        return await explain_lead(store, model, lead_id, time.time())
    finally:
        await store.close()


def format_lead(view: dict[str, Any]) -> str:
    if "merged_into" in view:
        return f"{view['lead_id']} was merged into {view['merged_into']}\n" + format_lead(
            view["lead"]
        )
    if not view.get("found"):
        return f"{view['lead_id']}: no such lead"
    e = view["explanation"]
    lines = [
        f"lead        {view['lead_id']}" + ("  (anonymous)" if view["anonymous"] else ""),
        f"stage       {str(e['stage']).upper()}",
        f"engagement  {e['engagement']:.2f}",
        f"fit         {e['fit']:.0f}  grade {e['grade']}",
        f"model       {view['model_version']}",
        "why (engagement, decayed to now):",
    ]
    lines.extend(f"  {p['rule']:28} {p['points']:+9.2f}" for p in e["parts"])
    if e.get("fit_parts"):
        lines.append("fit:")
        lines.extend(f"  {p['rule']:28} {p['points']:+9.0f}" for p in e["fit_parts"])
    return "\n".join(lines)


# -- demo -----------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import DemoOptions, run_demo

    return run_demo(
        DemoOptions(
            leads=args.leads,
            duration=args.duration,
            seed=args.seed,
            model_file=args.model,
            kafka_port=args.kafka_port,
            redis_port=args.redis_port,
        )
    )


# -- parser ---------------------------------------------------------------------------


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
    p.add_argument("--web-port", type=int, help="HTTP port for /stats and /leads/ID (6066)")
    p.add_argument("--data-dir", type=Path, help="worker data directory (.leadpulse)")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument(
        "--create-topics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="create missing topics with LEADPULSE_PARTITIONS partitions first",
    )
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser(
        "dev",
        help="start the embedded stack (Tansu broker + redis-server) and a worker",
        description="Embedded stack for development: Ctrl-C stops everything.",
    )
    p.add_argument("--kafka-port", type=int, help="broker port (default: a free port)")
    p.add_argument("--redis-port", type=int, help="redis-server port (default: a free port)")
    p.add_argument("--model", type=Path, help="scoring model YAML")
    p.add_argument("--web-port", type=int, default=6066, help="worker HTTP port (6066)")
    p.add_argument("--data-dir", default=".leadpulse/dev", help="worker data directory")
    p.add_argument("--loglevel", default="info", choices=["debug", "info", "warning", "error"])
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

    p = sub.add_parser("lead", help="show a lead's score, grade, stage and why, from Redis")
    p.add_argument("lead_id")
    p.add_argument("--redis-url", help="Redis URL (default: LEADPULSE_REDIS_URL)")
    p.add_argument("--model", type=Path, help="scoring model YAML used by the worker")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_lead)

    p = sub.add_parser(
        "demo",
        help="embedded stack + worker + a simulated funnel; prints handoffs live",
        description=(
            "Starts Tansu and redis-server, a worker, and simulates a few hundred leads "
            "over compressed time (half-lives of seconds), printing handoffs and recycles "
            "as they happen and a summary at the end."
        ),
    )
    p.add_argument("--leads", type=int, default=300, help="simulated leads (300)")
    p.add_argument("--duration", type=float, default=45.0, help="seconds of traffic (45)")
    p.add_argument("--seed", type=int, default=7, help="random seed (7)")
    p.add_argument("--model", type=Path, help="model YAML (default: the compressed demo model)")
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

    p = sub.add_parser("schema", help="print the JSON Schema of the wire messages")
    p.add_argument(
        "message", nargs="?", help="BehaviorEvent | StageTransition | Handoff | DeadLetter"
    )
    p.set_defaults(func=cmd_schema)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with suppress(BrokenPipeError):
        result: int = args.func(args)
        return result
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
