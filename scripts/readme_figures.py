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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CPU_PRESETS = ("quick", "quick-adam", "quick-families", "adam-betas")
README_PRESET = "quick"


def caption(sweep) -> str:
    """What was trained, on what, and what the colour shows."""
    spec = sweep.spec
    seeds = ", ".join(str(s) for s in spec.seeds)
    return (f"{spec.dataset} · {spec.model} · {spec.max_epochs()} epochs, batch {spec.batch_size}, {spec.schedule} · "
            f"label noise {spec.label_noise:.0%} · seeds {seeds} · colour: {sweep.metric.replace('_', ' ')} at the "
            "final epoch")


def results_table(sweep) -> str:
    """The preset's coupling table in Markdown, and one line on how much was run."""
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
    trials = sum(info["n_trials"] for info in sweep.summary.values())
    lines.append("")
    lines.append(f"{trials} trials ({len(sweep.spec.seeds)} seeds per cell), {sweep_minutes(sweep):.1f} minutes from "
                 "the first trial's start to the last one's end.")
    return "\n".join(lines)


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
        with sqlite3.connect(source) as db, sqlite3.connect(staged) as out:
            db.backup(out)
        with sqlite3.connect(staged) as db:
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
        with sqlite3.connect(staged) as db:
            db.execute("PRAGMA journal_mode = DELETE")
            db.execute("VACUUM")
        shutil.copyfile(staged, target)


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
        figure = with_caption(sweep.figure().to_dict(), caption(sweep))
        (REPO / "docs" / f"{name}.png").write_bytes(render_figure(figure, "png"))
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
