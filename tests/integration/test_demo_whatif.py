"""The issue's newcomer path: the demo's history, `leadpulse model whatif`, then `apply`.

`leadpulse demo --keep` keeps the stack up after the summary and prints its
export lines (`stay`); here the demo runs in process with a short cooldown
and the check runs where `stay` would wait (`before_stop`): `whatif` with
the environment the export lines give, nothing else, finds the broker, the
topics and the model the demo's worker recorded, and judges the stricter
model by the demo's sales answers. Then `leadpulse model apply` with the same
environment switches the demo's worker (restarted by the demo) to it, and
the hot page's JSON reports the new model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from leadpulse.scoring import load_model
from leadpulse.streams.dev.demo import DemoOptions, DemoRun, simulate
from leadpulse.streams.dev.workerproc import get_json
from leadpulse.streams.settings import Settings

WHATIF = (sys.executable, "-m", "leadpulse.streams.cli", "model", "whatif")
APPLY = (sys.executable, "-m", "leadpulse.streams.cli", "model", "apply")


def test_whatif_runs_on_the_demos_history_with_only_its_export_lines(tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def whatif(run: DemoRun, settings: Settings) -> None:
        model = settings.model_file
        assert model is not None
        stricter = tmp_path / "new.yaml"
        text = model.read_text()
        assert "    engagement: 70\n" in text
        stricter.write_text(text.replace("    engagement: 70\n", "    engagement: 85\n"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEADPULSE_")}
        env["LEADPULSE_BROKER"] = f"kafka://{settings.bootstrap_servers[0]}"  # the export lines
        env["LEADPULSE_REDIS_URL"] = settings.redis_url
        done = subprocess.run(
            [*WHATIF, "--json", "new.yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        seen["done"] = done
        applied = subprocess.run(
            [*APPLY, "new.yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        seen["applied"] = applied
        hot = f"http://127.0.0.1:{settings.web_port}/hot"
        version = load_model(stricter).model_version
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the worker restarts into the new namespace
            if get_json(hot, settings.local_api_token()).get("model_version") == version:
                seen["switched"] = True
                break
            time.sleep(0.5)
        seen["answers"] = run.desk.outcomes if run.desk is not None else None
        seen["handoffs"] = len(run.watcher.handoffs)

    run = simulate(DemoOptions(leads=60, duration=10.0, seed=7, cooldown=6.0), before_stop=whatif)
    assert isinstance(run, DemoRun), f"the demo did not start (exit status {run})"
    done = seen["done"]
    assert isinstance(done, subprocess.CompletedProcess)
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    current, new = body["current"], body["new"]
    assert current["source"].startswith("the namespace's recorded model (from ")
    assert body["events"] > 0
    # the replay saw the handoffs the demo's worker made, and the answers sales gave them
    assert current["handoffs"] == seen["handoffs"] > 0
    answers = seen["answers"]
    assert isinstance(answers, dict)
    assert current["outcomes"]["sql"] == answers["qualified"] > 0
    assert current["outcomes"]["rejected"] == answers["rejected"] > 0
    # a stricter handoff threshold makes no handoff the current one does not
    assert new["handoffs"] <= current["handoffs"]
    assert body["gained"] == []
    assert new["outcomes"]["sql"] <= current["outcomes"]["sql"]

    applied = seen["applied"]
    assert isinstance(applied, subprocess.CompletedProcess)
    assert applied.returncode == 0, applied.stderr
    assert "switched from " in applied.stdout
    assert seen.get("switched"), "the page never showed the applied model"
