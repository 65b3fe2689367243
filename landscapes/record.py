"""How sweeps are stored in Optuna, shared by the Ray workers, the driver and the service.

One study per variant, named ``"<sweep>/<variant>"``, direction minimize, in any SQLAlchemy URL.
Params ``lr`` (log-scale FloatDistribution) and ``weight_decay`` (FloatDistribution from 0 for grids,
log-scale for Bayesian search) are real Optuna distributions, so the studies open unchanged in
optuna-dashboard. Bookkeeping lives in trial user attrs (names in `Attr`) and one intermediate
value per epoch (step = epoch, from 1).

Every function addresses trials by their NUMBER, so any process holding a storage can write: the
driver claims a trial, a Ray worker records its epochs and finishes it, the service reads.
Writes that arrive after a trial finished (a resumed worker repeating itself) are ignored and
reported by a False return, never by an exception.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import FloatDistribution
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models as _rdb_models
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial

from .spec import NAME_PATTERN, VARIANTS, Cell, study_name

__all__ = [
    "DIVERGED_LOSS",
    "DIVERGED_VALUE",
    "PARAM_LR",
    "PARAM_WEIGHT_DECAY",
    "Attr",
    "ask_bayes",
    "claim_next",
    "diverged_value",
    "enqueue_cells",
    "ensure_sqlite_dir",
    "fail_trial",
    "finish_trial",
    "get_trial",
    "list_sweep_studies",
    "make_storage",
    "open_study",
    "reconcile_orphans",
    "record_epoch",
    "running_trials",
    "sqlite_file",
    "stop_trial",
    "summarize_trials",
    "sweep_summary",
    "trial_cell",
]

PARAM_LR = "lr"
PARAM_WEIGHT_DECAY = "weight_decay"

# A diverged run (NaN/inf) still gets a defined, finite objective so that it is COMPLETE, sorts
# last, and plots as the worst colour: 100 % error, or a loss far above any trained model's.
DIVERGED_VALUE = 1.0
DIVERGED_LOSS = 1e3


class Attr:
    """Names of the trial user attrs."""

    VARIANT = "variant"
    SEED = "seed"
    CELL = "cell"  # Cell.key: "lr=...|wd=...|seed=..."
    EPOCHS_BUDGET = "epochs_budget"
    EPOCHS_DONE = "epochs_done"
    DIVERGED = "diverged"
    STOPPED_EARLY = "stopped_early"
    TEST_ERROR = "test_error"
    TEST_LOSS = "test_loss"
    TRAIN_LOSS = "train_loss"
    TRAIN_ERROR = "train_error"
    IMAGES_PER_S = "images_per_s"
    WALL_S = "wall_s"
    ERROR = "error"
    WORKER = "worker"  # "host:pid" of the process that trains it (set by the worker)
    RESUMED_FROM_EPOCH = "resumed_from_epoch"  # last epoch restored from a checkpoint (0: fresh)


# Metrics may not overwrite these: they describe the trial, not a measurement. ("diverged" may
# be passed as a metric: it is stored as the boolean flag.)
_BOOKKEEPING = frozenset(
    {
        Attr.VARIANT,
        Attr.SEED,
        Attr.CELL,
        Attr.EPOCHS_BUDGET,
        Attr.EPOCHS_DONE,
        Attr.STOPPED_EARLY,
        Attr.ERROR,
        Attr.WORKER,
        Attr.RESUMED_FROM_EPOCH,
    }
)
# A cell with a trial in one of these states is taken; a cell whose trials all FAILED is not.
_TAKEN_STATES = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)
# Creating a storage retries this often when another process is creating the same tables.
_SCHEMA_ATTEMPTS = 5
# Tracebacks can be long; the end holds the exception itself.
_MAX_ERROR_CHARS = 10_000


# ---------------------------------------------------------------------------------------------
# Storage and studies


def make_storage(url: str, *, sqlite_wal: bool = True) -> RDBStorage:
    """An Optuna RDBStorage for `url`, tuned for several writer processes.

    ``postgresql://`` and ``postgres://`` URLs use the psycopg (v3) driver, the one installed.
    SQLite files are switched to write-ahead logging unless `sqlite_wal` is False (pass False
    for a database on a network filesystem, where WAL does not work).
    """
    url = _normalize_url(url)
    engine_kwargs: dict[str, Any]
    if url.startswith("sqlite"):
        # Writers queue on SQLite's file lock for up to 60 s instead of failing at once.
        engine_kwargs = {"connect_args": {"timeout": 60}}
    else:
        # Drivers run for days; the server may close idle pooled connections meanwhile.
        engine_kwargs = {"pool_pre_ping": True}
    storage = _open_rdb(url, engine_kwargs)
    if sqlite_wal and storage.engine.dialect.name == "sqlite":
        # WAL lets the service read while workers write, and commits with one sync instead of
        # several (about 3x faster per record). The mode is stored in the file: set once.
        with storage.engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA journal_mode=WAL")
    return storage


def sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///PATH`` URL as written (possibly relative); None for other URLs and memory."""
    prefix = "sqlite:///"
    path = url.removeprefix(prefix) if url.startswith(prefix) else ""
    return None if path == "" or path.startswith(":memory:") else Path(path)


