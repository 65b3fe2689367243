"""Run a sweep: enqueue its cells in Optuna, let Ray Tune train them, and leave a complete record behind.

    run_sweep(spec, storage_url=..., runs_dir=...)            # a fresh or finished sweep: runs what is left
    run_sweep(spec, storage_url=..., runs_dir=..., resume=True)  # after a crash: adopts trials left RUNNING

Every (cell, seed) is one Optuna trial, enqueued once and claimed once. Workers checkpoint every epoch into a stable
per-trial directory under `runs_dir`, so a Ray retry (FailureConfig) and a resumed sweep both continue from there.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from ray.tune import Callback

from hpscape.landscapes import Facet, SweepSpec
from hpscape.landscapes.record import (
    SPEC_ATTR,
    Attr,
    enqueue_cells,
    list_sweep_studies,
    make_storage,
    open_study,
    running_trials,
    sqlite_file,
    stored_spec,
    study_key,
    sweep_summary,
)
from hpscape.workers.sweep.searcher import StudySearcher, settle
from hpscape.workers.sweep.trainable import run_trial

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, Any]], None]

MAX_RETRIES = 3  # a trial whose worker died is retried this often from its last checkpoint, then recorded as failed
_PROGRESS_INTERVAL_S = 1.0


class SweepInterrupted(RuntimeError):
    """Raised when trials are left RUNNING from an earlier driver and `resume` was not asked for."""


class SpecMismatch(ValueError):
    """Raised when a sweep name is reused for a different spec: its cells would mix with the old ones."""


@dataclass
class SweepOutcome:
    name: str
    summary: dict[str, Any]
    wall_s: float
    dispatched: int


def prepare_sweep(spec: SweepSpec, storage_url: str) -> dict[str, optuna.Study]:
    """Create the studies (one per variant and facet value) and enqueue every grid (cell, seed) not yet recorded.

    Safe to repeat. Keyed by `study_key` ('sgdw', 'sgdw/schedule=step'), in the spec's order.
    """
    storage = make_storage(storage_url)
    studies = {}
    for index, (variant, facet) in enumerate(spec.studies()):
        study = open_study(storage, spec.name, variant, facet, sampler=_sampler(spec, index))
        recorded = stored_spec(study)
        if study.user_attrs.get(SPEC_ATTR) is not None and recorded != spec:
            theirs = recorded.model_dump(mode="json") if recorded is not None else study.user_attrs[SPEC_ATTR]
            ours = spec.model_dump(mode="json")
            differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            raise SpecMismatch(
                f"sweep {spec.name!r} is already recorded in this storage with a different spec "
                f"(differs in: {', '.join(differing)}); give this one another name (--name) or another --storage"
            )
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))  # lets `--resume NAME` find it
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what optuna-dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([spec.metric])
        if spec.grid is not None:
            enqueue_cells(study, spec.cells(variant), values_of=_values_of(spec, variant, facet))
        studies[study_key(variant, facet)] = study
    return studies


def _values_of(spec: SweepSpec, variant: str, facet: Facet | None):
    return lambda cell: spec.trial_values(variant, cell.params, facet)


def recorded_spec(storage_url: str, name: str) -> SweepSpec:
    """The spec a sweep was started with, read back from its studies (for `hpscape run --resume NAME`)."""
    storage = make_storage(storage_url)
    studies = list_sweep_studies(storage, name)
    if not studies:
        known = sorted({s.study_name.split("/", 1)[0] for s in storage.get_all_studies()})
        raise LookupError(f"no sweep named {name!r} in {storage_url}; known sweeps: {', '.join(known) or 'none'}")
    spec = stored_spec(next(iter(studies.values())))
    if spec is None:
        raise LookupError(f"sweep {name!r} in {storage_url} has no spec this version of hpscape can read")
    return spec


def run_sweep(
    spec: SweepSpec,
    *,
    storage_url: str,
    runs_dir: str | Path,
    data_dir: str | Path | None = None,
    ray_address: str | None = None,
    resume: bool = False,
    on_progress: ProgressCallback | None = None,
    max_retries: int = MAX_RETRIES,
) -> SweepOutcome:
    from ray import tune

    started = time.time()
    runs_dir = Path(runs_dir).resolve()
    storage_url = _absolute_sqlite(storage_url)  # Ray workers run in another directory
    studies = prepare_sweep(spec, storage_url)
    orphans = [(key, n) for key, study in studies.items() for n in running_trials(study)]
    if orphans and not resume:
        raise SweepInterrupted(
            f"sweep {spec.name!r} has {len(orphans)} trial(s) left RUNNING by an earlier run; if that run is dead, "
            f"continue it with `hpscape run --resume {spec.name}` (they resume from their last checkpoint)"
        )

    facets = {study_key(variant, facet): (variant, facet) for variant, facet in spec.studies()}

    def make_config(key: str, frozen: optuna.trial.FrozenTrial) -> dict[str, Any]:
        variant, facet = facets[key]
        return {
            "sweep": spec.name,
            "study": spec.study_name(variant, facet),
            "key": key,
            "storage": storage_url,
            "runs_dir": str(runs_dir),
            "objective": spec.metric,
            "number": frozen.number,
            "threads": max(1, int(spec.resources.cpu)),
            "report_every_epoch": _uses_asha(spec),
            "trial": trial_config(spec, variant, facet, frozen, data_dir=data_dir),
        }

    searcher = StudySearcher(spec, studies, make_config, orphans=orphans)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables; the display is ours
    _init_ray(ray_address)
    trainable = tune.with_resources(run_trial, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=_scheduler(spec),
            num_samples=-1,  # until the searcher says FINISHED
            max_concurrent_trials=spec.max_concurrent_trials,
            reuse_actors=True,  # a worker imports torch once, not once per cell
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"{spec.name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str(runs_dir / "tune"),
            failure_config=tune.FailureConfig(max_failures=max_retries),
            callbacks=[_ProgressCallback(storage_url, spec, on_progress)] if on_progress else [],
            verbose=0,
        ),
    )
    try:
        results = tuner.fit()
    except KeyboardInterrupt:
        searcher.cancelling = True
        raise
    _settle_leftovers(studies, searcher, results)
    summary = sweep_summary(make_storage(storage_url), spec.name, spec.studies())
    if on_progress is not None:
        on_progress({"summary": summary, "spec": spec, "final": True, "elapsed_s": time.time() - started})
    return SweepOutcome(spec.name, summary, time.time() - started, len(searcher.dispatched))


def trial_config(
    spec: SweepSpec, variant: str, facet: Facet | None, frozen: optuna.trial.FrozenTrial, *,
    data_dir: str | Path | None,
) -> dict[str, Any]:
    """The TrialConfig (as a dict) of one claimed Optuna trial.

    Its hyperparameters are those the record holds for it (written when it was enqueued or asked); a trial
    recorded without them (hpscape 0.1) gets them from the spec and its params. Precision and torch.compile are
    the spec's (`precision`, `compile`); a trial with a GPU share runs on CUDA in channels_last, which changes the
    memory layout and not the arithmetic.
    """
    gpu = spec.resources.gpu > 0
    values = frozen.user_attrs.get(Attr.HYPERPARAMETERS)
    if not isinstance(values, dict):
        values = spec.trial_values(variant, frozen.params, facet)
    return {
        "dataset": spec.dataset,
        "model": spec.model,
        "variant": variant,
        **values,
        "normalized_decay": spec.normalized_decay,
        "step_milestones": list(spec.step_milestones) if spec.step_milestones is not None else None,
        "step_gamma": spec.step_gamma,
        "restart_period": spec.restart_period,
        "restart_mult": spec.restart_mult,
        "seed": int(frozen.user_attrs[Attr.SEED]),
        "device": "cuda" if gpu else "cpu",
        "precision": spec.precision,
        "channels_last": gpu,
        "compile": spec.compile,
        "data_dir": str(data_dir) if data_dir is not None else None,
    }


def _trial_name(trial) -> str:
    return f"{trial.config['key'].replace('/', '-')}-{trial.config['number']:05d}-{trial.trial_id}"


def _settle_leftovers(studies: dict[str, optuna.Study], searcher: StudySearcher, results) -> None:
    """Ray swallows errors raised in searcher callbacks: check every dispatched trial once more, here."""
    errors = {}
    for result in results:
        number = (result.config or {}).get("number")
        key = (result.config or {}).get("key")
        if number is not None and key is not None:
            errors[(key, int(number))] = str(result.error) if result.error else False
    for key, number in searcher.dispatched:
        outcome = settle(studies[key], number, objective=searcher.metric,
                         error=errors.get((key, number), False), cancelled=searcher.cancelling)
        if outcome not in ("recorded", "left running", "completed"):
            log.warning("trial %s #%d was %s after Ray finished it", studies[key].study_name, number, outcome)


def _sampler(spec: SweepSpec, index: int) -> optuna.samplers.BaseSampler | None:
    """The Bayesian sampler of the `index`-th study (each its own seed), or None for a grid."""
    if spec.bayes is None:
        return None
    seed = spec.seeds[0] + index
    if spec.bayes.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, multivariate=True)


def _uses_asha(spec: SweepSpec) -> bool:
    return spec.bayes is not None and spec.bayes.pruning == "asha" and spec.epochs > 1


def _scheduler(spec: SweepSpec):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if _uses_asha(spec):
        return ASHAScheduler(
            time_attr="epoch", metric=spec.metric, mode="min", max_t=spec.max_epochs(),
            grace_period=max(1, spec.max_epochs() // 9), reduction_factor=3,
        )
    return FIFOScheduler()


def _init_ray(address: str | None) -> None:
    import ray

    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # the record and the display are ours
    if address:
        try:
            ray.init(address=address, **quiet)
        except ConnectionError as exc:
            raise ConnectionError(_cluster_connection_help(address)) from exc
    else:
        # Local Ray: no dashboard. Ray (2.60) still opens its ports on every interface, but a cluster that ray.init
        # starts requires its token (~/.ray/auth_token, created on first use), so nothing else can join or submit.
        ray.init(include_dashboard=False, _node_ip_address="127.0.0.1", **quiet)


def _cluster_connection_help(address: str) -> str:
    # Ray only says "Failed to connect"; the usual causes are a stopped head and a missing token.
    return (
        f"cannot connect to the Ray cluster at {address}: check that its head is running (`ray status --address "
        f"{address}`) and reachable from here. A cluster with token authentication (the default of Ray 2.60) also "
        "needs RAY_AUTH_MODE=token and the cluster's token (RAY_AUTH_TOKEN, or the file ~/.ray/auth_token) in this "
        "process's environment; a driver given an explicit address never turns token authentication on by itself"
    )


def _absolute_sqlite(storage_url: str) -> str:
    """``sqlite:///relative.db`` made absolute against this process's directory; any other URL unchanged."""
    path = sqlite_file(storage_url)
    return storage_url if path is None or path.is_absolute() else f"sqlite:///{path.resolve()}"


