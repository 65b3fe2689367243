"""coupling_metrics on constructed landscapes whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from hpscape.landscapes import DEFAULT_BASIN_TOLERANCE, Landscape, LandscapeAxis, coupling_metrics

LR = 2.0 ** np.arange(-10, 1)  # 11 rows, 2^-10 .. 2^0 (Figure 2's SGD axis)
# A "0" column + 11 log columns, wide enough that every row's valley bottom is on the grid.
WD = np.array([0.0, *(2.0 ** np.arange(-16, -5))])


def make_landscape(
    mean: np.ndarray,
    *,
    lr: np.ndarray = LR,
    wd: np.ndarray = WD,
    diverged: np.ndarray | None = None,
) -> Landscape:
    """A landscape with the given cell means (NaN: empty); diverged cells have no value."""
    mean = np.array(mean, dtype=float)
    diverged = np.zeros(mean.shape, bool) if diverged is None else np.asarray(diverged, bool)
    mean[diverged] = np.nan
    n = np.isfinite(mean).astype(int)
    state = np.where(diverged, "diverged", np.where(n > 0, "done", "empty")).astype(object)
    zeros = np.zeros(mean.shape, int)
    return Landscape(
        sweep="t", variant="sgd", facet=None, metric="test_error", epoch=None, kind="grid", spec_metric="test_error",
        epochs=None, y=LandscapeAxis.of("lr", lr, "sgd"), x=LandscapeAxis.of("weight_decay", wd, "sgd"), mean=mean,
        std=np.full(mean.shape, np.nan), n=n, count=n + diverged, n_diverged=diverged.astype(int), state=state,
        state_counts={"done": n, "diverged": diverged.astype(int), "stopped": zeros, "running": zeros,
                      "queued": zeros, "failed": zeros},
        budget=zeros, trials=[[[] for _ in range(mean.shape[1])] for _ in range(mean.shape[0])],
    )


def _coords() -> tuple[np.ndarray, np.ndarray]:
    """log2(lr) and log2(wd) of every cell (the 0 column acts like one octave below the smallest decay)."""
    x = np.log2(LR)[:, None] * np.ones((1, WD.size))
    with np.errstate(divide="ignore"):
        y = np.where(WD > 0, np.log2(np.where(WD > 0, WD, 1.0)), -17.0)[None, :] * np.ones((LR.size, 1))
    return x, y


def test_pure_diagonal_valley_has_slope_minus_one_and_low_separability() -> None:
    x, y = _coords()
    # Best decay per row on lr * wd = 2^-16, inside the grid for every row.
    valley = 0.04 + 0.01 * (x + y + 16.0) ** 2
    metrics = coupling_metrics(make_landscape(valley))
    assert metrics.ridge_slope == pytest.approx(-1.0, abs=1e-9)
    assert metrics.ridge_rows >= 8
    assert metrics.separability is not None and metrics.separability < 0.5
    assert metrics.best is not None and metrics.best["params"]["lr"] * metrics.best["params"]["weight_decay"] == pytest.approx(2.0**-16)
    # The basin is the diagonal: one cell per row where the valley crosses the grid exactly.
    on_diagonal = int(np.sum(np.isclose(x + y, -16.0)))
    assert metrics.basin_cells == on_diagonal


def test_separable_bowl_has_slope_zero_and_separability_one() -> None:
    x, y = _coords()
    bowl = 0.04 + 0.003 * (x + 4.0) ** 2 + 0.01 * (y + 11.0) ** 2
    metrics = coupling_metrics(make_landscape(bowl))
    assert metrics.ridge_slope == pytest.approx(0.0, abs=1e-12)
    assert metrics.separability == pytest.approx(1.0, abs=1e-9)
    assert metrics.best == {"params": {"lr": 2.0**-4, "weight_decay": 2.0**-11}, "value": pytest.approx(0.04)}
    assert metrics.basin_cells == int(np.sum(bowl <= 0.04 * (1 + DEFAULT_BASIN_TOLERANCE)))


def test_missing_and_diverged_cells_are_left_out() -> None:
    x, y = _coords()
    valley = 0.04 + 0.01 * (x + y + 16.0) ** 2
    rng = np.random.default_rng(1)
    holes = rng.random(valley.shape) < 0.25
    holes[np.isclose(x + y, -16.0)] = False  # keep the ridge itself measured
    with_holes = np.where(holes, np.nan, valley)
    # Diverged cells with a tempting (low) stored value must not count as the best.
    diverged = np.zeros(valley.shape, bool)
    diverged[-1, -3:] = True
    tempting = with_holes.copy()
    tempting[diverged] = 0.0
    metrics = coupling_metrics(make_landscape(tempting, diverged=diverged))
    assert metrics.ridge_slope == pytest.approx(-1.0, abs=1e-9)
    assert metrics.n_cells == int(np.sum(~holes & ~diverged))
    assert metrics.best is not None and metrics.best["value"] == pytest.approx(0.04)
    assert metrics.separability is not None and metrics.separability < 0.5

    # A separable bowl stays separable with holes and diverged cells.
    bowl = 0.04 + 0.003 * (x + 4.0) ** 2 + 0.01 * (y + 11.0) ** 2
    bowl_metrics = coupling_metrics(make_landscape(np.where(holes, np.nan, bowl), diverged=diverged))
    assert bowl_metrics.separability == pytest.approx(1.0, abs=1e-9)
    assert bowl_metrics.ridge_slope == pytest.approx(0.0, abs=1e-9)


def test_rows_whose_best_decay_is_zero_are_left_out_of_the_slope() -> None:
    x, y = _coords()
    valley = 0.04 + 0.01 * (x + y + 16.0) ** 2
    valley[:3, 0] = 0.0  # rows 0-2 prefer no decay at all
    metrics = coupling_metrics(make_landscape(valley))
    assert metrics.ridge_slope == pytest.approx(-1.0, abs=1e-9)
    assert all(wd > 0 for _, wd in metrics.ridge_points)
    assert len(metrics.ridge_points) == LR.size - 3
    assert any("best weight_decay is 0" in note for note in metrics.notes)


def test_undefined_metrics_are_none_with_a_reason() -> None:
    empty = coupling_metrics(make_landscape(np.full((LR.size, WD.size), np.nan)))
    assert empty.ridge_slope is None and empty.separability is None and empty.basin_cells == 0
    assert empty.best is None and "no cell has a measured value yet" in empty.notes

    one_row = np.full((LR.size, WD.size), np.nan)
    one_row[4] = np.linspace(0.1, 0.05, WD.size)
    metrics = coupling_metrics(make_landscape(one_row))
    assert metrics.ridge_slope is None
    assert any("at least two lr rows" in note for note in metrics.notes)
    assert metrics.separability is None  # 11 cells, 11 parameters: nothing left to explain

    flat = coupling_metrics(make_landscape(np.full((LR.size, WD.size), 0.05)))
    assert flat.separability is None and any("flat" in note for note in flat.notes)
    assert flat.basin_cells == LR.size * WD.size


def test_basin_tolerance_relative_and_absolute() -> None:
    mean = np.full((2, 3), np.nan)
    mean[0] = [0.040, 0.043, 0.045]
    mean[1] = [0.050, 0.0439, 0.100]
    land = make_landscape(mean, lr=np.array([0.1, 0.2]), wd=np.array([0.0, 0.001, 0.002]))
    assert coupling_metrics(land).basin_cells == 3  # <= 0.044 (10 % of 0.040)
    assert coupling_metrics(land, tolerance=0.0).basin_cells == 1
    assert coupling_metrics(land, tolerance=0.005, relative=False).basin_cells == 4  # <= 0.045
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        coupling_metrics(land, tolerance=-1)
    with pytest.raises(ValueError, match="clip must be"):
        coupling_metrics(land, clip=(0.1, 0.05))


def test_clip_limits_the_weight_of_very_bad_cells() -> None:
    x, y = _coords()
    bowl = 0.04 + 0.003 * (x + 4.0) ** 2 + 0.01 * (y + 11.0) ** 2
    bowl[0, 1] = 0.9  # one awful, non-additive cell dominates the variance unclipped
    unclipped = coupling_metrics(make_landscape(bowl)).separability
    clipped = coupling_metrics(make_landscape(bowl), clip=(0.03, 0.07)).separability
    assert unclipped is not None and clipped is not None and clipped != unclipped


def test_to_dict_is_json_ready() -> None:
    import json

    x, y = _coords()
    metrics = coupling_metrics(make_landscape(0.04 + 0.01 * (x + y + 16.0) ** 2))
    body = metrics.to_dict()
    json.dumps(body, allow_nan=False)
    assert body["ridge_slope"] == pytest.approx(-1.0) and isinstance(body["ridge_points"][0], list)


def test_separability_matches_a_least_squares_reference() -> None:
    """The backfitted additive model equals an explicit least-squares fit, holes included."""

    def reference(mean: np.ndarray) -> float:
        rows, cols = np.nonzero(np.isfinite(mean))
        v = mean[rows, cols]
        _, r = np.unique(rows, return_inverse=True)
        _, c = np.unique(cols, return_inverse=True)
        n_r = r.max() + 1
        design = np.zeros((v.size, n_r + c.max()))
        design[:, 0] = 1
        design[r > 0, r[r > 0]] = 1
        design[c > 0, n_r + c[c > 0] - 1] = 1
        coef, *_ = np.linalg.lstsq(design, v, rcond=None)
        return 1 - np.sum((v - design @ coef) ** 2) / np.sum((v - v.mean()) ** 2)

    rng = np.random.default_rng(7)
    for _ in range(5):
        mean = rng.random((LR.size, WD.size))
        mean[rng.random(mean.shape) < 0.4] = np.nan
        got = coupling_metrics(make_landscape(mean)).separability
        assert got == pytest.approx(reference(mean), abs=1e-9)
