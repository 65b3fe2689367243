"""The Python API (`import hpscape`) and README's notebook example, run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import hpscape

REPO = Path(__file__).resolve().parents[1]


def _readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- notebook example -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md has no ```python block after <!-- notebook example -->"
    return match.group(1)


def test_the_package_exposes_the_notebook_api_without_importing_torch() -> None:
    assert set(hpscape.__all__) >= {"run", "load", "Sweep", "SweepSpec", "get_preset", "PRESETS", "__version__"}
    probe = subprocess.run([sys.executable, "-c", "import sys, hpscape; print('torch' in sys.modules, "
                            "'ray' in sys.modules, hpscape.__version__)"], capture_output=True, text=True)
    assert probe.stdout.split()[:2] == ["False", "False"], probe.stdout + probe.stderr


def test_run_refuses_what_is_neither_preset_nor_spec() -> None:
    with pytest.raises(hpscape.landscapes.SpecError, match="neither a preset .* nor a spec file"):
        hpscape.run("quik")


def test_load_names_the_sweeps_there_are(tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    old.write_bytes((REPO / "tests/data/hpscape-0.1-record.db").read_bytes())
    with pytest.raises(LookupError, match="recorded sweeps: old"):
        hpscape.load(f"sqlite:///{old}", "nope")
    sweep = hpscape.load(f"sqlite:///{old}", "old")
    assert list(sweep.landscapes) == ["sgd", "adamw"] and sweep.metric == "test_loss"
    assert sweep.table()[0]["landscape"] == "sgd" and "ridge_slope" in sweep.table()[0]
    figure = sweep.figure()
    assert type(figure).__name__ == "Figure" and len(figure.data) >= 2
    assert "plotly" in sweep._repr_html_()
    assert sweep.at(metric="train_loss").metric == "train_loss"


@pytest.mark.ray
def test_readme_notebook_example_runs_as_written(tmp_path: Path) -> None:
    code = _readme_example() + "\nprint('ROWS', len(sweep.table()), sweep.coupling['sgd'].n_cells)\n"
    env = {**os.environ, "HPSCAPE_RUNS_DIR": str(tmp_path / "runs"), "HPSCAPE_DATA_DIR": str(tmp_path / "data")}
    env.pop("HPSCAPE_STORAGE", None)
    ran = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env=env)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-4000:]
    assert "ROWS 2 4" in ran.stdout, ran.stdout[-2000:]
