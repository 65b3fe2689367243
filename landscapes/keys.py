"""How a sweep's pieces are named in the Optuna record: studies, facets and grid cells.

    NAME/VARIANT                     one study per variant, without a facet
    NAME/VARIANT/AXIS=VALUE          one per variant and facet value, e.g. fig1/adamw/schedule=step

A cell key names one (grid point, seed) inside a study: ``lr=0.125|wd=0.001|seed=0`` (weight_decay is written
``wd``, as hpscape 0.1 wrote it, so old records resume without enqueueing their cells twice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .axes import format_axis_value, get_axis, parse_axis_value

__all__ = ["Cell", "Facet", "parse_study_name", "study_name"]

# Axis names as they appear in cell keys; every other axis is written by its name.
_KEY_NAMES = {"weight_decay": "wd"}
_KEY_AXES = {short: name for name, short in _KEY_NAMES.items()}


@dataclass(frozen=True, order=True)
class Facet:
    """The third axis's value that one set of landscapes holds fixed, e.g. schedule=step."""

    axis: str
    value: Any

    @property
    def label(self) -> str:
        return f"{self.axis}={format_axis_value(self.value)}"

    @classmethod
    def parse(cls, label: str) -> Facet:
        """Inverse of `label`; ValueError for text that is not ``AXIS=VALUE`` of a known axis."""
        axis, sep, text = label.partition("=")
        if not sep:
            raise ValueError(f"bad facet {label!r}: expected AXIS=VALUE, e.g. schedule=step")
        return cls(axis, parse_axis_value(get_axis(axis), text))


def study_name(sweep: str, variant: str, facet: Facet | None = None) -> str:
    """The Optuna study that holds one variant (and facet value) of a sweep."""
    return f"{sweep}/{variant}" if facet is None else f"{sweep}/{variant}/{facet.label}"


def parse_study_name(name: str) -> tuple[str, str, Facet | None]:
    """(sweep, variant, facet or None) of a study name; ValueError if it is not one of hpscape's."""
    parts = name.split("/")
    if len(parts) == 2 and all(parts):
        return parts[0], parts[1], None
    if len(parts) == 3 and all(parts):
        return parts[0], parts[1], Facet.parse(parts[2])
    raise ValueError(f"{name!r} is not an hpscape study name (NAME/VARIANT or NAME/VARIANT/AXIS=VALUE)")


@dataclass(frozen=True, order=True)
class Cell:
    """One grid point and seed: `y` on the vertical axis, `x` on the horizontal one (names in `axes`)."""

    y: Any
    x: Any
    seed: int
    axes: tuple[str, str] = ("lr", "weight_decay")

    @property
    def params(self) -> dict[str, Any]:
        """The trial params: {vertical axis: y, horizontal axis: x}."""
        return {self.axes[0]: self.y, self.axes[1]: self.x}

    @property
    def key(self) -> str:
        parts = [f"{_KEY_NAMES.get(a, a)}={format_axis_value(v)}" for a, v in zip(self.axes, (self.y, self.x))]
        return "|".join([*parts, f"seed={self.seed}"])

    @classmethod
    def from_key(cls, key: str) -> Cell:
        """Inverse of `key`."""
        try:
            pairs = [part.split("=", 1) for part in key.split("|")]
            (ya, yv), (xa, xv), (seed_name, seed) = pairs
            if seed_name != "seed":
                raise ValueError(seed_name)
            y_axis, x_axis = get_axis(_KEY_AXES.get(ya, ya)), get_axis(_KEY_AXES.get(xa, xa))
            return cls(parse_axis_value(y_axis, yv), parse_axis_value(x_axis, xv), int(seed),
                       (y_axis.name, x_axis.name))
        except ValueError:
            raise ValueError(f"bad cell key {key!r}: expected 'AXIS=<value>|AXIS=<value>|seed=<int>'") from None
