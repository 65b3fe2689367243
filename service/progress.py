"""What the Optuna record says about a sweep, as the API shows it: summaries, trial rows, CSV export.

Counts and best cells come from the record layer's one reader (`hpscape.landscapes.sweep_summary`: aggregate
queries on a database, kept per study as trials finish); trial rows from its pages (`sweep_trial_page`,
`iter_sweep_trials`: LIMIT/OFFSET or keyset over trial numbers in SQL), never from loading the whole record.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from optuna.storages import BaseStorage

from hpscape.landscapes import SweepSpec, study_key, sweep_summary
from hpscape.landscapes.record import Attr
from hpscape.landscapes.record.pages import TrialRecord, iter_sweep_trials, sweep_trial_page

__all__ = [
    "EXPORT_PAGE",
    "TRIAL_COLUMNS",
    "csv_chunks",
    "iter_sweep_trials",
    "compact_history",
    "raw_history",
    "study_refs",
    "summarize",
    "trial_columns",
    "trial_page",
    "trial_row",
    "trials_csv",
]

# The columns of every trial row; the swept axes' columns (named after them) come after "state".
TRIAL_COLUMNS = (
    "variant", "facet", "number", "state", "seed", "value", "epochs_done", "epochs_budget", "diverged",
    "stopped_early", "test_error", "test_loss", "train_error", "train_loss", "images_per_s", "wall_s", "started_at",
    "completed_at", "error", "hyperparameters", "history",
)
# Trials per page of an export: about 2 MB with 100-epoch histories.
EXPORT_PAGE = 100
assert TRIAL_COLUMNS[-1] == "history", "the CSV writes the history cell, the last, by hand (_csv_text)"


def study_refs(spec: SweepSpec, variant: str | None = None, facet: str | None = None) -> list[tuple[str, Any]]:
    """The spec's (variant, facet) studies in spec order, only those of `variant` and of facet label `facet`."""
    return [(v, f) for v, f in spec.studies()
            if (variant is None or v == variant) and (facet is None or (f is not None and f.label == facet))]


def summarize(storage: BaseStorage, record_name: str, spec: SweepSpec) -> dict[str, dict[str, Any]]:
    """Per study key: counts by state, diverged count, the best cell, and how many trials the spec plans."""
    summary = sweep_summary(storage, record_name, spec.studies())
    for variant, facet in spec.studies():
        summary[study_key(variant, facet)]["total"] = spec.study_trials(variant)
    return summary


def _finite(value: Any) -> float | None:
    # JSON has no NaN or infinity; an undefined measurement is null.
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float replaced by None (what a JSON response holds)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    return value


def _has_non_finite(raw: str) -> bool:
    """Whether stored JSON text may hold NaN or Infinity (json.dumps writes them as such): the only capitals JSON
    text can hold outside strings, so one letter is a memchr and most texts need no walk through `_json_safe`."""
    return ("N" in raw or "I" in raw) and ("NaN" in raw or "Infinity" in raw)


def _history(raw: str | None) -> list[dict[str, Any]] | None:
    if raw is None:
        return None
    history = json.loads(raw)
    if not isinstance(history, list) or not all(isinstance(entry, dict) for entry in history):
        return None
    return _json_safe(history)


def raw_history(raw: str | None) -> str | None:
    """The stored history text if a response can carry it as it is: strict JSON (no NaN or Infinity, which
    `record_epoch` never writes) and a list of objects; else None."""
    if raw is None or not (raw == "[]" or raw.startswith("[{")) or _has_non_finite(raw):
        return None
    return raw


def compact_history(raw: str | None) -> str | None:
    """The history as compact JSON text (what `json.dumps(..., separators=(",", ":"))` writes), from the stored
    text without decoding it where that is exact; None for no usable history."""
    text = raw_history(raw)
    if text is not None and "\\" not in text:
        # Without backslashes no string holds a quote, so the pieces between quotes alternate outside, inside: when
        # no string holds ", " or ": ", every one in the text is a separator json.dumps wrote. (Joined and searched
        # in C: a loop over a 100-epoch history's 3 000 pieces costs five times as much.)
        inside = '"'.join(text.split('"')[1::2])
        if ", " not in inside and ": " not in inside:
            return text.replace(", ", ",").replace(": ", ":")
    history = _history(raw)
    return None if history is None else json.dumps(history, separators=(",", ":"), allow_nan=False)


