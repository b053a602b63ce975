"""`python -m bench.whatif`: `leadpulse model whatif` over a generated history, timed.

What it does, on the embedded stack (Tansu + redis-server on free 127.0.0.1
ports, stopped at the end whatever happens):

1. plans `--events` events over `--leads` leads with the demo's persona mix
   (`bench.data.plan`: identity merges, return visits, a few malformed events),
   spread over `--days` days of event time ending an hour ago, and produces
   them to a fresh events topic of `--partitions` partitions;
2. runs `leadpulse model whatif NEW --current DEFAULT --json` as a child
   process in the environment a worker of that stack would have (the current
   model is the shipped default, NEW the same with the pricing page worth 15
   instead of 10 and the MQL threshold at 45), and reads its wall time and its
   peak RSS (`wait4`'s ru_maxrss);
3. prints events/s (events replayed through both models per wall second) and
   the peak RSS, and writes bench/results/whatif-<date>.json.

Goal (issue 16): 1,000,000 events / 100,000 leads in <= 60 s and <= 1 GiB RSS
for both models on this 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, produce, stack, unique, write_result
from bench.data import encode, plan
from leadpulse.streams.dev.devstack import create_topics

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "scoring" / "default_model.yaml"


def new_model_text() -> str:
    text = DEFAULT_MODEL.read_text()
    changed = text.replace('version: "2026-11-default"', 'version: "bench-whatif-new"').replace(
        "      points: 10\n      half_life: 7d\n      cap: 30",
        "      points: 15\n      half_life: 7d\n      cap: 30",
        1,
    )
    changed = changed.replace("  mql: 50", "  mql: 45", 1)
    if changed.count("bench-whatif-new") != 1 or "mql: 45" not in changed:
        raise SystemExit("the default model changed: update bench/whatif.py's NEW model")
    return changed


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-whatif-") as tmp:
        workdir = Path(tmp)
        new_file = workdir / "new.yaml"
        new_file.write_text(new_model_text())
        with stack(workdir / "stack") as dev:
            topic = unique("events")
            create_topics(dev.bootstrap, [topic], args.partitions)
            traffic = plan(args.events, args.leads, seed=args.seed, span=args.days * 86_400.0)
            records = encode(traffic, end=time.time() - 3600)
            produced = produce(dev.bootstrap, topic, records, timeout=1800)
            del records, traffic
            env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
            env.update(
                LEADPULSE_BROKER=f"kafka://{dev.bootstrap}",
                LEADPULSE_REDIS_URL=dev.redis_url,
                LEADPULSE_EVENTS_TOPIC=topic,
                LEADPULSE_PARTITIONS=str(args.partitions),
            )
            argv = [
                *(sys.executable, "-m", "leadpulse.streams.cli", "model", "whatif"),
                *(str(new_file), "--current", str(DEFAULT_MODEL), "--json"),
            ]
            started = time.perf_counter()
            child = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - started
            out = child.stdout.read() if child.stdout else b""
            err = child.stderr.read() if child.stderr else b""
            child.returncode = os.waitstatus_to_exitcode(status)
            if child.returncode != 0:
                raise SystemExit(f"whatif failed ({child.returncode}):\n{err.decode()}")
    body = json.loads(out)
    rss = usage.ru_maxrss * 1024
    return {
        "machine": machine(),
        "events": body["events"],
        "leads": args.leads,
        "partitions": args.partitions,
        "days": args.days,
        "produce_s": round(produced, 2),
        "whatif_s": round(seconds, 2),
        "events_per_s": round(body["events"] / seconds),
        "peak_rss_bytes": rss,
        "current": {k: body["current"][k] for k in ("handoffs", "mqls", "recycles", "stages")},
        "new": {k: body["new"][k] for k in ("handoffs", "mqls", "recycles", "stages")},
        "gained": len(body["gained"]),
        "lost": len(body["lost"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--days", type=float, default=90.0)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    result = run(args)
    print(
        f"whatif: {result['events']} events ({args.leads} leads, {args.partitions} partitions) "
        f"through two models in {result['whatif_s']} s = {result['events_per_s']} events/s; "
        f"peak RSS {result['peak_rss_bytes'] / 2**20:.0f} MiB"
    )
    print(json.dumps({k: result[k] for k in ("current", "new", "gained", "lost")}))
    if not args.no_save:
        print(f"written to {write_result('whatif', result)}")


if __name__ == "__main__":
    main()
