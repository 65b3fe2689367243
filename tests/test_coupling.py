"""coupling_metrics on constructed landscapes whose answers are known."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from hpscape.landscapes import DEFAULT_BASIN_TOLERANCE, Landscape, LandscapeAxis, coupling_metrics

LR = 2.0 ** np.arange(-10, 1)  # 11 rows, 2^-10 .. 2^0 (Figure 2's SGD axis)
# A "0" column + 11 log columns, wide enough that every row's valley bottom is inside the grid.
WD = np.array([0.0, *(2.0 ** np.arange(-17, -6))])


def make_landscape(
    values: np.ndarray,
    *,
    lr: np.ndarray = LR,
    wd: np.ndarray = WD,
    diverged: np.ndarray | None = None,
) -> Landscape:
    """A landscape from cell means (rows x cols) or per-seed values (seeds x rows x cols); NaN: no value."""
    samples = np.array(values, dtype=float)
    if samples.ndim == 2:
        samples = samples[None]
    diverged = np.zeros(samples.shape[1:], bool) if diverged is None else np.asarray(diverged, bool)
    samples[:, diverged] = np.nan
    n = np.isfinite(samples).sum(axis=0)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a cell no seed measured: NaN, as meant
        mean = np.where(n > 0, np.nanmean(np.where(np.isfinite(samples), samples, np.nan), axis=0), np.nan)
        std = np.where(n > 1, np.nanstd(samples, axis=0, ddof=1), np.nan)
    state = np.where(diverged, "diverged", np.where(n > 0, "done", "empty")).astype(object)
    zeros = np.zeros(mean.shape, int)
    return Landscape(
        sweep="t", variant="sgd", facet=None, metric="test_error", epoch=None, kind="grid", spec_metric="test_error",
        epochs=None, y=LandscapeAxis.of("lr", lr, "sgd"), x=LandscapeAxis.of("weight_decay", wd, "sgd"), mean=mean,
        std=std, n=n, count=n + diverged, n_diverged=diverged.astype(int), state=state,
        state_counts={"done": n, "diverged": diverged.astype(int), "stopped": zeros, "running": zeros,
                      "queued": zeros, "failed": zeros},
        budget=zeros, trials=[[[] for _ in range(mean.shape[1])] for _ in range(mean.shape[0])],
        seeds=tuple(range(samples.shape[0])), samples=samples,
    )


def _coords(lr: np.ndarray = LR, wd: np.ndarray = WD) -> tuple[np.ndarray, np.ndarray]:
    """log2(lr) per row and log2(wd) per column of every cell (the 0 column one octave below the smallest)."""
    y = np.log2(lr)[:, None] * np.ones((1, wd.size))
    with np.errstate(divide="ignore"):
        x = np.where(wd > 0, np.log2(np.where(wd > 0, wd, 1.0)), np.log2(wd[wd > 0].min()) - 1)[None, :]
    return y, x * np.ones((lr.size, 1))


# ---------------------------------------------------------------------------------------------
# Known answers: the ridge's slope between grid points, with an interval that covers it

# Coarse grids, two octaves (4x) between neighbours, as the CPU presets use: 5 rows x 7 columns.
COARSE_LR = 2.0 ** np.arange(-8, 1, 2)
COARSE_WD = 2.0 ** np.arange(-14, -1, 2)


def _valley(slope: float, shape: str = "quadratic") -> np.ndarray:
    """A landscape whose rows' optima lie on log2(wd) = slope * (log2(lr) + 4) - 8, i.e. a ridge of that slope."""
    y, x = _coords(COARSE_LR, COARSE_WD)
    d = x - (slope * (y + 4) - 8)
    f = 0.01 * d**2 if shape == "quadratic" else 0.2 * (1 - np.exp(-(d**2) / 18))  # a Gaussian well
    return 0.4 + f + 0.003 * (y + 4) ** 2


