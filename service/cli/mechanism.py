"""The end of `hpscape run`: one line per variant pair saying how well the equilibrium angle explains both landscapes.

    mechanism SGD (L2) vs SGDW: collapse score 0.97 [0.93, 0.99] (predicted angle; cells 30 + 24)

The score and its interval are `hpscape.landscapes.mechanism`'s; docs/science.md ("the collapse score") says what
they mean. A pair without a score says why (too few cells, a record without telemetry).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text

from hpscape.service.cli._common import console

__all__ = ["collapse_lines", "print_collapse_scores"]

_ANGLE_WORDS = {"theory": "predicted angle", "measured": "measured angle"}


def collapse_lines(pairs: list[Any]) -> list[str]:
    """One line per `Collapse`: its score with the 95 % interval, or why it has none."""
    from hpscape.dashboards.mechanism import collapse_text

    lines = []
    for c in pairs:
        used = " + ".join(str(c.used[v]) for v in c.variants)
        where = f"({_ANGLE_WORDS[c.angle]}; cells {used})"
        if c.score is None:
            reason = c.notes[-1] if c.notes else "nothing recorded yet"  # the reason there is none comes last
            line = f"mechanism {c.label}: no collapse score {where}: {reason}"
        else:
            line = f"mechanism {c.label}: collapse score {collapse_text(c)} {where}"
        lines.append(line)
    return lines


def print_collapse_scores(spec: Any, storage: str) -> None:
    """Print `collapse_lines` for the sweep's pairs (nothing for a sweep without an L2 / decoupled pair)."""
    from hpscape.landscapes import sweep_mechanism

    # Plain text, not rich markup: the interval's brackets are data. Not wrapped, so grep finds a whole line.
    for line in collapse_lines(sweep_mechanism(storage, spec.name, spec, metric=spec.metric)):
        console.print(Text(line), soft_wrap=True, highlight=False)
