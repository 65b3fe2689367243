"""How fast earlier trials of the same kind trained: the measured throughput a sweep's plan prices time with."""

from __future__ import annotations

import statistics

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from ..keys import parse_study_name
from ..plan import Throughput
from ..spec import SweepSpec
from ..vocabulary import DATASET_SIZES
from .attrs import Attr
from .storage import as_storage
from .studies import stored_spec

__all__ = ["measured_throughput"]

_MAX_TRIALS = 200  # enough for a stable median; a large record is not read whole for a plan


def _same_kind(a: SweepSpec, b: SweepSpec) -> bool:
    """Trials of `a` train at the speed of `b`'s: same data, network, batch, arithmetic and device kind."""
    return (a.dataset, a.model, a.batch_size, a.precision, a.compile, a.resources.gpu > 0) == (
        b.dataset, b.model, b.batch_size, b.precision, b.compile, b.resources.gpu > 0)


def measured_throughput(storage: BaseStorage | str, spec: SweepSpec) -> Throughput | None:
    """The median images/s, evaluation included (training images over each epoch's wall time), of finished
    trials in `storage` that trained like `spec`'s; None when there are none.

    Batch-size sweeps are skipped (their speed varies per trial), as are epochs without a measured time.
    """
    storage = as_storage(storage)
    train_size = DATASET_SIZES[spec.dataset][0]
    speeds: list[float] = []
    sweeps: list[str] = []
    trials = 0
    for frozen in sorted(storage.get_all_studies(), reverse=True):  # newest first
        try:
            sweep, _, _ = parse_study_name(frozen.study_name)
        except ValueError:
            continue
        study = optuna.load_study(study_name=frozen.study_name, storage=storage)
        other = stored_spec(study)
        if other is None or not _same_kind(other, spec) or "batch_size" in other.swept_axes:
            continue
        for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            seconds = [e.get("epoch_seconds") for e in trial.user_attrs.get(Attr.HISTORY, [])]
            seconds = [s for s in seconds if isinstance(s, (int, float)) and s > 0]
            if not seconds:
                continue
            speeds.append(train_size / statistics.median(seconds))
            trials += 1
            if sweep not in sweeps:
                sweeps.append(sweep)
            if trials >= _MAX_TRIALS:
                break
        if trials >= _MAX_TRIALS:
            break
    if not speeds:
        return None
    return Throughput(statistics.median(speeds), f"median of {trials} finished trial(s) of sweep(s) "
                      f"{', '.join(sweeps)} in this record, evaluation included")
