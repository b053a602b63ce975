"""`leadpulse model apply | status | gc | abort`: switch models with the history rescored."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from leadpulse.streams.cli.common import EXIT_FAILED, EXIT_OK, EXIT_USAGE, load_settings
from leadpulse.streams.cli.whatif import Progress, _load
from leadpulse.streams.settings import Settings

APPLY_DESCRIPTION = """\
Switch the workers to NEW.yaml with the history rescored, blue/green: the
retained events topic is replayed under NEW into a namespace of its own
(Redis key prefix <prefix>.m<digest>) while the live workers keep scoring
under the current model; once the replay has caught up, the workers are
stopped at one recorded point (they exit for their supervisor to restart
them), the replay takes exactly that point, and the workers resume in the
new namespace under NEW. Leads whose stage the new model changes get one
StageTransition with "rescore": true; historical crossings are not
published as handoffs unless --emit-handoffs. The old namespace is kept
until `leadpulse model gc`; applying the old file again switches back to it.
Interrupted, it is resumed by running it again."""

APPLY_EPILOG = """\
It finds the stack like the other commands (LEADPULSE_BROKER,
LEADPULSE_REDIS_URL, ...: the `export` lines `leadpulse dev` prints).
Workers must run under a supervisor that restarts exit status 75
(`leadpulse dev` and `leadpulse demo --keep` do; systemd, Kubernetes, ...).
Exit status 0 when switched (or NEW already active), 1 when it cannot."""


def add_parsers(model_sub: Any) -> None:
    p = model_sub.add_parser(
        "apply",
        help="switch the workers to NEW.yaml with the history rescored (blue/green)",
        description=APPLY_DESCRIPTION,
        epilog=APPLY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, metavar="NEW.yaml", help="the model to switch to")
    p.add_argument(
        "--emit-handoffs",
        action="store_true",
        help="publish the handoffs the replay decides (historical crossings) to the handoffs "
        "topic; default: only the rescore transitions",
    )
    p.add_argument(
        "--partial-history",
        action="store_true",
        help="build from what the events topic retains although retention removed older events",
    )
    p.add_argument(
        "--drain-grace",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="how long batches in flight get to finish at the switch (15)",
    )
    p.add_argument("--json", action="store_true", help="print the outcome as one JSON object")
    p.set_defaults(func=cmd_model_apply)

    p = model_sub.add_parser(
        "status",
        help="the active model and namespace, the others kept, and the apply's progress",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_model_status)

    p = model_sub.add_parser(
        "gc",
        help="delete the namespaces of models no longer active (what a rollback would reuse)",
    )
    p.add_argument(
        "namespace",
        nargs="*",
        help="only these (default: every one but the active one; "
        "those a running apply uses are kept)",
    )
    p.set_defaults(func=cmd_model_gc)

    p = model_sub.add_parser(
        "abort",
        help="lift the fence of a model apply that died during its switch (workers resume)",
    )
    p.set_defaults(func=cmd_model_abort)


def cmd_model_apply(args: argparse.Namespace) -> int:
    from leadpulse.streams.replay.apply import Apply, ApplyOptions
    from leadpulse.streams.replay.history import ReplayError

    logging.getLogger("kafka").setLevel(logging.ERROR)
    if not args.drain_grace >= 0:
        print("leadpulse model apply: --drain-grace must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    settings = load_settings()
    model = _load(args.file)
    if model is None:
        return EXIT_FAILED
    text = args.file.read_text("utf-8")
    bar = Progress(sys.stderr) if sys.stderr.isatty() and not args.json else None

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.total = max(1, total)
            bar.done = 0
            bar.advance(done)

    def say(line: str) -> None:
        if bar is not None:
            bar.clear()
        if not args.json:
            print(line, flush=True)

    run = Apply(
        settings,
        model,
        text=text,
        origin=str(args.file),
        options=ApplyOptions(
            emit_handoffs=args.emit_handoffs,
            partial_history=args.partial_history,
            drain_grace=args.drain_grace,
        ),
        say=say,
        progress=progress,
    )
    say(f"applying model {model.model_version} from {args.file} ...")
    try:
        applied = asyncio.run(run.run())
    except (ReplayError, OSError) as error:
        if bar is not None:
            bar.clear()
        print(f"leadpulse model apply: {error}", file=sys.stderr)
        return EXIT_FAILED
    if bar is not None:
        bar.clear()
    if args.json:
        print(json.dumps(applied.__dict__, indent=2))
        return EXIT_OK
    if applied.already:
        print(f"model {applied.to_version} is already active (namespace {applied.namespace})")
        return EXIT_OK
    how = "reused" if applied.reused else "built"
    print(
        f"switched from {applied.from_version} (namespace {applied.from_namespace}) to "
        f"{applied.to_version} (namespace {applied.namespace}, {how}) in "
        f"{applied.seconds:.1f} s: {applied.replayed} events replayed, "
        f"{applied.rescored} leads changed stage (published with rescore: true).\n"
        f"The old namespace is kept: `leadpulse model apply` of its file switches back, "
        f"`leadpulse model gc` deletes it."
    )
    return EXIT_OK


async def _status(settings: Settings) -> dict[str, Any]:
    from leadpulse.streams.store.namespaces import Deployment
    from leadpulse.streams.store.redis import RedisLeadStore

    deployment = Deployment.from_settings(settings)
    try:
        active = await deployment.active()
        namespace = await deployment.active_namespace()
        infos = await deployment.namespaces()
        status = await deployment.status()
        store = RedisLeadStore.from_settings(settings, namespace)
        try:
            record = await store.recorded_model()
            fence = await store.fence(settings.events_topic)
        finally:
            await store.close()
    finally:
        await deployment.close()
    return {
        "namespace": namespace,
        "version": None if record is None else record.version,
        "origin": None if record is None else record.origin,
        "since": None if active is None else active.since,
        "previous": None if active is None else active.previous,
        "switch": {} if active is None else active.switch,
        "fenced": None if fence is None else {"phase": fence.phase, "to": fence.to},
        "namespaces": [info.model_dump(mode="json") for info in infos.values()],
        "apply": None
        if status is None
        else {**status.model_dump(mode="json"), "running": status.running},
    }


def cmd_model_status(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        body = asyncio.run(_status(settings))
    except Exception as error:  # noqa: BLE001 -- Redis away, or a record unreadable
        print(f"leadpulse model status: {error}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(json.dumps(body, indent=2))
        return EXIT_OK
    print(render_status(body, now=time.time()))
    return EXIT_OK


def render_status(body: dict[str, Any], *, now: float) -> str:
    from leadpulse.streams.store.models import when

    lines = [
        f"active model   {body['version'] or '(none recorded yet)'}"
        + (f" (from {body['origin']})" if body["origin"] else ""),
        f"namespace      {body['namespace']}"
        + (f" since {when(body['since'])}" if body["since"] else ""),
    ]
    if body["fenced"]:
        lines.append(
            f"FENCED         {body['fenced']['phase']}: switching to {body['fenced']['to']}"
        )
    lines.extend(
        f"kept           {info['namespace']} ({info['version']}, {info['state']}"
        + (f" since {when(info['retired_at'])}" if info.get("retired_at") else "")
        + ")"
        for info in body["namespaces"]
        if info["namespace"] != body["namespace"]
    )
    apply = body["apply"]
    if apply is not None:
        share = apply["done_events"] / apply["target"] if apply["target"] else 1.0
        state = (
            apply["phase"]
            if apply["running"] or apply["phase"] in ("done", "failed")
            else (f"{apply['phase']}, no news for {now - apply['updated_at']:.0f} s (run it again)")
        )
        lines.append(
            f"last apply     {apply['from_version']} -> {apply['to_version']}: {state}; "
            f"{apply['replayed']} events replayed ({share:.0%} of this round), "
            f"lag {apply['lag']}, {apply['rescored']} rescored"
        )
        if apply["message"]:
            lines.append(f"               {apply['message']}")
    return "\n".join(lines)


def cmd_model_gc(args: argparse.Namespace) -> int:
    from leadpulse.streams.store.namespaces import Deployment, NamespaceError

    settings = load_settings()

    async def run() -> int:
        deployment = Deployment.from_settings(settings)
        try:
            active = await deployment.active_namespace()
            infos = await deployment.namespaces()
            wanted = args.namespace or [n for n in infos if n != active]
            if not wanted:
                print("no namespace to collect: only the active one is kept")
                return EXIT_OK
            for namespace in wanted:
                try:
                    deleted = await deployment.delete_namespace(namespace)
                except NamespaceError as error:
                    print(f"leadpulse model gc: {error}; kept", file=sys.stderr)
                    return EXIT_FAILED
                print(f"deleted namespace {namespace} ({deleted} keys)")
            return EXIT_OK
        finally:
            await deployment.close()

    return asyncio.run(run())


def cmd_model_abort(args: argparse.Namespace) -> int:
    from leadpulse.streams.store.namespaces import Deployment
    from leadpulse.streams.store.redis import RedisLeadStore

    settings = load_settings()

    async def run() -> int:
        deployment = Deployment.from_settings(settings)
        try:
            namespace = await deployment.active_namespace()
            status = await deployment.status()
            if status is not None and status.running:
                print(
                    f"leadpulse model abort: the apply to {status.to_version} (pid {status.pid}) "
                    "is still running; stop it first",
                    file=sys.stderr,
                )
                return EXIT_FAILED
            store = RedisLeadStore.from_settings(settings, namespace)
            try:
                fence = await store.fence(settings.events_topic)
                if fence is None:
                    print(f"namespace {namespace} is not fenced: nothing to abort")
                    return EXIT_OK
                await store.set_fence(settings.events_topic, None)
            finally:
                await store.close()
            if status is not None:
                await deployment.write_status(
                    status.model_copy(
                        update={"phase": "failed", "message": "aborted", "updated_at": time.time()}
                    )
                )
            print(
                f"lifted the fence of namespace {namespace} (to {fence.to}): the workers resume "
                "in it; the half-built namespace is kept until `leadpulse model gc`"
            )
            return EXIT_OK
        finally:
            await deployment.close()

    return asyncio.run(run())
