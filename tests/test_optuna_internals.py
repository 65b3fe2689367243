"""What `hpscape.landscapes.record._optuna` assumes of Optuna's internals: fails, naming it, when Optuna changes.

That module is the only user of Optuna's private parts (see its docstring for why each is needed).
"""

from __future__ import annotations

import math

import optuna
import pytest
from sqlalchemy import inspect

from hpscape.landscapes import Cell, claim_next, enqueue_cells, finish_trial, make_storage, open_study, record_epoch
from hpscape.landscapes.record import _optuna

# The tables and columns the SQL of `_optuna` reads or writes.
_COLUMNS = {
    "trials": {"trial_id", "number", "study_id", "state", "datetime_start"},
    "trial_params": {"trial_id", "param_name", "param_value"},
    "trial_values": {"trial_id", "objective", "value", "value_type"},
    "trial_user_attributes": {"trial_id", "key", "value_json"},
    "trial_intermediate_values": {"trial_id", "step", "intermediate_value", "intermediate_value_type"},
}


def test_study_and_trial_private_attributes_exist(storage_url: str) -> None:
    storage = make_storage(storage_url)
    study = open_study(storage, "internals", "sgd")
    # Study._storage (Optuna wraps an RDBStorage in a cache that keeps it as `_backend`).
    assert _optuna.rdb_backend(_optuna.storage_of(study)) is storage, "Study._storage / _CachedStorage._backend"
    assert _optuna.study_id_of(study) == storage.get_study_id_from_name("internals/sgd"), "Study._study_id"
    enqueue_cells(study, [Cell(0.1, 0.0, 0)], epochs_budget=1)
    trial = study.get_trials()[0]
    assert _optuna.frozen_trial_id(trial) == storage.get_trial_id_from_study_id_trial_number(
        _optuna.study_id_of(study), trial.number), "FrozenTrial._trial_id"
    assert _optuna.rdb_backend(storage) is storage
    assert hasattr(optuna.storages._rdb.models.TrialModel, "_datetime_start_utc") or optuna.__version__ < "5"


def test_the_tables_and_columns_the_sql_reads(storage_url: str) -> None:
    storage = make_storage(storage_url)
    open_study(storage, "tables", "sgd")
    tables = inspect(storage.engine)
    for table, columns in _COLUMNS.items():
        found = {column["name"] for column in tables.get_columns(table)}
        assert columns <= found, f"Optuna's {table} table lost {sorted(columns - found)}"


def test_the_stored_special_values_are_type_tagged(storage_url: str) -> None:
    storage = make_storage(storage_url)
    study = open_study(storage, "special", "sgd")
    enqueue_cells(study, [Cell(0.1, 0.0, 0)], epochs_budget=2)
    number = claim_next(study)
    record_epoch(study, number, 1, {"test_error": math.inf}, objective="test_error")
    storage.set_trial_intermediate_value(storage.get_trial_id_from_study_id_trial_number(
        _optuna.study_id_of(study), number), 2, math.inf)
    rows = _optuna.fetch(storage, "SELECT intermediate_value, intermediate_value_type FROM trial_intermediate_values "
                                  "ORDER BY step")
    kinds = [str(getattr(kind, "name", kind)) for _, kind in rows]
    assert rows[1][0] is None and kinds[1] in _optuna.STORED_SPECIAL, "inf is stored as NULL with a type tag"
    finish_trial(study, number, {"test_error": 0.5}, objective="test_error")


def test_the_sqlite_claim_is_atomic_and_stamps_the_start(tmp_path) -> None:
    storage = make_storage(f"sqlite:///{tmp_path / 'claim.db'}")
    study = open_study(storage, "claim", "sgd")
    enqueue_cells(study, [Cell(0.1, 0.0, 0)], epochs_budget=1)
    trial_id = _optuna.frozen_trial_id(study.get_trials()[0])
    assert _optuna.claim_sqlite(storage, trial_id) is True
    assert _optuna.claim_sqlite(storage, trial_id) is False, "a second claim of the same trial loses"
    trial = study.get_trials()[0]
    assert trial.state == optuna.trial.TrialState.RUNNING and trial.datetime_start is not None


def test_only_names_hpscape_owns_are_spliced_into_sql() -> None:
    assert _optuna.literal("lr", ["lr"]) == "'lr'" and _optuna.literal(7, []) == "7"
    with pytest.raises(ValueError, match="is not a name hpscape queries"):
        _optuna.literal("lr'; DROP TABLE trials; --", ["lr"])
    with pytest.raises(ValueError, match="not an SQL literal"):
        _optuna.literal(True, [])
