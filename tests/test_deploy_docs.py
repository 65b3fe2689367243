"""The README and docs/ stay true to the code: their commands, variables, endpoints, CLI commands, make targets
and links exist, and the README stays short: the two commands, one picture, the notebook example, links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpscape.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = "\n".join(path.read_text() for path in DOC_FILES)
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()
API = (ROOT / "docs" / "api.md").read_text()
GPU = (ROOT / "docs" / "gpu.md").read_text()
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
    missing = _settings_variables() - _table_variables(CONFIGURATION)
    assert not missing, f"docs/configuration.md lacks {sorted(missing)} (service/settings.py reads them)"


def test_every_deployment_variable_has_a_row() -> None:
    missing = _deployment_variables() - _table_variables(CONFIGURATION)
    assert not missing, f"docs/configuration.md lacks {sorted(missing)} (docker-compose.yml or docker/*.sh read them)"


def test_every_variable_the_docs_name_exists() -> None:
    known = _settings_variables() | _deployment_variables()
    unknown = set(_VAR.findall(DOCS)) - known
    assert not unknown, f"README or docs/ name variables nothing reads: {sorted(unknown)}"


def test_the_readme_is_short_with_one_picture_the_notebook_and_links() -> None:
    assert len(README.splitlines()) <= 200, "README.md at most ~200 lines: the details belong in docs/"
    targets = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert targets == ["docs/quick.png"], "one picture, make demo's landscapes"
    assert (ROOT / targets[0]).is_file(), "docs/quick.png is drawn by scripts/readme_figures.py from make demo"
    assert "<!-- notebook example -->" in README
    linked = set(re.findall(r"\]\((docs/[a-z-]+\.md)", README))
    for page in ("api", "cli", "configuration", "deployment", "cluster", "science", "benchmarks"):
        assert f"docs/{page}.md" in linked, f"README links to docs/{page}.md"
    assert "../shared" not in DOCS and "PROTOCOL" not in DOCS, "a clone has no ../shared: the docs say it themselves"


def test_every_picture_in_the_docs_exists() -> None:
    for path in DOC_FILES:
        for target in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", path.read_text()):
            assert (path.parent / target).is_file(), f"{path.name} shows {target}, which does not exist"


def test_local_links_resolve() -> None:
    for path in DOC_FILES:
        text = path.read_text()
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if "://" not in target:
                assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"
        anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
                   for h in re.findall(r"^#+ (.+)$", text, flags=re.M)}
        for anchor in re.findall(r"\]\(#([^)]+)\)", text):
            assert anchor in anchors, f"{path.name} links to #{anchor}, which is no heading"


def test_every_curl_endpoint_is_a_route_of_the_app(tmp_path: Path) -> None:
    from hpscape.service.api import create_app

    settings = Settings(storage=f"sqlite:///{tmp_path / 'routes.db'}", ray_address=None)
    paths = create_app(settings, dispatch=False).openapi()["paths"]
    routes = [re.compile("^" + re.sub(r"\\{[^}]+\\}", "[^/]+", re.escape(p)) + "$") for p in paths]
    calls = re.findall(r"\$API(/[^\s\"?]*)", API)  # every URL of the curl examples
    assert len(calls) >= 12, calls
    for path in calls:
        concrete = path.replace("$ID", "abc123")
        assert any(regex.match(concrete) for regex in routes), f"docs/api.md calls {path}, which the app does not serve"


def test_every_cli_command_in_the_docs_exists() -> None:
    import typer.main

    from hpscape.service.cli import app

    group = typer.main.get_command(app)
    named = set(re.findall(r"`hpscape ([a-z]+)", DOCS))
    for block in re.findall(r"^```bash\n(.*?)^```", DOCS, flags=re.M | re.S):
        for line in block.splitlines():
            line = re.sub(r"^(?:[A-Z_]+=\S+ )+", "", line.strip())  # leading VAR=value assignments
            named |= set(re.findall(r"^(?:\.venv/bin/)?hpscape ([a-z]+)", line))
    assert {"serve", "submit", "run", "train"} <= named
    for command in named:
        assert command in group.commands, f"the docs show `hpscape {command}`, which does not exist"


@pytest.mark.parametrize("target", sorted(set(re.findall(r"\bmake ([a-z][a-z-]*)", DOCS))))
def test_every_make_target_in_the_docs_exists(target: str) -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"Makefile has no target {target}"


def test_cost_formula_matches_the_protocol_numbers() -> None:
    # 4 variants x 11 x 11 runs; 100 epochs of 50 000 training and 10 000 test images (a third of a training step).
    runs = 4 * 11 * 11
    gpu_hours_times_rate = runs * (100 * 50_000 + 100 * 10_000 / 3) / 3600
    assert f"{runs} runs ×" in GPU
    assert f"about {round(gpu_hours_times_rate, -3):,.0f} / R GPU-hours" in GPU
    flop_per_run = 3 * 3.37e9 * 100 * 50_000
    assert round(runs * flop_per_run / 1e18) == 24 and "≈ 24 EFLOP" in GPU


def test_the_gpu_presets_table_is_the_plan() -> None:
    from hpscape.landscapes import get_preset, plan_sweep

    rows = re.findall(r"^\| `([a-z0-9-]+)` \| [^|]+ \| ([\d,]+) \| ([\d,]+) \| ([\d.]+) G \|$", GPU, flags=re.M)
    assert {name for name, *_ in rows} == {"fig1", "fig2", "fig3", "fig4", "budget"}
    for name, trials, epochs, images in rows:
        plan = plan_sweep(get_preset(name))
        assert (int(trials.replace(",", "")), int(epochs.replace(",", ""))) == (plan.trials, plan.epochs), name
        assert float(images) == round(plan.train_images / 1e9, 2), name