@pytest.mark.parametrize("slope", [-0.35, -0.8, 0.0])
@pytest.mark.parametrize("shape", ["quadratic", "gaussian"])
def test_non_integer_slopes_on_a_coarse_grid_are_recovered(slope: float, shape: str) -> None:
    # A best-cell line on this grid could only say -1, -0.5, 0 ...: the sub-grid optima see the truth.
    clean = coupling_metrics(make_landscape(_valley(slope, shape), lr=COARSE_LR, wd=COARSE_WD))
    assert clean.ridge_slope == pytest.approx(slope, abs=0.02 if shape == "gaussian" else 1e-9)
    assert clean.ridge_rows == COARSE_LR.size
    assert clean.ridge_slope_ci is not None and clean.ridge_slope_ci[0] <= slope <= clean.ridge_slope_ci[1]
    assert clean.ridge_ci_method == "residual bootstrap over cells (one seed)"


@pytest.mark.parametrize("slope", [-0.35, -0.8, 0.0])
def test_with_noise_over_seeds_the_estimate_is_close_and_the_interval_covers(slope: float) -> None:
    covered, errors = 0, []
    for draw in range(20):
        rng = np.random.default_rng(draw)
        seeds = _valley(slope)[None] + 0.006 * rng.standard_normal((4, COARSE_LR.size, COARSE_WD.size))
        metrics = coupling_metrics(make_landscape(seeds, lr=COARSE_LR, wd=COARSE_WD))
        assert metrics.ridge_ci_method == "parametric bootstrap from the spread of 4 seeds"
        errors.append(abs(metrics.ridge_slope - slope))
        lo, hi = metrics.ridge_slope_ci
        covered += lo <= slope <= hi
    assert max(errors) < 0.08, errors
    assert covered >= 17, f"a 95 % interval covered the truth in {covered} of 20 noisy landscapes"


@pytest.mark.parametrize(("seeds", "method"), [(2, "parametric bootstrap from the spread of 2 seeds"),
                                               (8, "bootstrap over 8 seeds")])
def test_few_seeds_are_redrawn_with_their_noise_many_are_resampled(seeds: int, method: str) -> None:
    covered = 0
    for draw in range(20):
        rng = np.random.default_rng(200 + draw)
        noisy = _valley(-0.8)[None] + 0.008 * rng.standard_normal((seeds, COARSE_LR.size, COARSE_WD.size))
        metrics = coupling_metrics(make_landscape(noisy, lr=COARSE_LR, wd=COARSE_WD))
        assert metrics.ridge_ci_method == method and abs(metrics.ridge_slope + 0.8) < 0.08
        covered += metrics.ridge_slope_ci[0] <= -0.8 <= metrics.ridge_slope_ci[1]
    assert covered >= 17, covered


def test_one_seed_gets_a_residual_bootstrap_that_covers() -> None:
    covered = 0
    for draw in range(20):
        rng = np.random.default_rng(100 + draw)
        noisy = _valley(-0.8) + 0.003 * rng.standard_normal((COARSE_LR.size, COARSE_WD.size))
        metrics = coupling_metrics(make_landscape(noisy, lr=COARSE_LR, wd=COARSE_WD))
        assert abs(metrics.ridge_slope + 0.8) < 0.08
        covered += metrics.ridge_slope_ci[0] <= -0.8 <= metrics.ridge_slope_ci[1]
    assert covered >= 17, covered


def test_the_same_landscape_gives_the_same_interval() -> None:
    seeds = _valley(-0.35)[None] + 0.006 * np.random.default_rng(0).standard_normal((3, 5, 7))
    first = coupling_metrics(make_landscape(seeds, lr=COARSE_LR, wd=COARSE_WD))
    again = coupling_metrics(make_landscape(seeds, lr=COARSE_LR, wd=COARSE_WD))
    assert first.ridge_slope_ci == again.ridge_slope_ci


# ---------------------------------------------------------------------------------------------
# Rows left out, and a grid too small to say anything


