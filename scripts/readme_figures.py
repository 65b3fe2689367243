"""Regenerate every number and picture the README and docs/presets.md show, from the records of real runs.

    make demo                                              # writes .hpscape/demo.db (the quick preset)
    .venv/bin/hpscape run --preset quick-adam --storage sqlite:///.hpscape/demo.db   # and any other CPU preset
    .venv/bin/python scripts/readme_figures.py --storage sqlite:///.hpscape/demo.db

For each CPU preset found in the storage it draws docs/<preset>.png (the same figure `hpscape run` writes, with a
caption), writes its results table between `<!-- results:NAME:start -->` and `<!-- results:NAME:end -->` in
README.md (quick) or docs/presets.md (the others), and keeps a copy of the record in docs/records/<preset>.db, from
which tests/test_readme_figures.py recomputes the tables: a README number that the record does not give fails.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_PRESETS = ("quick", "quick-adam", "quick-families", "adam-betas", "quick-fig1", "quick-fig3", "quick-fig4",
               "quick-budget")
README_PRESET = "quick"
# How a results block starts for a preset that was not run for this revision (it then shows no picture).
NOT_RUN = "Not run for this revision"
# The presets drawn in another view than Figure 2's, and which.
VIEW_OF = {"quick-fig1": "facets", "quick-fig3": "curves", "quick-fig4": "curves", "quick-budget": "budget"}
# The tables of a view's payload that go into docs/presets.md, in order.
_VIEW_TABLES = ("table", "generalization_table", "anytime_table", "trend_table")


# What a picture shows, where it is not the colour of a heatmap (by file-name suffix, else by the preset's view).
_SHOWS = {"-mechanism": "final {metric} against the predicted equilibrium angle", "-generalization":
          "test against training loss", "curves": "{metric} against epoch", "budget": "optimal decay against epochs"}


def caption(sweep, suffix: str = "") -> str:
    """What was trained, on what, and what the picture shows."""
    from hpscape.dashboards.render import figure_caption

    shows = _SHOWS.get(suffix) or (_SHOWS.get(VIEW_OF.get(sweep.name, "")) if not suffix else None)
    return figure_caption(sweep.spec, sweep.metric,
                          what=None if shows is None else shows.format(metric=sweep.metric.replace("_", " ")))


def markdown_table(table: dict) -> list[str]:
    return ["| " + " | ".join(table["columns"]) + " |", "|" + "---|" * len(table["columns"]),
            *("| " + " | ".join(str(v) for v in row) + " |" for row in table["rows"])]


def view_tables(sweep, view: str) -> str:
    """The tables a view shows (final values, anytime speedups, optima per budget, ...), in Markdown."""
    body = sweep.view(view)
    lines: list[str] = []
    for key in _VIEW_TABLES:
        if body.get(key):
            lines += [*(["", ] if lines else []), *markdown_table(body[key])]
    return "\n".join(lines)


def results_table(sweep) -> str:
    """The preset's coupling table (or its view's tables) in Markdown, and one line on how much was run."""
    if sweep.name in VIEW_OF:
        trials = sum(info["n_trials"] for info in sweep.summary.values())
        return (view_tables(sweep, VIEW_OF[sweep.name]) + f"\n\n{trials} trials ({len(sweep.spec.seeds)} seed(s) per "
                f"cell), {sweep_minutes(sweep):.1f} minutes from the first trial's start to the last one's end.")
    from hpscape.dashboards import slope_text
    from hpscape.landscapes import variant_label

    y, x = sweep.spec.swept_axes
    lines = [f"| landscape | best {sweep.metric.replace('_', ' ')} | at {y}, {x} | ridge slope [95 % interval] | "
             "verdict |", "|---|---|---|---|---|"]
    for key, metrics in sweep.coupling.items():
        land = sweep.landscapes[key]
        best = metrics.best or {}
        at = ", ".join(f"{v:.3g}" for v in best.get("params", {}).values()) or "—"
        value = "—" if not best else f"{best['value']:.4f}"
        lines.append(f"| {variant_label(land.variant)} | {value} | {at} | {slope_text(metrics)} | {metrics.verdict} |")
    mechanism = mechanism_table(sweep)
    if mechanism:
        lines += ["", "The mechanism: each pair's final values against the predicted equilibrium angle of the weights "
                  "that feed a BatchNorm (1 = both variants' cells on one curve):", "", *mechanism]
    trials = sum(info["n_trials"] for info in sweep.summary.values())
    lines.append("")
    lines.append(f"{trials} trials ({len(sweep.spec.seeds)} seeds per cell), {sweep_minutes(sweep):.1f} minutes from "
                 "the first trial's start to the last one's end.")
    return "\n".join(lines)


def _has_mechanism(sweep) -> bool:
    from hpscape.dashboards.views import available_views

    return sweep.name == README_PRESET and "mechanism" in available_views(sweep.spec)


def mechanism_table(sweep) -> list[str]:
    """The collapse score of each L2/decoupled pair, for the README's preset (the others: docs/views.md)."""
    if not _has_mechanism(sweep):
        return []
    table = sweep.view("mechanism")["table"]
    keep = [i for i, column in enumerate(table["columns"]) if column != "notes"]
    return markdown_table({"columns": [table["columns"][i] for i in keep],
                           "rows": [[row[i] for i in keep] for row in table["rows"]]})


