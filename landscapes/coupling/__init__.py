"""How coupled a landscape's two knobs are: ridge slope with its interval, interaction, separability, basin.

- `ridge`: each row's optimum between grid points and the weighted line through them;
- `surface`: the local quadratic fit (interaction index, basin area and angle) and separability around the basin;
- `metrics`: `coupling_metrics`, the bootstrap intervals and the verdict.
"""

from .metrics import DEFAULT_BASIN_TOLERANCE, VERDICT_BAND, CouplingMetrics, coupling_metrics

__all__ = ["DEFAULT_BASIN_TOLERANCE", "VERDICT_BAND", "CouplingMetrics", "coupling_metrics"]
