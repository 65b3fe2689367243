"""A Ray Tune searcher that hands out Optuna trials: orphans first, then enqueued grid cells, then Bayesian asks.

Why not Ray's `OptunaSearch` with Optuna's `GridSampler`: parallel workers repeat grid cells, failed cells count as
visited, and errors from `study.tell` are only logged. Here every (cell, seed) is an enqueued Optuna trial claimed
atomically, the worker records its own results, and this searcher only settles what the worker could not: trials a
scheduler stopped early, and trials Ray gave up on.

Every database call here rides out a blip (`call_with_retries`). A claim whose acknowledgement a blip swallowed
leaves a RUNNING trial that no Ray trial owns: once the studies have nothing left to hand out, the searcher adopts
such trials (they run like a resumed sweep's orphans), so none is left RUNNING at the end.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from hpscape.landscapes import SweepSpec, parse_study_name
from hpscape.landscapes.record import (
    Attr,
    ask_bayes,
    claim_next,
    fail_trial,
    finish_trial,
    get_trial,
    running_trials,
    stop_trial,
)
from hpscape.workers.sweep.retry import call_with_retries

log = logging.getLogger(__name__)

TrialConfigFactory = Callable[[str, optuna.trial.FrozenTrial], dict[str, Any]]


class StudySearcher(Searcher):
    def __init__(
        self,
        spec: SweepSpec,
        studies: dict[str, optuna.Study],  # by study key ('sgdw', 'sgdw/schedule=step'), in spec order
        make_config: TrialConfigFactory,
        *,
        orphans: list[tuple[str, int]] = (),
    ) -> None:
        super().__init__(metric=spec.metric, mode="min")
        self._spec = spec
        self._studies = studies
        self._make_config = make_config
        self._orphans = deque(orphans)
        self._live: dict[str, tuple[str, int]] = {}  # Ray trial id -> (study key, Optuna trial number)
        self._exhausted: set[str] = set()
        self._turn = 0
        self.dispatched: list[tuple[str, int]] = []
        self.cancelling = False
        self.abort_reason: str | None = None  # set when the sweep is stopped for good: every unfinished trial fails

    # --- handing out work -------------------------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.cancelling or self.abort_reason is not None:
            return Searcher.FINISHED
        pick = self._orphans.popleft() if self._orphans else self._claim()
        if pick is None:
            return Searcher.FINISHED
        key, number = pick
        self._live[trial_id] = pick
        self.dispatched.append(pick)
        frozen = call_with_retries(get_trial, self._studies[key], number,
                                   what=f"reading trial {self._studies[key].study_name} #{number}")
        return self._make_config(key, frozen)

    def _claim(self) -> tuple[str, int] | None:
        """Round-robin over the studies, so every panel of the landscape fills at the same pace; then trials whose
        claim was acknowledged to no one."""
        while True:
            pick = self._claim_round()
            if pick is not None:
                return pick
            if not self._adopt_unowned():
                return None
            if self._orphans:
                return self._orphans.popleft()

    def _claim_round(self) -> tuple[str, int] | None:
        keys = [k for k in self._studies if k not in self._exhausted]
        for offset in range(len(keys)):
            key = keys[(self._turn + offset) % len(keys)]
            number = call_with_retries(self._next_number, key,
                                       what=f"claiming the next trial of {self._studies[key].study_name}")
            if number is None:
                self._exhausted.add(key)
                continue
            self._turn = (self._turn + offset + 1) % max(1, len(keys))
            return key, number
        return None

    def _next_number(self, key: str) -> int | None:
        study = self._studies[key]
        if self._spec.grid is not None:
            return claim_next(study)
        bayes = self._spec.bayes
        asked = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL]
        if len(asked) >= bayes.n_trials:
            return None
        seed = self._spec.seeds[len(asked) % len(self._spec.seeds)]
        _, variant, facet = parse_study_name(study.study_name)
        return ask_bayes(study, ranges=bayes.ranges, seed=seed,
                         values_of=lambda cell: self._spec.trial_values(variant, cell.params, facet))

    def _adopt_unowned(self) -> bool:
        """Queue RUNNING trials this searcher never handed out (a claim or an ask cut off by a database blip);
        fail those an interrupted ask left without their bookkeeping (a Bayesian study asks again). True if
        anything changed."""
        owned = set(self.dispatched)
        changed = False
        for key, study in self._studies.items():
            numbers = call_with_retries(running_trials, study, what=f"listing running trials of {study.study_name}")
            for number in numbers:
                if (key, number) in owned or (key, number) in self._orphans:
                    continue
                frozen = call_with_retries(get_trial, study, number, what=f"reading trial {study.study_name} #{number}")
                if all(a in frozen.user_attrs for a in (Attr.SEED, Attr.CELL, Attr.EPOCHS_BUDGET)):
                    log.warning("trial %s #%d is RUNNING but was never handed out (its claim was cut off): running it",
                                study.study_name, number)
                    self._orphans.append((key, number))
                else:
                    log.warning("trial %s #%d was asked but its bookkeeping was cut off: failing it, asking again",
                                study.study_name, number)
                    call_with_retries(fail_trial, study, number, "its creation was cut off by a database outage",
                                      what=f"failing trial {study.study_name} #{number}")
                    self._exhausted.discard(key)
                changed = True
        return changed

    # --- settling what the worker could not record ------------------------------------------------------------------
    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pick = self._live.pop(trial_id, None)
        if pick is not None:
            study = self._studies[pick[0]]
            call_with_retries(settle, study, pick[1], objective=self._spec.metric,
                              error=self.abort_reason or error, last_epoch=(result or {}).get("epoch"),
                              cancelled=self.cancelling, what=f"settling trial {study.study_name} #{pick[1]}")

    # The searcher's state lives in the studies; nothing to save with Tune's experiment state.
    def save(self, checkpoint_path: str) -> None:  # noqa: D102
        pass

    def restore(self, checkpoint_path: str) -> None:  # noqa: D102
        pass


_FINAL_METRICS = (Attr.TEST_ERROR, Attr.TEST_LOSS, Attr.TRAIN_LOSS, Attr.TRAIN_ERROR, Attr.IMAGES_PER_S, Attr.WALL_S)


def settle(
    study: optuna.Study,
    number: int,
    *,
    objective: str,
    error: bool | str,
    last_epoch: int | None = None,
    cancelled: bool = False,
) -> str:
    """Give a trial that Ray finished a final state if its worker did not; returns what was done."""
    frozen = get_trial(study, number)
    if frozen.state.is_finished():
        return "recorded"
    if cancelled:
        return "left running"  # a resumed sweep picks it up from its checkpoint
    if error:
        message = error if isinstance(error, str) else "the Ray trial failed after all retries"
        fail_trial(study, number, message)
        return "failed"
    epochs_done = int(frozen.user_attrs.get(Attr.EPOCHS_DONE, last_epoch or 0))
    budget = int(frozen.user_attrs.get(Attr.EPOCHS_BUDGET, 0))
    if budget and epochs_done >= budget:  # trained to the end; only the final write was cut off
        metrics = {k: frozen.user_attrs[k] for k in _FINAL_METRICS if frozen.user_attrs.get(k) is not None}
        finish_trial(study, number, metrics, objective=objective, diverged=bool(frozen.user_attrs.get(Attr.DIVERGED)))
        return "completed"
    if epochs_done == 0:
        fail_trial(study, number, "the Ray trial ended before its first epoch was recorded")
        return "failed"
    stop_trial(study, number, epochs_done=epochs_done)  # a scheduler (ASHA) stopped it at this budget
    return "stopped"


__all__ = ["StudySearcher", "settle"]