def ensure_sqlite_dir(url: str) -> None:
    """Create the directory of a SQLite URL's database file (``~`` expanded); other URLs need nothing."""
    path = sqlite_file(url)
    if path is not None:
        path.expanduser().parent.mkdir(parents=True, exist_ok=True)


def _open_rdb(url: str, engine_kwargs: dict[str, Any]) -> RDBStorage:
    # Optuna creates its tables on first use. Processes doing that at once on a fresh database
    # race ("table ... already exists", duplicate key); the losers find the tables on a retry.
    for attempt in range(_SCHEMA_ATTEMPTS):
        try:
            return RDBStorage(url, engine_kwargs=engine_kwargs)
        except Exception as exc:
            if attempt == _SCHEMA_ATTEMPTS - 1 or not _is_schema_race(exc):
                raise
            time.sleep(0.1 * (attempt + 1))
    raise AssertionError("unreachable")


def _is_schema_race(exc: BaseException | None) -> bool:
    while exc is not None:
        text = str(exc).lower()
        if "already exists" in text or "duplicate key" in text or "unique constraint" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _normalize_url(url: str) -> str:
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _as_storage(storage: BaseStorage | str) -> BaseStorage:
    return make_storage(storage) if isinstance(storage, str) else storage


def _checked_name(sweep: str, variant: str) -> str:
    if not isinstance(sweep, str) or not NAME_PATTERN.match(sweep) or len(sweep) > 200:
        raise ValueError(
            f"bad sweep name {sweep!r}: use 1-200 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit"
        )
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    return study_name(sweep, variant)


def open_study(
    storage: BaseStorage | str,
    sweep: str,
    variant: str,
    *,
    sampler: optuna.samplers.BaseSampler | None = None,
    create: bool = True,
) -> Study:
    """The study ``"<sweep>/<variant>"``; created (direction minimize) unless `create` is False.

    Pass a storage object from `make_storage` rather than a URL to share its connection pool.
    """
    name = _checked_name(sweep, variant)
    storage = _as_storage(storage)
    if create:
        study = optuna.create_study(
            storage=storage,
            study_name=name,
            direction="minimize",
            sampler=sampler,
            load_if_exists=True,
        )
    else:
        try:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        except KeyError:
            raise KeyError(
                f"no study {name!r} in this storage: check the sweep name, or launch the sweep "
                "first (open_study(..., create=True))"
            ) from None
    if study.directions != [StudyDirection.MINIMIZE]:
        raise ValueError(
            f"study {name!r} exists with directions {study.directions}, not minimize: it was not "
            "created by hpscape; use another sweep name"
        )
    return study


def list_sweep_studies(storage: BaseStorage | str, sweep: str) -> dict[str, Study]:
    """Every study of `sweep` that exists, keyed by variant, in the canonical variant order."""
    storage = _as_storage(storage)
    prefix = f"{sweep}/"
    variants = [
        s.study_name[len(prefix) :]
        for s in storage.get_all_studies()
        if s.study_name.startswith(prefix) and s.study_name[len(prefix) :] in VARIANTS
    ]
    variants.sort(key=VARIANTS.index)
    return {
        v: optuna.load_study(study_name=study_name(sweep, v), storage=storage) for v in variants
    }


# ---------------------------------------------------------------------------------------------
# Trial addressing


