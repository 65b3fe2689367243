"""Named sweeps: the paper's experiments at its sizes (`paper`) and CPU-sized ones on digits (`digits`).

`hpscape presets` lists them; docs/presets.md says what each one measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..errors import SpecError
from ..spec import SweepSpec
from .digits import DIGITS_PRESETS
from .paper import PAPER_PRESETS

__all__ = ["PRESETS", "get_preset"]

# Validated at import so a broken preset fails loudly and early.
PRESETS: Mapping[str, SweepSpec] = MappingProxyType(
    {spec.name: spec for spec in (SweepSpec.model_validate(values) for values in (*PAPER_PRESETS, *DIGITS_PRESETS))}
)


def get_preset(name: str, /, **overrides: Any) -> SweepSpec:
    """The preset `name` with top-level fields replaced by `overrides`, validated again.

    `name` is positional-only so that `name=...` overrides the sweep name.

    Nested fields are replaced whole (e.g. ``resources={"gpu": 1}`` resets cpu to its default).
    Overriding `bayes` drops the preset's `grid` (and vice versa) unless both are given.
    Raises SpecError for an unknown preset and pydantic.ValidationError for bad overrides.
    """
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; available presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].replace(**overrides)
