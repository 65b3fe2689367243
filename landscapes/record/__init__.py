"""How sweeps are stored in Optuna, shared by the Ray workers, the driver and the service.

One study per variant (and facet value), named ``NAME/VARIANT`` or ``NAME/VARIANT/AXIS=VALUE``, direction
minimize, in any SQLAlchemy URL. Trial params are keyed by the swept axes' names (``lr``, ``weight_decay``,
``beta1`` ...) with real Optuna distributions (log where the axis is log and holds no 0), so the studies open
unchanged in optuna-dashboard. Bookkeeping lives in trial user attrs (names in `Attr`), the whole per-epoch record
in the user attr ``history``, and the objective once per epoch as an intermediate value (step = epoch, from 1).

Every function addresses trials by their NUMBER, so any process holding a storage can write: the driver claims a
trial, a Ray worker records its epochs and finishes it, the service reads.

- `storage`: URLs and storages;  `studies`: opening studies, finding trials;  `claims`: enqueue, claim, ask;
- `outcomes`: epochs and endings;  `summary`: counts and best cells;  `pages`: trials page by page;
- `throughput`: how fast earlier trials ran;
- `_optuna`: the only use of Optuna internals.
"""

from ._optuna import FINISHED_STATES
from .attrs import DIVERGED_LOSS, DIVERGED_VALUE, SPEC_ATTR, Attr, diverged_value
from .claims import ask_bayes, claim_next, enqueue_cells
from .outcomes import (
    fail_trial,
    finish_trial,
    reconcile_orphans,
    record_epoch,
    running_trials,
    set_trial_attrs,
    stop_trial,
)
from .storage import as_storage, ensure_sqlite_dir, make_storage, sqlite_file
from .studies import (
    get_trial,
    list_sweep_studies,
    open_study,
    stored_spec,
    stored_spec_of,
    study_key,
    trial_cell,
    trial_id,
)
from .summary import summarize_trials, sweep_summary
from .throughput import measured_throughput

__all__ = [
    "DIVERGED_LOSS",
    "DIVERGED_VALUE",
    "FINISHED_STATES",
    "SPEC_ATTR",
    "Attr",
    "as_storage",
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
    "measured_throughput",
    "open_study",
    "reconcile_orphans",
    "record_epoch",
    "running_trials",
    "set_trial_attrs",
    "sqlite_file",
    "stop_trial",
    "stored_spec",
    "stored_spec_of",
    "study_key",
    "summarize_trials",
    "sweep_summary",
    "trial_cell",
    "trial_id",
]