def _trial_id(study: Study, number: int) -> int:
    try:
        return study._storage.get_trial_id_from_study_id_trial_number(study._study_id, number)
    except KeyError:
        raise KeyError(f"study {study.study_name!r} has no trial number {number}") from None


def get_trial(study: Study, number: int) -> FrozenTrial:
    """The current record of trial `number` (read from the storage, not a cache)."""
    return study._storage.get_trial(_trial_id(study, number))


def trial_cell(trial: FrozenTrial) -> Cell:
    """The (lr, weight_decay, seed) a trial trains."""
    return Cell(
        float(trial.params[PARAM_LR]),
        float(trial.params[PARAM_WEIGHT_DECAY]),
        int(trial.user_attrs[Attr.SEED]),
    )


def _variant_of(study: Study) -> str:
    return study.study_name.rsplit("/", 1)[-1]


def _check_positive_int(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be an integer >= 1, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Creating and claiming trials


def enqueue_cells(study: Study, cells: Iterable[Cell], *, epochs_budget: int) -> int:
    """Enqueue (WAITING) every cell that has no WAITING/RUNNING/COMPLETE/PRUNED trial yet.

    Idempotent: calling it again enqueues nothing new, except cells whose trials all FAILED
    (Optuna's GridSampler would count those as visited). Returns the number newly enqueued.
    Call it from one process per study (the driver): two concurrent callers could both enqueue
    the same missing cell.
    """
    _check_positive_int(epochs_budget, "epochs_budget")
    cells = list(cells)
    for cell in cells:
        if not (math.isfinite(cell.lr) and cell.lr > 0):
            raise ValueError(f"cell {cell.key}: lr must be a finite number > 0")
        if not (math.isfinite(cell.weight_decay) and cell.weight_decay >= 0):
            raise ValueError(f"cell {cell.key}: weight_decay must be a finite number >= 0")
    if not cells:
        return 0
    taken = {
        t.user_attrs.get(Attr.CELL) for t in study.get_trials(deepcopy=False, states=_TAKEN_STATES)
    }
    distributions = {
        PARAM_LR: FloatDistribution(min(c.lr for c in cells), max(c.lr for c in cells), log=True),
        # Linear from 0: the grid has a weight_decay = 0 column, which no log scale holds.
        PARAM_WEIGHT_DECAY: FloatDistribution(0.0, max(c.weight_decay for c in cells)),
    }
    variant = _variant_of(study)
    added = 0
    for cell in cells:
        if cell.key in taken:
            continue
        taken.add(cell.key)
        params = {PARAM_LR: cell.lr, PARAM_WEIGHT_DECAY: cell.weight_decay}
        study.add_trial(
            create_trial(
                state=TrialState.WAITING,
                params=params,
                distributions=distributions,
                user_attrs={
                    Attr.VARIANT: variant,
                    Attr.SEED: cell.seed,
                    Attr.CELL: cell.key,
                    Attr.EPOCHS_BUDGET: epochs_budget,
                },
                # What Study.enqueue_trial writes: a plain study.ask() then runs the same cell.
                system_attrs={"fixed_params": params},
            )
        )
        added += 1
    return added


def claim_next(study: Study) -> int | None:
    """Atomically move the lowest-numbered WAITING trial to RUNNING; its number, or None."""
    storage = study._storage
    for trial in storage.get_all_trials(
        study._study_id, deepcopy=False, states=(TrialState.WAITING,)
    ):
        if _claim(storage, trial._trial_id):
            return trial.number
    return None


def _claim(storage: BaseStorage, trial_id: int) -> bool:
    backend = getattr(storage, "_backend", storage)
    if isinstance(backend, RDBStorage) and backend.engine.dialect.name == "sqlite":
        return _claim_sqlite(backend, trial_id)
    try:
        # Under SELECT ... FOR UPDATE (PostgreSQL, MySQL): False when another process won.
        return storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    except UpdateFinishedTrialError:
        return False


def _claim_sqlite(backend: RDBStorage, trial_id: int) -> bool:
    # SQLite ignores FOR UPDATE, so set_trial_state_values reads and writes in two steps and two
    # processes can both "win" a trial. One conditional UPDATE is atomic under SQLite's lock.
    columns = _rdb_models.TrialModel
    if hasattr(columns, "_datetime_start_utc"):  # Optuna >= 5 stores naive UTC
        started = datetime.now(timezone.utc).replace(tzinfo=None)
    else:
        started = datetime.now()
    with backend.engine.begin() as connection:
        result = connection.exec_driver_sql(
            "UPDATE trials SET state = 'RUNNING', datetime_start = ? "
            "WHERE trial_id = ? AND state = 'WAITING'",
            (started.strftime("%Y-%m-%d %H:%M:%S.%f"), trial_id),
        )
        return result.rowcount == 1


def ask_bayes(
    study: Study,
    *,
    lr_range: Sequence[float],
    wd_range: Sequence[float],
    seed: int,
    epochs_budget: int,
) -> int:
    """Sample a new RUNNING trial from the study's sampler (log-uniform lr and weight_decay)."""
    _check_positive_int(epochs_budget, "epochs_budget")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    distributions = {
        PARAM_LR: FloatDistribution(*_log_range(lr_range, "lr_range"), log=True),
        PARAM_WEIGHT_DECAY: FloatDistribution(*_log_range(wd_range, "wd_range"), log=True),
    }
    trial = study.ask(distributions)
    cell = Cell(trial.params[PARAM_LR], trial.params[PARAM_WEIGHT_DECAY], seed)
    for key, value in (
        (Attr.VARIANT, _variant_of(study)),
        (Attr.SEED, seed),
        (Attr.CELL, cell.key),
        (Attr.EPOCHS_BUDGET, epochs_budget),
    ):
        trial.set_user_attr(key, value)
    return trial.number


def _log_range(bounds: Sequence[float], what: str) -> tuple[float, float]:
    if len(bounds) != 2:
        raise ValueError(f"{what} must be [low, high], got {list(bounds)!r}")
    low, high = float(bounds[0]), float(bounds[1])
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low < high):
        raise ValueError(f"{what} must be finite with 0 < low < high, got [{low!r}, {high!r}]")
    return low, high