def sweep_minutes(sweep) -> float:
    """Wall time of the recorded run, from its trials' own timestamps."""
    import optuna

    storage = optuna.storages.RDBStorage(sweep.storage)
    starts, ends = [], []
    for study in storage.get_all_studies():
        if study.study_name.split("/", 1)[0] != sweep.name:
            continue
        for trial in storage.get_all_trials(storage.get_study_id_from_name(study.study_name), deepcopy=False):
            if trial.datetime_start and trial.datetime_complete:
                starts.append(trial.datetime_start)
                ends.append(trial.datetime_complete)
    return (max(ends) - min(starts)).total_seconds() / 60 if starts else 0.0


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with the block between the results markers of `name` set to `body`; ValueError without markers."""
    pattern = re.compile(rf"(<!-- results:{re.escape(name)}:start -->\n).*?(\n<!-- results:{re.escape(name)}:end -->)",
                         re.S)
    if not pattern.search(text):
        raise ValueError(f"no <!-- results:{name}:start --> ... <!-- results:{name}:end --> markers")
    return pattern.sub(lambda m: m.group(1) + body + m.group(2), text)


def copy_record(storage: str, name: str, target: Path) -> None:
    """Only `name`'s studies, in one compact SQLite file (the source the README's numbers are checked against)."""
    from hpscape.landscapes import sqlite_file

    source = sqlite_file(storage)
    if source is None:
        raise SystemExit(f"--storage must be a sqlite:/// URL to copy the record, got {storage}")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "record.db"
        # closing(): a sqlite3 connection's own `with` commits but leaves it open, and an open connection to the
        # WAL-mode copy would block the journal-mode change below.
        with closing(sqlite3.connect(source)) as db, closing(sqlite3.connect(staged)) as out:
            db.backup(out)
        with closing(sqlite3.connect(staged)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            others = [row[0] for row in db.execute("SELECT study_id, study_name FROM studies")
                      if row[1].split("/", 1)[0] != name]
            for study_id in others:
                trial_ids = [r[0] for r in db.execute("SELECT trial_id FROM trials WHERE study_id = ?", (study_id,))]
                for table in sorted(t for t in tables if t.startswith("trial_")):
                    db.executemany(f"DELETE FROM {table} WHERE trial_id = ?", [(t,) for t in trial_ids])
                db.execute("DELETE FROM trials WHERE study_id = ?", (study_id,))
                for table in sorted(t for t in tables if t.startswith("study_")):
                    db.execute(f"DELETE FROM {table} WHERE study_id = ?", (study_id,))
                db.execute("DELETE FROM studies WHERE study_id = ?", (study_id,))
            db.commit()
        with closing(sqlite3.connect(staged)) as db:
            db.execute("PRAGMA journal_mode = DELETE")
            db.execute("VACUUM")
        shutil.copyfile(staged, target)


def figures(sweep) -> dict[str, dict]:
    """The pictures of a preset, by file-name suffix: its view's figure (and Figure 3's second one)."""
    view = VIEW_OF.get(sweep.name)
    if view is None:
        out = {"": sweep.figure().to_dict()}
        if _has_mechanism(sweep):
            out["-mechanism"] = sweep.view("mechanism")["figure"]
        return out
    body = sweep.view(view)
    out = {"": body["figure"]}
    if sweep.name == "quick-fig3":
        out["-generalization"] = body["generalization"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", default="sqlite:///.hpscape/demo.db", help="the record holding the runs")
    parser.add_argument("--presets", nargs="*", default=list(CPU_PRESETS), help="which presets to regenerate")
    args = parser.parse_args()

    import hpscape
    from hpscape.dashboards.render import render_figure, with_caption

    done = []
    for name in args.presets:
        try:
            sweep = hpscape.load(args.storage, name)
        except LookupError:
            print(f"{name}: not in {args.storage}, left as it is (run it with `hpscape run --preset {name}`)")
            continue
        for suffix, figure in figures(sweep).items():
            figure = with_caption(figure, caption(sweep, suffix))
            (REPO / "docs" / f"{name}{suffix}.png").write_bytes(render_figure(figure, "png"))
        document = REPO / ("README.md" if name == README_PRESET else "docs/presets.md")
        document.write_text(replace_block(document.read_text(encoding="utf-8"), name, results_table(sweep)),
                            encoding="utf-8")
        copy_record(args.storage, name, REPO / "docs" / "records" / f"{name}.db")
        done.append(name)
        print(f"{name}: docs/{name}.png, its table in {document.relative_to(REPO)}, docs/records/{name}.db")
    if not done:
        raise SystemExit(f"no CPU preset in {args.storage}: run `make demo` first")


if __name__ == "__main__":
    main()
