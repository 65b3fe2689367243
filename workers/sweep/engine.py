"""Run a sweep: enqueue its cells in Optuna, let Ray Tune train them, and leave a complete record behind.

    run_sweep(spec, storage_url=..., runs_dir=...)            # a fresh or finished sweep: runs what is left
    run_sweep(spec, storage_url=..., runs_dir=..., resume=True)  # after a crash: adopts trials left RUNNING

Every (cell, seed) is one Optuna trial, enqueued once and claimed once. Workers checkpoint every epoch into a stable
per-trial directory under `runs_dir`, keyed by the record's identity (`RECORD_ID_ATTR`), so a Ray retry
(FailureConfig) and a resumed sweep both continue from there, and a sweep of the same name recorded in another
storage starts from scratch.

Faults: every database call rides out a blip (`hpscape.workers.sweep.retry`); a sweep whose trials no node can hold
is refused before anything is recorded (`UnplaceableTrials`); a sweep none of whose trials can start for
`pending_timeout_s` (waiting for resources that never come) fails with what it waited for (`TrialsStalled`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from ray.tune import Callback
from ray.tune.stopper import Stopper

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
from hpscape.workers.sweep.loggers import tune_callbacks
from hpscape.workers.sweep.placement import ClusterNodes, nodes_of, this_machine, unplaceable
from hpscape.workers.sweep.retry import call_with_retries
from hpscape.workers.sweep.searcher import StudySearcher, settle
from hpscape.workers.sweep.trainable import run_trial

log = logging.getLogger(__name__)

ProgressCallback = Callable[[dict[str, Any]], None]

MAX_RETRIES = 3  # a trial whose worker died is retried this often from its last checkpoint, then recorded as failed
# A sweep none of whose trials can start (all wait for resources, none runs) for this long fails: long enough for a
# node to restart or an autoscaler to add one, short enough that a sweep nobody can serve frees its slot.
PENDING_TIMEOUT_S = 600.0
# The record's identity, in every study's user attrs: the checkpoints of its trials live under it.
RECORD_ID_ATTR = "record_id"
_LEGACY_RECORD = ""  # a record made before records had an identity: its checkpoints stay where they were
_PROGRESS_INTERVAL_S = 1.0


class SweepInterrupted(RuntimeError):
    """Raised when trials are left RUNNING from an earlier driver and `resume` was not asked for."""


class SpecMismatch(ValueError):
    """Raised when a sweep name is reused for a different spec: its cells would mix with the old ones."""


class UnplaceableTrials(ValueError):
    """Raised before a sweep starts when no node of its Ray cluster can hold one trial (`resources.cpu/gpu`)."""


class TrialsStalled(RuntimeError):
    """Raised when none of a sweep's trials could start for `pending_timeout_s`: they wait for resources."""


@dataclass
class SweepOutcome:
    name: str
    summary: dict[str, Any]
    wall_s: float
    dispatched: int


def prepare_sweep(spec: SweepSpec, storage_url: str) -> dict[str, optuna.Study]:
    """Create the studies (one per variant and facet value) and enqueue every grid (cell, seed) not yet recorded.

    Safe to repeat. Keyed by `study_key` ('sgdw', 'sgdw/schedule=step'), in the spec's order. New studies get the
    record's identity (`RECORD_ID_ATTR`, see `record_id`).
    """
    storage = make_storage(storage_url)
    studies = {}
    found: list[str] = []
    earlier = False  # studies recorded before records had an identity
    for index, (variant, facet) in enumerate(spec.studies()):
        study = open_study(storage, spec.name, variant, facet, sampler=_sampler(spec, index))
        attrs = study.user_attrs
        recorded = stored_spec(study)
        if attrs.get(SPEC_ATTR) is not None and recorded != spec:
            theirs = recorded.model_dump(mode="json") if recorded is not None else attrs[SPEC_ATTR]
            ours = spec.model_dump(mode="json")
            differing = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
            raise SpecMismatch(
                f"sweep {spec.name!r} is already recorded in this storage with a different spec "
                f"(differs in: {', '.join(differing)}); give this one another name (--name) or another --storage"
            )
        if attrs.get(RECORD_ID_ATTR) is not None:
            found.append(attrs[RECORD_ID_ATTR])
        elif attrs.get(SPEC_ATTR) is not None:
            earlier = True
        study.set_user_attr(SPEC_ATTR, spec.model_dump(mode="json"))  # lets `--resume NAME` find it
        with warnings.catch_warnings():  # experimental since Optuna 3.2, and what optuna-dashboard reads
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([spec.metric])
        if spec.grid is not None:
            enqueue_cells(study, spec.cells(variant), values_of=_values_of(spec, variant, facet))
        studies[study_key(variant, facet)] = study
    # One identity for the whole record: the one it has, or a new one (random: a record of the same name in another
    # storage, or after the database was deleted, must not find these checkpoints).
    identity = found[0] if found else (_LEGACY_RECORD if earlier else f"rec-{uuid.uuid4().hex[:16]}")
    for study in studies.values():
        if study.user_attrs.get(RECORD_ID_ATTR) is None:
            study.set_user_attr(RECORD_ID_ATTR, identity)
    return studies