class _ProgressCallback(Callback):
    """Polls the studies (the truth) at most once a second from Tune's event loop and reports a snapshot."""

    def __init__(self, storage_url: str, spec: SweepSpec, on_progress: ProgressCallback) -> None:
        self._storage = make_storage(storage_url)
        self._spec = spec
        self._on_progress = on_progress
        self._last = 0.0
        self._started = time.time()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks into its experiment state; the display and the connection pool stay behind.
        return {**self.__dict__, "_storage": None, "_on_progress": None}

    def on_step(self, iteration, trials, **info) -> None:
        if self._on_progress is None or self._storage is None:
            return
        now = time.time()
        if now - self._last < _PROGRESS_INTERVAL_S:
            return
        self._last = now
        try:
            summary = sweep_summary(self._storage, self._spec.name, self._spec.studies())
        except Exception as exc:  # noqa: BLE001 - a display problem must not stop the sweep
            log.debug("progress poll failed: %s", exc)
            return
        self._on_progress({"summary": summary, "spec": self._spec, "final": False, "elapsed_s": now - self._started})


__all__ = [
    "SpecMismatch",
    "SweepInterrupted",
    "SweepOutcome",
    "prepare_sweep",
    "recorded_spec",
    "run_sweep",
    "trial_config",
]

