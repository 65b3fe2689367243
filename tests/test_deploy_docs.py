"""The README stays true to the code: its commands, variables, endpoints, CLI commands and make targets exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpscape.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DEPLOY_FILES = [ROOT / "docker-compose.yml", *sorted((ROOT / "docker").glob("*.sh"))]
_VAR = re.compile(r"\bHPSCAPE_[A-Z0-9_]+\b")


def _table_variables(text: str) -> set[str]:
    """Variables that head a row of a Markdown table: | `HPSCAPE_X` | ..."""
    return set(re.findall(r"^\| `(HPSCAPE_[A-Z0-9_]+)` \|", text, flags=re.M))


def _settings_variables() -> set[str]:
    return {f"HPSCAPE_{name.upper()}" for name in Settings.model_fields}


def _deployment_variables() -> set[str]:
    found: set[str] = set()
    for path in DEPLOY_FILES:
        found |= set(_VAR.findall(path.read_text()))
    return found


def test_the_two_commands_open_the_readme() -> None:
    lines = README.splitlines()
    assert lines[0].startswith("# hpscape")
    fence = lines.index("```bash")
    assert fence <= 2, "the commands come right after the title"
    assert lines[fence + 1].startswith("make demo") and lines[fence + 2].startswith("make test")


def test_every_setting_has_a_row_in_the_variable_table() -> None:
    missing = _settings_variables() - _table_variables(README)
    assert not missing, f"README's configuration table lacks {sorted(missing)} (service/settings.py reads them)"


def test_every_deployment_variable_has_a_row() -> None:
    missing = _deployment_variables() - _table_variables(README)
    assert not missing, f"README's tables lack {sorted(missing)} (docker-compose.yml or docker/*.sh read them)"


def test_every_variable_the_readme_names_exists() -> None:
    known = _settings_variables() | _deployment_variables()
    unknown = set(_VAR.findall(README)) - known
    assert not unknown, f"README names variables nothing reads: {sorted(unknown)}"


def test_the_dashboard_picture_is_there() -> None:
    targets = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert targets == ["docs/dashboard.png", "docs/quick-landscape.png"]
    assert (ROOT / targets[0]).is_file(), "docs/dashboard.png is written by tests/test_dashboard_browser.py"
    assert (ROOT / targets[1]).is_file(), "docs/quick-landscape.png is drawn by scripts/landscape_png.py from make demo"


def test_local_links_resolve() -> None:
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README links to {target}, which does not exist"
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", README, flags=re.M)}
    for anchor in re.findall(r"\]\(#([^)]+)\)", README):
        assert anchor in anchors, f"README links to #{anchor}, which is no heading"


def test_every_curl_endpoint_is_a_route_of_the_app(tmp_path: Path) -> None:
    from hpscape.service.api import create_app

    settings = Settings(storage=f"sqlite:///{tmp_path / 'routes.db'}", ray_address=None)
    paths = create_app(settings, dispatch=False).openapi()["paths"]
    routes = [re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(p)) + "$") for p in paths]
    calls = re.findall(r"\$API(/[^\s\"?]*)", README)  # every URL of the curl examples
    assert len(calls) >= 12, calls
    for path in calls:
        concrete = path.replace("$ID", "abc123")
        assert any(regex.match(concrete) for regex in routes), f"README calls {path}, which the app does not serve"


def test_every_cli_command_in_the_readme_exists() -> None:
    import typer.main

    from hpscape.service.cli import app

    group = typer.main.get_command(app)
    named = set(re.findall(r"`hpscape ([a-z]+)", README))
    for block in re.findall(r"^```bash\n(.*?)^```", README, flags=re.M | re.S):
        for line in block.splitlines():
            line = re.sub(r"^(?:[A-Z_]+=\S+ )+", "", line.strip())  # leading VAR=value assignments
            named |= set(re.findall(r"^(?:\.venv/bin/)?hpscape ([a-z]+)", line))
    assert {"serve", "submit", "run", "train"} <= named
    for command in named:
        assert command in group.commands, f"README shows `hpscape {command}`, which does not exist"


@pytest.mark.parametrize("target", sorted(set(re.findall(r"\bmake ([a-z][a-z-]*)", README))))
def test_every_make_target_in_the_readme_exists(target: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"Makefile has no target {target}"


def test_cost_formula_matches_the_protocol_numbers() -> None:
    # 4 variants x 11 x 11 runs; 100 epochs of 50 000 training and 10 000 test images (a third of a training step).
    runs = 4 * 11 * 11
    gpu_hours_times_rate = runs * (100 * 50_000 + 100 * 10_000 / 3) / 3600
    assert f"{runs} ×" in README
    assert f"≈ {round(gpu_hours_times_rate, -3):,.0f} / R".replace(",", " ") in README
    flop_per_run = 3 * 3.37e9 * 100 * 50_000
    assert round(flop_per_run / 1e15, -1) == 50 and "about 50 PFLOP" in README