def record_id(studies: dict[str, optuna.Study]) -> str | None:
    """The identity of a prepared record (None for one made before records had one: the old checkpoint paths)."""
    first = next(iter(studies.values()))
    value = first.user_attrs.get(RECORD_ID_ATTR)
    return value or None


def _values_of(spec: SweepSpec, variant: str, facet: Facet | None):
    return lambda cell: spec.trial_values(variant, cell.params, facet)


def recorded_spec(storage_url: str, name: str) -> SweepSpec:
    """The spec a sweep was started with, read back from its studies (for `hpscape run --resume NAME`)."""
    storage = call_with_retries(make_storage, storage_url, what="opening the record's storage")
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
    pending_timeout_s: float = PENDING_TIMEOUT_S,
) -> SweepOutcome:
    """Run what is left of `spec`'s sweep on Ray and return its summary.

    Raises `UnplaceableTrials` before recording anything if no node of the cluster (of this machine, for a local
    Ray) can hold one trial, and `TrialsStalled` (after failing the trials it held) if none of the sweep's trials
    could start for `pending_timeout_s` seconds while they waited for resources.
    """
    import ray
    from ray import tune

    if not pending_timeout_s > 0:
        raise ValueError(f"pending_timeout_s must be > 0 seconds, got {pending_timeout_s!r}")
    started = time.time()
    runs_dir = Path(runs_dir).resolve()
    loggers = tune_callbacks(spec, runs_dir)  # LoggerUnavailable before anything is recorded
    storage_url = _absolute_sqlite(storage_url)  # Ray workers run in another directory
    if ray.is_initialized() or ray_address:
        _init_ray(ray_address)
        check_placement(spec, nodes_of(ray.nodes(), f"the Ray cluster at {ray_address}" if ray_address
                                       else "the running Ray"))
    else:
        check_placement(spec, this_machine())  # before starting a local Ray on it
    studies = call_with_retries(prepare_sweep, spec, storage_url, what=f"preparing the record of sweep {spec.name}")
    identity = call_with_retries(record_id, studies, what=f"reading the identity of sweep {spec.name}")
    orphans = [(key, n) for key, study in studies.items()
               for n in call_with_retries(running_trials, study, what=f"listing running trials of {key}")]
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
            "record_id": identity,
            "objective": spec.metric,
            "number": frozen.number,
            "threads": max(1, int(spec.resources.cpu)),
            "report_every_epoch": _uses_asha(spec) or bool(spec.loggers),  # loggers show every epoch
            "trial": trial_config(spec, variant, facet, frozen, data_dir=data_dir),
        }

    searcher = StudySearcher(spec, studies, make_config, orphans=orphans)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0: no Tune tables; the display is ours
    _init_ray(ray_address)
    watch = _PendingWatch(spec, searcher, pending_timeout_s,
                          f"the Ray cluster at {ray_address}" if ray_address else "the local Ray")
    callbacks: list[Callback] = [watch, *loggers]
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
            callbacks=callbacks,
            stop=_StopWhen(watch),
            verbose=0,
        ),
    )
    poller = _ProgressPoller(storage_url, spec, on_progress, started) if on_progress is not None else None
    if poller is not None:
        poller.start()
    try:
        results = tuner.fit()
    except KeyboardInterrupt:
        searcher.cancelling = True
        raise
    finally:
        if poller is not None:
            poller.stop()
    _settle_leftovers(studies, searcher, results)
    if watch.reason is not None:
        raise TrialsStalled(watch.reason)
    summary = call_with_retries(lambda: sweep_summary(make_storage(storage_url), spec.name, spec.studies()),
                                what=f"summarizing sweep {spec.name}")
    if on_progress is not None:
        on_progress({"summary": summary, "spec": spec, "final": True, "elapsed_s": time.time() - started})
    return SweepOutcome(spec.name, summary, time.time() - started, len(searcher.dispatched))


def check_placement(spec: SweepSpec, cluster: ClusterNodes) -> None:
    """UnplaceableTrials, naming `resources.cpu` / `resources.gpu`, if no node of `cluster` can hold one trial."""
    problems = unplaceable(spec.resources.cpu, spec.resources.gpu, cluster)
    if problems:
        raise UnplaceableTrials(f"sweep {spec.name!r} cannot run: "
                                + "; ".join(f"resources.{field}: {message}" for field, message in problems))


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
        outcome = call_with_retries(settle, studies[key], number, objective=searcher.metric,
                                    error=searcher.abort_reason or errors.get((key, number), False),
                                    cancelled=searcher.cancelling,
                                    what=f"settling trial {studies[key].study_name} #{number}")
        if outcome not in ("recorded", "left running", "completed") and searcher.abort_reason is None:
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


