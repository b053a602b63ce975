"""The built wheel installs one name, `leadpulse`, and runs from it alone.

`import schemas` from another project must never meet ours: the folders
streams/, scoring/, schemas/ install as leadpulse.streams, leadpulse.scoring,
leadpulse.schemas. The wheel is unpacked and imported with this repository and
the editable install out of the way (``python -S``: no .pth file runs), so
what is imported is what a user's `pip install leadpulse` gets.
"""

from __future__ import annotations

import site
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_leadpulse_only_and_runs_from_it(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        timeout=300,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("leadpulse-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        tops = {name.split("/")[0] for name in names}
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
        archive.extractall(tmp_path / "unpacked")
    assert {t for t in tops if not t.endswith(".dist-info")} == {"leadpulse"}
    for data in (
        "leadpulse/scoring/default_model.yaml",
        "leadpulse/streams/dev/demo_model.yaml",
        "leadpulse/scoring/py.typed",
        "leadpulse/schemas/py.typed",
        "leadpulse/streams/py.typed",
    ):
        assert data in names, data
    assert "leadpulse = leadpulse.streams.cli:main" in scripts
    code = (
        "import sys\n"
        f"sys.path[:0] = [{str(tmp_path / 'unpacked')!r}]\n"
        f"sys.path += {site.getsitepackages()!r}\n"
        "import leadpulse.scoring, leadpulse.streams.cli\n"
        "from leadpulse.scoring.loader import default_model\n"
        "print(leadpulse.scoring.__file__, default_model().version)\n"
        "for top in ('streams', 'scoring', 'schemas'):\n"
        "    try:\n"
        "        __import__(top)\n"
        "    except ImportError:\n"
        "        pass\n"
        "    else:\n"
        "        raise SystemExit(top + ' is importable as a top-level name')\n"
    )
    done = subprocess.run(
        [sys.executable, "-S", "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(str(tmp_path / "unpacked" / "leadpulse" / "scoring"))
