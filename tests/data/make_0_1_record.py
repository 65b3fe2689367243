"""Write tests/data/hpscape-0.1-record.db and the landscapes hpscape 0.1 builds from it.

Run with hpscape 0.1 on the path, not this version (the point is a record the old code wrote):

    git worktree add /tmp/hp01 0c4ad3f
    PYTHONPATH=/tmp/hp01 .venv/bin/python tests/data/make_0_1_record.py tests/data

The sweep "old": sgd and adamw, 2 learning rates x 3 decays x 2 seeds, 3 epochs, objective test_loss,
written through 0.1's own record API (enqueue, claim, record_epoch, finish/stop/fail), with one trial of
each unusual state: diverged, stopped early, failed, still running.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna

from landscapes import (  # hpscape 0.1's top-level package
    SweepSpec,
    build_sweep_landscapes,
    claim_next,
    fail_trial,
    finish_trial,
    make_storage,
    open_study,
    record_epoch,
    stop_trial,
)
from landscapes.record import enqueue_cells  # noqa: E402

SPEC_ATTR = "sweep_spec"
EPOCHS = 3
# trial number -> what happens to it (the rest finish all three epochs)
UNUSUAL = {3: "diverged", 5: "stopped", 10: "failed", 11: "running"}
VIEWS = [("test_loss", None), ("test_loss", 1), ("test_loss", 2), ("test_error", None), ("train_loss", None)]


def metrics_at(number: int, epoch: int) -> dict[str, float]:
    # Simple, distinct per trial and per epoch, so a landscape that mixes trials up or picks the wrong
    # epoch gives other numbers.
    test_loss = 0.3 + 0.05 * (number % 7) + 0.2 / epoch
    return {"test_loss": test_loss, "test_error": 0.24 + 0.001 * number, "train_loss": test_loss - 0.15}


def main(out: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    db = out / "hpscape-0.1-record.db"
    db.unlink(missing_ok=True)
    spec = SweepSpec.model_validate({
        "name": "old", "variants": ["sgd", "adamw"], "dataset": "synthetic", "model": "shake_shake_8_2x16d", "batch_size": 32, "epochs": EPOCHS,
        "metric": "test_loss", "seeds": [0, 1],
        "grid": {"lr": {"sgd": [0.03125, 0.125], "adamw": [0.003125, 0.0125]},
                 "weight_decay": [0.0, 0.001953125, 0.0078125]},
    })
    storage = make_storage(f"sqlite:///{db}")
    for variant in spec.variants:
        study = open_study(storage, spec.name, variant)
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))
        enqueue_cells(study, spec.cells(variant), epochs_budget=EPOCHS)
        while (number := claim_next(study)) is not None:
            fate = UNUSUAL.get(number, "done")
            last = {"done": EPOCHS, "diverged": 1, "stopped": 2, "failed": 1, "running": 2}[fate]
            for epoch in range(1, last + 1):
                record_epoch(study, number, epoch, metrics_at(number, epoch), objective=spec.metric)
            if fate == "done":
                finish_trial(study, number, metrics_at(number, EPOCHS), objective=spec.metric)
            elif fate == "diverged":
                finish_trial(study, number, {**metrics_at(number, 1), "test_loss": float("nan")},
                             objective=spec.metric, diverged=True)
            elif fate == "stopped":
                stop_trial(study, number, epochs_done=last)
            elif fate == "failed":
                fail_trial(study, number, "RuntimeError: synthetic failure")
    expected = {}
    for metric, epoch in VIEWS:
        lands = build_sweep_landscapes(storage, spec.name, metric=metric, epoch=epoch)
        expected[f"{metric}@{epoch}"] = {v: land.to_dict() for v, land in lands.items()}
    (out / "hpscape-0.1-landscapes.json").write_text(json.dumps(expected, indent=1, sort_keys=True) + "\n")
    print(f"wrote {db} ({db.stat().st_size / 1024:.0f} KiB) and hpscape-0.1-landscapes.json")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