class _PendingWatch(Callback):
    """Fails the sweep when it has trials waiting for resources and none running, for longer than `timeout_s`.

    Trials that wait while others of the sweep run are normal (more concurrent trials than the cluster holds);
    a sweep that cannot start any trial at all (a GPU share on a cluster that lost its GPU node, CPUs another job
    holds) would otherwise wait forever and hold its slot in the queue.
    """

    def __init__(self, spec: SweepSpec, searcher: StudySearcher, timeout_s: float, where: str) -> None:
        self._spec, self._searcher, self._timeout_s, self._where = spec, searcher, timeout_s, where
        self._since: float | None = None
        self.reason: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_searcher": None}  # Tune pickles callbacks; the searcher holds connection pools

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.reason is not None:
            return
        statuses = [t.status for t in trials]
        stalled = "PENDING" in statuses and "RUNNING" not in statuses
        now = time.monotonic()
        if not stalled:
            self._since = None
            return
        if self._since is None:
            self._since = now
        elif now - self._since > self._timeout_s:
            waiting = [t for t in trials if t.status == "PENDING"]
            self.reason = self._explain(now - self._since, [_trial_label(self._spec, t) for t in waiting])
            log.error("%s", self.reason)
            if self._searcher is not None:
                self._searcher.abort_reason = self.reason

    def _explain(self, waited_s: float, waiting: list[str]) -> str:
        import ray

        cpu, gpu = self._spec.resources.cpu, self._spec.resources.gpu
        try:
            total, free = ray.cluster_resources(), ray.available_resources()
            nodes = nodes_of(ray.nodes(), self._where)
        except Exception as exc:  # noqa: BLE001 - the explanation is a courtesy; the failure is the point
            log.warning("cannot read the cluster's resources: %s", exc)
            total, free, nodes = {}, {}, None
        never = [field for field, _ in unplaceable(cpu, gpu, nodes)] if nodes is not None else []
        if never:
            field, why = never[0], "no alive node has that many"
        else:
            field = "gpu" if gpu > free.get("GPU", 0.0) else "cpu"
            why = "they are held by other work"
        need = gpu if field == "gpu" else cpu
        return (f"resources.{field}: no trial of sweep {self._spec.name!r} could start for {waited_s:.0f} s "
                f"(pending_timeout_s {self._timeout_s:g}): each trial needs {need:g} {field.upper()}(s) on one node "
                f"and {why}; {self._where} has {total.get('CPU', 0.0):g} CPU(s) and {total.get('GPU', 0.0):g} "
                f"GPU(s) in all, {free.get('CPU', 0.0):g} CPU(s) and {free.get('GPU', 0.0):g} GPU(s) free now; "
                f"waiting: {_listing(waiting)}")


def _trial_label(spec: SweepSpec, trial) -> str:
    """'quick/sgdw #12': the Optuna study and trial number a Tune trial trains."""
    config = trial.config or {}
    if "key" not in config or "number" not in config:
        return str(trial.trial_id)
    return f"{spec.name}/{config['key']} #{config['number']}"


def _listing(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


class _StopWhen(Stopper):
    """A Tune stopper that ends the whole experiment once the pending watch has given up."""

    def __init__(self, watch: _PendingWatch) -> None:
        self._watch = watch

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self._watch.reason is not None


class _ProgressPoller(threading.Thread):
    """Reads the record (the truth) every `interval_s` on a thread of the driver and reports a snapshot.

    Not a Tune callback: Tune may run callbacks on a copy (a Ray client runs the whole Tuner elsewhere) and only
    steps its loop when an event arrives, so a display fed by it can stay silent until the end.
    """

    def __init__(self, storage_url: str, spec: SweepSpec, on_progress: ProgressCallback, started: float,
                 interval_s: float = _PROGRESS_INTERVAL_S) -> None:
        super().__init__(name="hpscape-progress", daemon=True)
        self._storage_url, self._spec, self._on_progress = storage_url, spec, on_progress
        self._sweep_started, self._interval_s = started, interval_s  # Thread has a `_started` of its own
        self._stopping = threading.Event()

    def run(self) -> None:
        storage = None
        try:
            while not self._stopping.wait(self._interval_s):
                try:
                    storage = storage or make_storage(self._storage_url)
                    summary = sweep_summary(storage, self._spec.name, self._spec.studies())
                except Exception as exc:  # noqa: BLE001 - a display problem (a database blip) must not stop the sweep
                    log.debug("progress poll failed: %s", exc)
                    continue
                if self._stopping.is_set():
                    return  # the final snapshot is the caller's
                self._on_progress({"summary": summary, "spec": self._spec, "final": False,
                                   "elapsed_s": time.time() - self._sweep_started})
        finally:
            engine = getattr(storage, "engine", None)
            if engine is not None:
                engine.dispose()

    def stop(self) -> None:
        self._stopping.set()
        self.join(timeout=30)


__all__ = [
    "PENDING_TIMEOUT_S",
    "RECORD_ID_ATTR",
    "SpecMismatch",
    "SweepInterrupted",
    "SweepOutcome",
    "TrialsStalled",
    "UnplaceableTrials",
    "check_placement",
    "prepare_sweep",
    "record_id",
    "recorded_spec",
    "run_sweep",
    "trial_config",
]

