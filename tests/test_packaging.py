"""One distribution, `hpscape`: the folders install under the hpscape namespace, and the wheel works on its own."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"landscapes": "hpscape.landscapes", "workers": "hpscape.workers", "dashboards": "hpscape.dashboards",
           "service": "hpscape.service", "hpscape": "hpscape"}


def test_every_package_folder_is_listed_under_the_namespace() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    expected = set()
    for folder, package in FOLDERS.items():
        assert config["package-dir"][package] == folder
        for init in (REPO / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / folder).parts
            expected.add(".".join((package, *parts)))
    assert set(config["packages"]) == expected, "pyproject.toml's [tool.setuptools] packages"


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = dist.glob("hpscape-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.startswith("hpscape-")}
    assert tops == {"hpscape"}, f"the wheel holds only the hpscape package, got {sorted(tops)}"
    for needed in ("hpscape/dashboards/static/sweep.js", "hpscape/service/db/migrations/script.py.mako",
                   "hpscape/service/db/migrations/versions/0001_initial.py", "hpscape/workers/optim/decay.py"):
        assert needed in names, needed

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python, hpscape = venv / "bin" / "python", venv / "bin" / "hpscape"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HPSCAPE_", "PYTHON"))}
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True,
                               text=True, timeout=900, env=env)
    assert installed.returncode == 0, installed.stderr[-3000:]

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=300, cwd=tmp_path,
                              env={**env, "HPSCAPE_STORAGE": f"sqlite:///{tmp_path / 'h.db'}",
                                   "HPSCAPE_DATA_DIR": str(tmp_path / "data"), "HPSCAPE_RUNS_DIR": str(tmp_path)})

    version = run(str(hpscape), "--version")
    assert version.returncode == 0 and version.stdout.startswith("hpscape 0."), version.stdout + version.stderr
    no_top_level = run(str(python), "-c", "import service")
    assert "No module named 'service'" in no_top_level.stderr
    api = run(str(python), "-c", "import hpscape, sys; print(hpscape.__version__, sorted(hpscape.PRESETS), "
                                 "'torch' in sys.modules)")
    assert api.returncode == 0 and "quick" in api.stdout and api.stdout.strip().endswith("False"), api.stderr
    migrated = run(str(hpscape), "db", "upgrade")
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    trained = run(str(hpscape), "train", "--dataset", "synthetic", "--model", "shake_shake_8_2x8d", "--lr", "0.05",
                  "--weight-decay", "0.0005", "--epochs", "1", "--batch-size", "64", "--device", "cpu")
    assert trained.returncode == 0 and "done in" in trained.stdout, trained.stdout + trained.stderr