def trial_row(key: str, trial: TrialRecord, *, history: bool = True) -> dict[str, Any]:
    """One trial as a flat, JSON-ready record: TRIAL_COLUMNS plus "params" (the swept axes' values).

    `history=False` leaves the history out (None), for callers that pass its stored text on (`raw_history`).
    """
    keys = [key_ for key_ in trial.raw_attrs if key_ != Attr.HISTORY]
    # One decode of all the attrs' texts as a JSON array: a json.loads per attr costs twice as much.
    attrs = dict(zip(keys, json.loads("[" + ",".join(trial.raw_attrs[key_] for key_ in keys) + "]")))
    epochs_done = attrs.get(Attr.EPOCHS_DONE)
    epochs_budget = attrs.get(Attr.EPOCHS_BUDGET)
    seed = attrs.get(Attr.SEED)
    variant, _, facet = key.partition("/")
    values = attrs.get(Attr.HYPERPARAMETERS)
    return {
        "variant": variant,
        "facet": facet or None,
        "number": trial.number,
        "state": trial.state,
        "params": dict(trial.params),
        "seed": seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
        "value": _finite(trial.values[0]) if trial.values is not None and len(trial.values) == 1 else None,
        "epochs_done": epochs_done if isinstance(epochs_done, int) and not isinstance(epochs_done, bool) else None,
        "epochs_budget": epochs_budget if isinstance(epochs_budget, int) and not isinstance(epochs_budget, bool)
        else None,
        "diverged": bool(attrs.get(Attr.DIVERGED, False)),
        "stopped_early": bool(attrs.get(Attr.STOPPED_EARLY, False)),
        "test_error": _finite(attrs.get(Attr.TEST_ERROR)),
        "test_loss": _finite(attrs.get(Attr.TEST_LOSS)),
        "train_error": _finite(attrs.get(Attr.TRAIN_ERROR)),
        "train_loss": _finite(attrs.get(Attr.TRAIN_LOSS)),
        "images_per_s": _finite(attrs.get(Attr.IMAGES_PER_S)),
        "wall_s": _finite(attrs.get(Attr.WALL_S)),
        "started_at": trial.datetime_start,
        "completed_at": trial.datetime_complete,
        "error": attrs.get(Attr.ERROR) if isinstance(attrs.get(Attr.ERROR), str) else None,
        "hyperparameters": (_json_safe(values) if _has_non_finite(trial.raw_attrs[Attr.HYPERPARAMETERS]) else values)
        if isinstance(values, dict) else None,
        "history": _history(trial.raw_attrs.get(Attr.HISTORY)) if history else None,
    }


def trial_page(
    storage: BaseStorage, record_name: str, spec: SweepSpec, *, offset: int, limit: int, variant: str | None = None,
    facet: str | None = None, state: str | None = None, history: bool = True,
) -> tuple[list[tuple[str, TrialRecord]], int]:
    """One page of the sweep's trials (studies in spec order, trials by number) and how many match in all."""
    return sweep_trial_page(storage, record_name, study_refs(spec, variant, facet), offset=offset, limit=limit,
                            state=state, history=history)


def trial_columns(axes: Iterable[str]) -> list[str]:
    """The CSV header: TRIAL_COLUMNS with the swept axes' columns after "state"."""
    base = list(TRIAL_COLUMNS)
    at = base.index("state") + 1
    return [*base[:at], *axes, *base[at:]]


class _JsonText(str):
    """JSON text already written (a compact history), put in its CSV cell as it is."""


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, _JsonText):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet would run it as a formula (CSV injection)
    return value


def _quoted(text: str) -> str:
    """`text` as the csv module writes a field (QUOTE_MINIMAL, "\\n" lines): quoted, with its quotes doubled, when it
    holds a delimiter, a quote or a line break. Done by hand for the history: csv's writer is ten times slower
    on a 50 kB cell."""
    if '"' in text or "," in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _csv_text(rows: Iterable[dict[str, Any]], axes: list[str], extra: dict[str, str], *, header: bool) -> str:
    line = io.StringIO()
    writer = csv.writer(line, lineterminator="\n")
    columns = trial_columns(axes)
    before_history = columns[:-1]
    pieces = []
    if header:
        writer.writerow([*extra, *columns])
        pieces.append(line.getvalue())
        line.seek(0)
        line.truncate()
    for row in rows:
        values = {**row, **{axis: row["params"].get(axis) for axis in axes}}
        writer.writerow([*extra.values(), *(_cell(values[column]) for column in before_history)])
        history = _cell(values["history"])
        pieces += [line.getvalue()[:-1], ",", _quoted(history) if isinstance(history, str) else str(history), "\n"]
        line.seek(0)
        line.truncate()
    return "".join(pieces)


def trials_csv(rows: Iterable[dict[str, Any]], axes: Iterable[str], *, extra: dict[str, str] | None = None) -> str:
    """CSV text with a header line; the history and hyperparameters are compact JSON in their columns.

    `extra` columns (e.g. the sweep id) are prepended to every row.
    """
    return _csv_text(rows, list(axes), extra or {}, header=True)


def csv_chunks(storage: BaseStorage, record_name: str, spec: SweepSpec, *, extra: dict[str, str] | None = None,
               page_size: int = EXPORT_PAGE) -> Iterator[str]:
    """`trials_csv` of every trial of the sweep in pieces: the header, then a page of trials at a time."""
    axes, extra = list(spec.swept_axes), extra or {}
    yield _csv_text([], axes, extra, header=True)
    for page in iter_sweep_trials(storage, record_name, spec.studies(), page_size=page_size):
        rows = []
        for key, trial in page:
            row = trial_row(key, trial, history=False)
            history = compact_history(trial.raw_attrs.get(Attr.HISTORY))
            row["history"] = None if history is None else _JsonText(history)
            rows.append(row)
        yield _csv_text(rows, axes, extra, header=False)
