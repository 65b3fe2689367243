"""What the Figure 2 view shows, as data: its rows of panels and the difference maps between them.

For each facet value (in the order the landscapes come), the rows of `landscape_pairs`: a variant and its
partner, each pair with its difference map (right minus left), then the unpaired variants alone. A panel is drawn
once: a row whose left variant already has a panel above (adamw in the row adamw | adamw-torch after adam | adamw)
leaves its left column to a note and keeps only the difference map against it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hpscape.landscapes import Landscape, LandscapeAxis, landscape_pairs

__all__ = ["FigureRow", "difference", "figure_rows"]


@dataclass(frozen=True)
class FigureRow:
    """One row of the figure; panels and pairs are study keys ('sgdw', 'sgdw/schedule=step')."""

    facet: str | None  # the facet label ("schedule=step"); None in a sweep without a facet
    left: str | None  # the left panel; None: the column holds a note (its panel is in a row above) or nothing
    right: str | None  # the right panel
    pair: tuple[str, str] | None  # the difference map's (left, right): right minus left

    def placeholder(self, column: int) -> str | None:
        """The study whose panel column `column` would repeat (drawn in a row above); None if the column is free."""
        if self.pair is None or (self.left, self.right)[column] is not None:
            return None
        return self.pair[column]

    def to_dict(self) -> dict[str, Any]:
        return {"facet": self.facet, "left": self.left, "right": self.right,
                "pair": None if self.pair is None else list(self.pair)}


def figure_rows(landscapes: Mapping[str, Landscape]) -> list[FigureRow]:
    """The rows of the figure for `landscapes` (keyed by study key, as `build_sweep_landscapes` gives them)."""
    blocks: dict[str | None, dict[str, str]] = {}  # facet label -> variant -> study key, in the dict's order
    for key, landscape in landscapes.items():
        facet = None if landscape.facet is None else landscape.facet.label
        blocks.setdefault(facet, {})[landscape.variant] = key
    rows: list[FigureRow] = []
    for facet, keys in blocks.items():
        drawn: set[str] = set()
        for left, right in landscape_pairs(keys):
            if right is None:
                rows.append(FigureRow(facet, keys[left], None, None))
                drawn.add(left)
                continue
            rows.append(FigureRow(
                facet,
                None if left in drawn else keys[left],
                None if right in drawn else keys[right],
                (keys[left], keys[right]),
            ))
            drawn.update((left, right))
    return rows


def difference(left: Landscape, right: Landscape) -> dict[str, Any]:
    """right − left on the cells both grids share: {"y", "x", "diff", "left", "right"}.

    "y" and "x" are `left`'s axes restricted to the shared values. Cells where either side has no measured value
    (empty, running, diverged) are NaN.
    """
    rows_l, rows_r = _common(left.y.values, right.y.values)
    cols_l, cols_r = _common(left.x.values, right.x.values)
    a = left.mean[np.ix_(rows_l, cols_l)]
    b = right.mean[np.ix_(rows_r, cols_r)]
    return {
        "y": _shared_axis(left.y, right.y, rows_l),
        "x": _shared_axis(left.x, right.x, cols_l),
        "diff": b - a,
        "left": a,
        "right": b,
    }


def _shared_axis(left: LandscapeAxis, right: LandscapeAxis, index: list[int]) -> LandscapeAxis:
    # The two sides may write the same axis with different symbols (λ′ for an L2 factor, λ for a decay rate):
    # the difference map's axis names both.
    symbol = left.symbol if left.symbol == right.symbol else f"{left.symbol} | {right.symbol}"
    return replace(left, values=left.values[index], symbol=symbol)


def _common(a: np.ndarray, b: np.ndarray) -> tuple[list[int], list[int]]:
    ia, ib = [], []
    for i, value in enumerate(a):
        hits = np.flatnonzero(np.isclose(b, value, rtol=1e-9, atol=0.0))
        if hits.size:
            ia.append(i)
            ib.append(int(hits[0]))
    return ia, ib