def test_rows_whose_best_cell_is_at_the_edge_or_in_the_zero_column_are_flagged_and_left_out() -> None:
    y, x = _coords()
    valley = 0.04 + 0.01 * (x + y + 16.0) ** 2
    valley[:3, 0] = 0.0  # rows 0-2 prefer no decay at all
    valley[10, -1] = 0.0  # the last row's best at the right edge
    metrics = coupling_metrics(make_landscape(valley))
    assert metrics.ridge_slope == pytest.approx(-1.0, abs=1e-9)
    assert metrics.ridge_rows == LR.size - 4 and len(metrics.ridge_points) == LR.size - 4
    assert all(wd > 0 for _, wd in metrics.ridge_points)
    notes = " ".join(metrics.notes)
    assert "left out of the ridge: best in the 0 column" in notes
    assert "left out of the ridge: best at the grid's edge" in notes and "lr row(s) 1 " in notes


def test_a_two_by_two_grid_at_chance_says_inconclusive() -> None:
    # 57 % error on 2 x 2 cells: every best cell is at an edge, so nothing can be said about coupling.
    land = make_landscape(np.array([[0.57, 0.58], [0.59, 0.56]]), lr=np.array([0.1, 0.2]),
                          wd=np.array([0.001, 0.002]))
    metrics = coupling_metrics(land)
    assert metrics.verdict == "inconclusive" and metrics.ridge_slope is None and metrics.ridge_slope_ci is None
    assert any("3 are needed" in note for note in metrics.notes)


def test_verdicts_follow_the_interval() -> None:
    coupled = coupling_metrics(make_landscape(_valley(-0.8), lr=COARSE_LR, wd=COARSE_WD))
    upright = coupling_metrics(make_landscape(_valley(0.0), lr=COARSE_LR, wd=COARSE_WD))
    assert (coupled.verdict, upright.verdict) == ("coupled", "separable")
    mild = coupling_metrics(make_landscape(_valley(-0.35, "gaussian"), lr=COARSE_LR, wd=COARSE_WD))
    assert mild.verdict == "inconclusive", "an interval reaching past -0.3 and 0 supports neither"


# ---------------------------------------------------------------------------------------------
# Interaction, basin, separability


def test_pure_diagonal_valley_interacts_and_a_separable_bowl_does_not() -> None:
    y, x = _coords()
    valley = coupling_metrics(make_landscape(0.04 + 0.01 * (x + y + 16.0) ** 2 + 0.0005 * (y + 5) ** 2))
    assert valley.ridge_slope == pytest.approx(-1.0, abs=1e-9)
    assert valley.interaction is not None and valley.interaction > 0.9
    assert valley.basin_angle == pytest.approx(-45.0, abs=5), "the long axis on the diagonal lr * wd = const"
    assert valley.separability is not None and valley.separability < 0.5
    bowl = coupling_metrics(make_landscape(0.04 + 0.003 * (y + 4.0) ** 2 + 0.01 * (x + 11.0) ** 2))
    assert bowl.ridge_slope == pytest.approx(0.0, abs=1e-12)
    assert bowl.interaction == pytest.approx(0.0, abs=1e-9) and bowl.separability == pytest.approx(1.0)
    assert bowl.basin_angle == pytest.approx(0.0, abs=1e-6), "upright: the long axis is the vertical one"
    # {f <= 0.04 * 1.1}: 0.003 u^2 + 0.01 v^2 <= 0.004, an ellipse of area pi * 0.004 / sqrt(0.003 * 0.01).
    assert bowl.basin_area == pytest.approx(np.pi * 0.004 / np.sqrt(0.003 * 0.01), rel=1e-6)
    assert bowl.best == {"params": {"lr": 2.0**-4, "weight_decay": 2.0**-11}, "value": pytest.approx(0.04)}


