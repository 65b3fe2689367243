"""Labels and numbers as the figures show them: variant names, powers-of-two ticks, metric values."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from hpscape.landscapes import Landscape

__all__ = [
    "FIG2_CLIP",
    "VARIANT_LABELS",
    "axis_ticks",
    "default_clip",
    "format_value",
    "is_error_metric",
    "metric_label",
]

VARIANT_LABELS: Mapping[str, str] = {
    "sgd": "SGD (L2)",
    "sgdw": "SGDW",
    "adam": "Adam (L2)",
    "adamw": "AdamW (paper)",
    "adamw-torch": "AdamW (torch)",
}
# PROTOCOL section 3: Figure 2's colour = test error clipped to 3-7 %.
FIG2_CLIP = (0.03, 0.07)
# Decimal scales tried, in order, to write an axis as scale x 2^k.
_SCALES = (1.0, 0.1, 0.01, 0.001, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079")


def is_error_metric(metric: str) -> bool:
    return metric.endswith("error")


def metric_label(metric: str) -> str:
    """'test error (%)', 'test loss', ..."""
    words = metric.replace("_", " ")
    return f"{words} (%)" if is_error_metric(metric) else words


def format_value(metric: str, value: float | None, *, signed: bool = False) -> str:
    """A metric value as people read it: errors in percent (2 decimals), losses to 4 digits."""
    if value is None or not math.isfinite(value):
        return "—"
    sign = "+" if signed and value > 0 else ""
    if is_error_metric(metric):
        return f"{sign}{100 * value:.2f} %"
    return f"{sign}{value:.4g}"


def _power_label(exponent: int) -> str:
    if exponent == 0:
        return "1"
    return "2" + str(exponent).translate(_SUPERSCRIPT)


def axis_ticks(values: Sequence[float]) -> tuple[list[str], str]:
    """Tick labels for an axis and the scale they are in: ``(["0", "2⁻⁵", ...], "0.001")``.

    Values are written as scale x 2^k when one decimal scale makes every non-zero value an exact
    power of two (Figure 2's decay axis is 2^k x 0.001, Adam's lr 2^k x 0.1); otherwise as plain
    numbers with the scale "1". A 0 is labelled "0".
    """
    positive = [float(v) for v in values if v > 0]
    for scale in _SCALES:
        exponents = [math.log2(v / scale) for v in positive]
        if all(abs(e - round(e)) < 1e-6 for e in exponents):
            it = iter(exponents)
            labels = ["0" if v == 0 else _power_label(round(next(it))) for v in values]
            return labels, f"{scale:g}"
    return ["0" if v == 0 else f"{v:.3g}" for v in values], "1"


def default_clip(
    landscapes: Iterable[Landscape], metric: str, *, dataset: str | None = None
) -> tuple[float, float] | None:
    """The colour range: Figure 2's 3-7 % for CIFAR-10 test error, else from the measured means.

    The automatic range runs from the best cell to the 75th percentile of all cell means, so the
    good region gets most of the colours and a few bad cells do not flatten it (they clip).
    None when no cell has a value yet.
    """
    if dataset == "cifar10" and metric == "test_error":
        return FIG2_CLIP
    means = [l.mean[np.isfinite(l.mean)] for l in landscapes]
    values = np.concatenate(means) if means else np.zeros(0)
    if values.size == 0:
        return None
    lo = float(values.min())
    hi = float(np.percentile(values, 75))
    if hi <= lo:
        hi = float(values.max())
    if hi <= lo:
        hi = lo + max(abs(lo) * 0.1, 1e-6)
    return lo, hi