# ---------------------------------------------------------------------------------------------
# Recording progress and outcomes


def diverged_value(objective: str) -> float:
    """The objective value recorded for a diverged trial: 1.0 for errors, 1e3 for losses."""
    return DIVERGED_VALUE if objective.endswith("error") else DIVERGED_LOSS


def _metric_attrs(metrics: Mapping[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if key in _BOOKKEEPING:
            raise ValueError(
                f"metric name {key!r} is reserved for trial bookkeeping; rename the metric"
            )
        if key == Attr.DIVERGED:
            out[key] = bool(value)
            continue
        number = float(value)
        # JSON has no NaN/inf (HTTP responses would fail to encode them): None marks "undefined".
        out[key] = number if math.isfinite(number) else None
    return out


def _objective(metrics: Mapping[str, float], objective: str) -> float:
    if objective not in metrics:
        raise KeyError(
            f"metrics have no {objective!r} (the objective); got {', '.join(sorted(metrics))}"
        )
    return float(metrics[objective])


def record_epoch(
    study: Study,
    number: int,
    epoch: int,
    metrics: Mapping[str, float],
    *,
    objective: str,
) -> bool:
    """Store epoch `epoch` (from 1): the objective as intermediate value, every metric as attr.

    Repeating an epoch overwrites it (a resumed worker may). A non-finite objective is stored as
    `diverged_value(objective)`. Returns False (and writes nothing) if the trial already finished.
    """
    _check_positive_int(epoch, "epoch")
    attrs = _metric_attrs(metrics)
    value = _objective(metrics, objective)
    if not math.isfinite(value):
        value = diverged_value(objective)
    storage, trial_id = study._storage, _trial_id(study, number)
    try:
        for key, attr in attrs.items():
            storage.set_trial_user_attr(trial_id, key, attr)
        storage.set_trial_user_attr(trial_id, Attr.EPOCHS_DONE, epoch)
        storage.set_trial_intermediate_value(trial_id, epoch, value)
    except UpdateFinishedTrialError:
        return False
    return True


def finish_trial(
    study: Study,
    number: int,
    metrics: Mapping[str, float],
    *,
    objective: str,
    diverged: bool = False,
) -> bool:
    """Mark the trial COMPLETE with value ``metrics[objective]``; True if this call finished it.

    A diverged trial (`diverged`, a true ``metrics["diverged"]``, or a non-finite objective) is
    COMPLETE with ``diverged=True`` and
    the value `diverged_value(objective)`. A trial that already finished is left as it is.
    """
    attrs = _metric_attrs(metrics)
    value = _objective(metrics, objective)
    diverged = bool(diverged) or bool(attrs.get(Attr.DIVERGED)) or not math.isfinite(value)
    if diverged:
        value = diverged_value(objective)
    attrs[Attr.DIVERGED] = diverged
    return _finish(study, number, TrialState.COMPLETE, [value], attrs)


def stop_trial(study: Study, number: int, *, epochs_done: int) -> bool:
    """Mark a trial stopped early by a scheduler (ASHA) PRUNED, valued at its last epoch."""
    if isinstance(epochs_done, bool) or not isinstance(epochs_done, int) or epochs_done < 0:
        raise ValueError(f"epochs_done must be an integer >= 0, got {epochs_done!r}")
    trial = get_trial(study, number)
    values = None
    if trial.last_step is not None:
        last = trial.intermediate_values[trial.last_step]
        if math.isfinite(last):
            values = [last]
    attrs = {Attr.STOPPED_EARLY: True, Attr.EPOCHS_DONE: epochs_done}
    return _finish(study, number, TrialState.PRUNED, values, attrs)


def fail_trial(study: Study, number: int, error: str) -> bool:
    """Mark a trial FAIL with `error` (the tail of it, if very long) in user attr ``error``."""
    message = str(error)
    if len(message) > _MAX_ERROR_CHARS:
        message = "..." + message[-(_MAX_ERROR_CHARS - 3) :]
    return _finish(study, number, TrialState.FAIL, None, {Attr.ERROR: message})


def _finish(
    study: Study,
    number: int,
    state: TrialState,
    values: list[float] | None,
    attrs: Mapping[str, Any],
) -> bool:
    storage, trial_id = study._storage, _trial_id(study, number)
    if storage.get_trial(trial_id).state.is_finished():
        return False
    try:
        for key, value in attrs.items():
            storage.set_trial_user_attr(trial_id, key, value)
        # The state change runs under a row lock: of two racing finishers one raises here.
        return storage.set_trial_state_values(trial_id, state, values)
    except UpdateFinishedTrialError:
        return False


# ---------------------------------------------------------------------------------------------
# Recovery and summaries


def running_trials(study: Study) -> list[int]:
    """Numbers of the trials now RUNNING, ascending."""
    return [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]


def reconcile_orphans(study: Study, numbers: Iterable[int] | None = None) -> list[int]:
    """Trials left RUNNING by a dead driver (all, or those among `numbers`), ascending.

    They are not failed here: the caller resumes each under the same number, so its
    intermediate values and checkpoint stay with it.
    """
    running = running_trials(study)
    if numbers is None:
        return running
    wanted = set(numbers)
    return [n for n in running if n in wanted]


def sweep_summary(storage: BaseStorage | str, sweep: str) -> dict[str, dict[str, Any]]:
    """Per variant: trial counts by state, diverged count and the best non-diverged trial.

    The result is JSON-ready: ``{"study", "n_trials", "counts": {state name: n}, "diverged",
    "best": {"number", "value", "lr", "weight_decay", "seed"} or None}``.
    """
    return {
        variant: summarize_trials(study.study_name, study.get_trials(deepcopy=False))
        for variant, study in list_sweep_studies(storage, sweep).items()
    }


def summarize_trials(study: str, trials: Sequence[FrozenTrial]) -> dict[str, Any]:
    """One variant's entry of `sweep_summary`, from trials already loaded."""
    counts = {state.name: 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.name] += 1
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    healthy = [t for t in complete if not t.user_attrs.get(Attr.DIVERGED)]
    best = min(healthy, key=lambda t: (t.value, t.number), default=None)
    return {
        "study": study,
        "n_trials": len(trials),
        "counts": counts,
        "diverged": len(complete) - len(healthy),
        "best": None
        if best is None
        else {
            "number": best.number,
            "value": best.value,
            "lr": best.params.get(PARAM_LR),
            "weight_decay": best.params.get(PARAM_WEIGHT_DECAY),
            "seed": best.user_attrs.get(Attr.SEED),
        },
    }
