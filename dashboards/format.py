"""Labels and numbers as the figures show them: axis ticks by the axis's scale, axis titles, metric values."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from hpscape.landscapes import CouplingMetrics, Landscape, LandscapeAxis

__all__ = [
    "coupling_text",
    "slope_text",
    "FIG2_CLIP",
    "axis_ticks",
    "axis_title",
    "coordinate",
    "default_clip",
    "format_value",
    "is_error_metric",
    "metric_label",
]

# docs/science.md, "Figure 2": Figure 2's colour = test error clipped to 3-7 %.
FIG2_CLIP = (0.03, 0.07)
# Decimal scales tried, in order, to write a log2 axis as scale x 2^k.
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


def _power(base: int, exponent: int) -> str:
    return "1" if exponent == 0 else f"{base}{str(exponent).translate(_SUPERSCRIPT)}"


def _integral(values: Iterable[float]) -> list[int] | None:
    """The values rounded, if every one is (to 1e-6) an integer; None otherwise."""
    out = []
    for value in values:
        if abs(value - round(value)) >= 1e-6:
            return None
        out.append(round(value))
    return out


def _log2_ticks(values: Sequence[float]) -> tuple[list[str], str]:
    positive = [float(v) for v in values if v > 0]
    for scale in _SCALES:
        exponents = _integral(math.log2(v / scale) for v in positive)
        if exponents is not None:
            it = iter(exponents)
            return ["0" if v == 0 else _power(2, next(it)) for v in values], f"{scale:g}"
    return ["0" if v == 0 else f"{v:.3g}" for v in values], "1"


def _log10_tick(value: float) -> str:
    if value == 0:
        return "0"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10.0**exponent
    if abs(mantissa - round(mantissa)) < 1e-6 and round(mantissa) == 10:  # 9.99999 x 10^k rounding up
        mantissa, exponent = 1.0, exponent + 1
    if abs(mantissa - 1) < 1e-6:
        return _power(10, exponent)
    return f"{mantissa:.3g}×{_power(10, exponent)}"


def axis_ticks(values: Sequence[float], scale: str = "log2") -> tuple[list[str], str]:
    """Tick labels for an axis and the decimal scale they are in: ``(["0", "2⁻⁵", ...], "0.001")``.

    - ``log2``: scale x 2^k when one decimal scale makes every non-zero value an exact power of two (Figure 2's
      decay axis is 2^k x 0.001, Adam's lr 2^k x 0.1); otherwise plain numbers with the scale "1";
    - ``log10``: powers of ten ("10⁻⁸"), a mantissa where one is needed ("3×10⁻⁸"); scale "1";
    - ``linear`` (and anything else): plain numbers ("0.9", "0.999"); scale "1".

    A 0 is labelled "0" on every scale.
    """
    if scale == "log2":
        return _log2_ticks(values)
    if scale == "log10":
        return [_log10_tick(float(v)) for v in values], "1"
    return [f"{float(v):.6g}" for v in values], "1"


def axis_title(axis: LandscapeAxis, decimal_scale: str = "1") -> str:
    """'learning rate α (× 0.1)', 'weight decay λ′ (× 0.001)', 'beta1 β₁', 'batch size b (images)'."""
    return axis.title + ("" if decimal_scale == "1" else f" (× {decimal_scale})")


def _hover_name(axis: LandscapeAxis) -> str:
    # The short name ("lr", "beta1"); the decay keeps its symbol, because λ′ (an L2 factor) and λ (a decay rate)
    # are different quantities at the same number.
    words = axis.name.replace("_", " ")
    return f"{words} {axis.symbol}" if axis.name == "weight_decay" and axis.symbol else words


def coordinate(axis: LandscapeAxis, index: int, labels: Sequence[str], decimal_scale: str) -> str:
    """One axis value as a hover line writes it: 'lr 2⁻³ (0.125)', 'weight decay λ′ 2⁻⁷×0.001 (7.81e-06)',
    'beta1 0.9', 'batch size 2⁷ (128 images)'."""
    value = float(axis.values[index])
    unit = f" {axis.unit}" if axis.unit else ""
    if value == 0:
        text = "0"
    elif axis.log:
        pretty = labels[index] if decimal_scale == "1" else f"{labels[index]}×{decimal_scale}"
        text = f"{pretty} ({value:.3g}{unit})"
    else:
        text = f"{labels[index]} ({axis.unit})" if axis.unit else labels[index]
    return f"{_hover_name(axis)} {text}"


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
    means = [land.mean[np.isfinite(land.mean)] for land in landscapes]
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


def slope_text(metrics: CouplingMetrics) -> str:
    """'−0.98 [−1.05, −0.91]' (the slope and its 95 % interval), '−0.98 (no interval)', or '—'."""
    if metrics.ridge_slope is None:
        return "—"
    text = f"{metrics.ridge_slope:+.2f}".replace("-", "−")
    if metrics.ridge_slope_ci is None:
        return f"{text} (no interval)"
    lo, hi = (f"{v:+.2f}".replace("-", "−") for v in metrics.ridge_slope_ci)
    return f"{text} [{lo}, {hi}]"


def coupling_text(metrics: CouplingMetrics) -> str:
    """One line for a panel: slope with interval, verdict, interaction and separability."""
    parts = [f"ridge slope {slope_text(metrics)}", metrics.verdict]
    if metrics.interaction is not None:
        parts.append(f"interaction {metrics.interaction:.2f}")
    if metrics.separability is not None:
        parts.append(f"separability {metrics.separability:.2f}")
    return " · ".join(parts)
