"""How coupled a landscape's two knobs are: ridge slope with its interval, interaction, separability, basin.

- `ridge`: each row's optimum between grid points and the weighted line through them;
- `surface`: the local quadratic fit (interaction index, basin area and angle) and separability around the basin;
- `bootstrap`: the replicates every interval comes from;  `metrics`: `coupling_metrics` and the verdict;
- `cache`: metrics remembered by their landscape's content;
- `optimum`: the best row's optimum on the horizontal axis (the budget study's optimal decay).
"""

from .metrics import (
                      DEFAULT_BASIN_TOLERANCE,
                      VERDICT_BAND,
                      CouplingMetrics,
                      clear_coupling_cache,
                      coupling_metrics,
                      coupling_metrics_by_key,
)
from .optimum import AxisOptimum, axis_optimum

__all__ = ["DEFAULT_BASIN_TOLERANCE", "VERDICT_BAND", "AxisOptimum", "CouplingMetrics", "axis_optimum",
           "clear_coupling_cache", "coupling_metrics", "coupling_metrics_by_key"]