def test_separability_is_not_dominated_by_bad_cells_far_from_the_basin() -> None:
    y, x = _coords()
    bowl = 0.04 + 0.003 * (y + 4.0) ** 2 + 0.01 * (x + 11.0) ** 2
    awful = bowl.copy()
    awful[0, 1] = 50.0  # one cell 1000x worse than the rest
    assert coupling_metrics(make_landscape(awful)).separability == pytest.approx(1.0)


def test_missing_and_diverged_cells_are_left_out() -> None:
    y, x = _coords()
    valley = 0.04 + 0.01 * (x + y + 16.0) ** 2
    holes = np.random.default_rng(1).random(valley.shape) < 0.15
    holes[:, 1:][np.abs(x + y + 16.0)[:, 1:] <= 1.0] = False  # keep the ridge and its neighbours measured
    diverged = np.zeros(valley.shape, bool)
    diverged[-1, -3:] = True
    tempting = np.where(holes, np.nan, valley)
    tempting[diverged] = 0.0  # a diverged cell's stored value must not count as the best
    metrics = coupling_metrics(make_landscape(tempting, diverged=diverged))
    assert metrics.ridge_slope == pytest.approx(-1.0, abs=1e-9)
    assert metrics.n_cells == int(np.sum(~holes & ~diverged))
    assert metrics.best is not None and metrics.best["value"] == pytest.approx(0.04)


def test_undefined_metrics_are_none_with_a_reason() -> None:
    empty = coupling_metrics(make_landscape(np.full((LR.size, WD.size), np.nan)))
    assert empty.ridge_slope is None and empty.separability is None and empty.basin_cells == 0
    assert empty.best is None and "no cell has a measured value yet" in empty.notes and empty.verdict == "inconclusive"
    flat = coupling_metrics(make_landscape(np.full((LR.size, WD.size - 1), 0.05), wd=WD[1:]))
    assert flat.ridge_slope is None and flat.basin_cells == LR.size * (WD.size - 1)
    assert any("left out of the ridge: best at the grid's edge" in note for note in flat.notes), flat.notes


def test_basin_tolerance_relative_and_absolute() -> None:
    mean = np.array([[0.040, 0.043, 0.045], [0.050, 0.0439, 0.100]])
    land = make_landscape(mean, lr=np.array([0.1, 0.2]), wd=np.array([0.0, 0.001, 0.002]))
    assert coupling_metrics(land).basin_cells == 3  # <= 0.044 (10 % of 0.040)
    assert coupling_metrics(land, tolerance=0.0).basin_cells == 1
    assert coupling_metrics(land, tolerance=0.005, relative=False).basin_cells == 4  # <= 0.045
    assert DEFAULT_BASIN_TOLERANCE == 0.10
    with pytest.raises(ValueError, match="tolerance must be a finite number >= 0"):
        coupling_metrics(land, tolerance=-1)


def test_to_dict_is_json_ready() -> None:
    seeds = _valley(-0.8)[None] + 0.006 * np.random.default_rng(3).standard_normal((2, 5, 7))
    body = coupling_metrics(make_landscape(seeds, lr=COARSE_LR, wd=COARSE_WD)).to_dict()
    json.dumps(body, allow_nan=False)
    assert isinstance(body["ridge_slope_ci"], list) and len(body["ridge_slope_ci"]) == 2
    assert body["ridge_ci_method"] == "parametric bootstrap from the spread of 2 seeds"
    assert body["axes"] == ["lr", "weight_decay"]
    assert isinstance(body["ridge_points"][0], list) and body["verdict"] in ("coupled", "separable", "inconclusive")


def test_many_samples_per_cell_do_not_resample_beyond_a_memory_bound() -> None:
    # A binned Bayesian sweep can hold hundreds of trials per bin: resampling them all, 1000 times, took 16 GiB.
    import tracemalloc

    rng = np.random.default_rng(0)
    samples = _valley(-0.8)[None] + 0.01 * rng.standard_normal((600, COARSE_LR.size, COARSE_WD.size))
    land = make_landscape(samples, lr=COARSE_LR, wd=COARSE_WD)
    tracemalloc.start()
    try:
        metrics = coupling_metrics(land)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50e6, f"coupling metrics allocated {peak / 1e6:.0f} MB at once"
    assert metrics.ridge_slope_ci is not None and metrics.ridge_slope_ci[0] <= -0.8 <= metrics.ridge_slope_ci[1]


