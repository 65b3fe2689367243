"""Opening a sweep's studies and addressing its trials by number (any process holding a storage can)."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence

import optuna
from optuna.samplers import BaseSampler
from optuna.storages import BaseStorage
from optuna.study import Study, StudyDirection
from optuna.trial import FrozenTrial
from pydantic import ValidationError

from ..keys import Cell, Facet, parse_study_name, study_name
from ..spec import SweepSpec
from ..variants import VARIANT_NAMES, get_variant
from ..vocabulary import NAME_PATTERN
from . import _optuna
from .attrs import SPEC_ATTR, Attr
from .storage import as_storage

__all__ = [
    "existing_study_ids",
    "get_trial",
    "list_sweep_studies",
    "open_study",
    "stored_spec",
    "stored_spec_of",
    "study_key",
    "sweep_study_names",
    "trial_cell",
    "trial_id",
]


def study_key(variant: str, facet: Facet | None) -> str:
    """How a sweep's studies are keyed in hpscape's dicts: 'sgdw', or 'sgdw/schedule=step' with a facet."""
    return variant if facet is None else f"{variant}/{facet.label}"


def _checked_name(sweep: str, variant: str, facet: Facet | None) -> str:
    if not isinstance(sweep, str) or not NAME_PATTERN.fullmatch(sweep) or len(sweep) > 200:
        raise ValueError(
            f"bad sweep name {sweep!r}: use 1-200 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    get_variant(variant)
    return study_name(sweep, variant, facet)


def open_study(
    storage: BaseStorage | str,
    sweep: str,
    variant: str,
    facet: Facet | None = None,
    *,
    create: bool = True,
    sampler: BaseSampler | None = None,
) -> Study:
    """The study of one variant (and facet value) of a sweep; created (direction minimize) unless `create=False`.

    KeyError when it does not exist and `create` is False; ValueError for a study of that name that hpscape did
    not create (another direction).
    """
    name = _checked_name(sweep, variant, facet)
    storage = as_storage(storage)
    if create:
        study = optuna.create_study(
            storage=storage, study_name=name, direction="minimize", sampler=sampler, load_if_exists=True
        )
    else:
        try:
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler)
        except KeyError:
            raise KeyError(
                f"no study {name!r} in this storage: check the sweep name, or launch the sweep first "
                "(open_study(..., create=True))"
            ) from None
    if study.directions != [StudyDirection.MINIMIZE]:
        raise ValueError(
            f"study {name!r} exists with directions {study.directions}, not minimize: it was not created by "
            "hpscape; use another sweep name"
        )
    return study


def list_sweep_studies(storage: BaseStorage | str, sweep: str) -> dict[str, Study]:
    """Every study of `sweep` that exists, keyed by `study_key`, variants in registry order, facets as created."""
    storage = as_storage(storage)
    found: list[tuple[str, Facet | None]] = []
    for summary in sorted(storage.get_all_studies()):  # FrozenStudy orders by study id: creation order
        try:
            name, variant, facet = parse_study_name(summary.study_name)
        except ValueError:
            continue
        if name == sweep and variant in VARIANT_NAMES:
            found.append((variant, facet))
    found.sort(key=lambda item: VARIANT_NAMES.index(item[0]))  # stable: facets keep their creation order
    return {
        study_key(variant, facet): optuna.load_study(study_name=study_name(sweep, variant, facet), storage=storage)
        for variant, facet in found
    }


def trial_id(study: Study, number: int) -> int:
    """The storage id of trial `number`; KeyError naming the study when there is none."""
    storage, study_id = _optuna.storage_of(study), _optuna.study_id_of(study)
    try:
        return storage.get_trial_id_from_study_id_trial_number(study_id, number)
    except KeyError:
        raise KeyError(f"study {study.study_name!r} has no trial number {number}") from None


def get_trial(study: Study, number: int) -> FrozenTrial:
    """The current record of trial `number` (read from the storage, not a cache)."""
    return _optuna.storage_of(study).get_trial(trial_id(study, number))


def trial_cell(trial: FrozenTrial) -> Cell:
    """The grid point (with its axis names) and seed a trial trains."""
    return Cell.from_key(trial.user_attrs[Attr.CELL])


def stored_spec(study: Study) -> SweepSpec | None:
    """The SweepSpec the sweep was started with (study user attr ``sweep_spec``), validated; None if absent."""
    return stored_spec_of(_optuna.storage_of(study), _optuna.study_id_of(study))


def stored_spec_of(storage: BaseStorage, study_id: int) -> SweepSpec | None:
    """`stored_spec` by study id. A spec this version cannot read (none, or written by a newer one) gives None."""
    raw = storage.get_study_user_attrs(study_id).get(SPEC_ATTR)
    if not isinstance(raw, dict):
        return None
    return _validated(json.dumps(raw, sort_keys=True))


@functools.lru_cache(maxsize=256)
def _validated(text: str) -> SweepSpec | None:
    # Pages poll the same spec every few seconds; validating a 484-cell spec costs about a millisecond.
    try:
        return SweepSpec.model_validate(json.loads(text))
    except ValidationError:
        return None


def sweep_study_names(storage: BaseStorage, sweep: str,
                      studies: Sequence[tuple[str, Facet | None]] | None) -> dict[str, str]:
    """Study key -> study name: the given (variant, facet) pairs, or the studies of `sweep` that exist."""
    if studies is None:
        return {key: study.study_name for key, study in list_sweep_studies(storage, sweep).items()}
    return {study_key(variant, facet): study_name(sweep, variant, facet) for variant, facet in studies}


def existing_study_ids(storage: BaseStorage, wanted: Mapping[str, str]) -> dict[str, int]:
    """Study key -> id for the studies that exist (one query on a database)."""
    backend = _optuna.rdb_backend(storage)
    if backend is not None:
        found = _optuna.study_ids(backend, list(wanted.values()))
        return {key: found[name] for key, name in wanted.items() if name in found}
    ids = {}
    for key, name in wanted.items():
        try:
            ids[key] = storage.get_study_id_from_name(name)
        except KeyError:
            continue
    return ids