def test_seed_resampling_by_counts_matches_gathering_every_pick() -> None:
    # The bootstrap sums each replicate's seed counts against the values; the direct way gathers every pick.
    from hpscape.landscapes.coupling.bootstrap import _resampled_moments

    rng = np.random.default_rng(3)
    samples = rng.normal(1.0, 0.3, (9, 4, 5))
    samples[rng.random(samples.shape) < 0.25] = np.nan
    samples[:, 0, 0] = np.nan  # a cell no seed measured
    samples[1:, 1, 1] = np.nan  # a cell one seed measured
    picks = rng.integers(0, 9, size=(200, 9))
    drawn = samples[picks]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_mean, want_sd = np.nanmean(drawn, axis=1), np.nanstd(drawn, axis=1, ddof=1)
    mean, n, variance = _resampled_moments(samples, picks)
    sd = np.sqrt(variance)
    np.testing.assert_array_equal(n, np.isfinite(drawn).sum(axis=1))
    np.testing.assert_allclose(mean, want_mean, rtol=1e-12, atol=1e-12)
    # A replicate that picked one value k times: 0 directly, sqrt(rounding) ~ 1e-8 from the sums.
    np.testing.assert_allclose(sd, want_sd, rtol=1e-9, atol=1e-7)
    assert np.isnan(mean[:, 0, 0]).all() and np.isnan(sd[:, 0, 0]).all()


def test_metrics_are_remembered_by_content_and_recomputed_when_a_cell_changes() -> None:
    from hpscape.landscapes import clear_coupling_cache

    rng = np.random.default_rng(5)
    values = _valley(-0.8)[None] + 0.01 * rng.standard_normal((3, COARSE_LR.size, COARSE_WD.size))
    clear_coupling_cache()
    first = coupling_metrics(make_landscape(values, lr=COARSE_LR, wd=COARSE_WD))
    again = coupling_metrics(make_landscape(values.copy(), lr=COARSE_LR, wd=COARSE_WD))  # equal content
    assert again is first
    assert coupling_metrics(make_landscape(values, lr=COARSE_LR, wd=COARSE_WD), tolerance=0.2) is not first
    changed = values.copy()
    row, col = np.unravel_index(np.argmin(values.mean(axis=0)), values.shape[1:])
    changed[:, row, col] += 0.5  # the best cell worse: a new landscape, never the old answer
    other = coupling_metrics(make_landscape(changed, lr=COARSE_LR, wd=COARSE_WD))
    assert other is not first and other.to_dict() != first.to_dict()
    clear_coupling_cache()
    fresh = coupling_metrics(make_landscape(values, lr=COARSE_LR, wd=COARSE_WD))
    assert fresh is not first and fresh.to_dict() == first.to_dict()


def test_an_optimum_outside_its_replicates_gets_an_interval_that_holds_it() -> None:
    # quick-budget's AdamW at 5 epochs (one seed): flat on the left, steep on the right. The residual bootstrap's
    # replicates centre on the row's quadratic, and their percentile interval missed the three-cell estimate.
    from hpscape.landscapes import axis_optimum

    row = np.array([[0.4515, 0.4510, 0.4562, 0.4798, 0.6069, 0.8451, 1.0586]])
    optimum = axis_optimum(make_landscape(row, lr=np.array([0.0125]), wd=2.0 ** np.arange(-8, -1)))
    assert optimum.value is not None and optimum.ci is not None
    assert optimum.ci[0] <= optimum.value <= optimum.ci[1]
    assert optimum.note is not None and "widened" in optimum.note
