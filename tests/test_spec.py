"""Sweep spec validation, presets, grids and spec files."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from hpscape.landscapes import (
    FIG2_DECAY_TICKS,
    MAX_TOTAL_TRIALS,
    PRESETS,
    Cell,
    Facet,
    SpecError,
    SweepSpec,
    dump_spec,
    fig2_weight_decays,
    format_validation_error,
    get_preset,
    load_spec,
    lr_by_family,
    parse_study_name,
    powers_of_two,
    study_name,
    validate_model_name,
)


def _base(**changes: Any) -> dict[str, Any]:
    """A small valid grid spec as a plain dict, with top-level `changes` applied."""
    data: dict[str, Any] = {
        "name": "t",
        "dataset": "synthetic",
        "model": "shake_shake_8_2x16d",
        "variants": ["sgd", "adamw"],
        "epochs": 2,
        "batch_size": 16,
        "grid": {"lr": [0.1, 0.2], "weight_decay": [0.0, 1e-3]},
    }
    data.update(changes)
    return data


def _errors(data: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        SweepSpec.model_validate(data)
    return format_validation_error(info.value)


# ---------------------------------------------------------------------------------------------
# Presets


def test_presets_validate_and_fig2_is_protocol_section_3() -> None:
    assert set(PRESETS) == {"fig2", "fig1", "fig3", "fig4", "budget", "cifar-overnight", "quick", "quick-adam",
                            "quick-families", "adam-betas", "quick-fig1", "quick-fig3", "quick-fig4", "quick-budget"}
    fig2 = get_preset("fig2")
    assert fig2.total_trials() == 484
    assert (fig2.dataset, fig2.model, fig2.epochs, fig2.batch_size) == (
        "cifar10",
        "shake_shake_26_2x64d",
        100,
        128,
    )
    assert fig2.variants == ["sgd", "sgdw", "adam", "adamw"]
    assert (fig2.schedule, fig2.normalized_decay, fig2.seeds, fig2.metric) == (
        "cosine",
        False,
        [0],
        "test_error",
    )
    assert (fig2.resources.gpu, fig2.resources.cpu, fig2.max_concurrent_trials) == (0.25, 2, 16)
    assert (fig2.precision, fig2.compile) == ("bf16", True), "the fast path, set explicitly (fp32 is one field away)"
    sgd_lrs = [2.0**k for k in range(-10, 1)]
    adam_lrs = [0.1 * 2.0**k for k in range(-10, 1)]
    for variant, expected in [("sgd", sgd_lrs), ("sgdw", sgd_lrs), ("adam", adam_lrs), ("adamw", adam_lrs)]:
        assert fig2.axis_values("lr", variant) == expected
    assert fig2.axis_values("lr", "adam")[0] == pytest.approx(9.765625e-5, rel=1e-12)
    decays = [0.0, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert fig2.swept_axes == ("lr", "weight_decay") and fig2.facet is None
    assert fig2.axis_values("weight_decay", "sgd") == [d * 0.001 for d in decays]
    assert list(FIG2_DECAY_TICKS) == decays
    cells = fig2.cells("adamw")
    assert len(cells) == 121 and len({c.key for c in cells}) == 121


def test_quick_preset_is_cpu_sized_and_follows_the_mechanism() -> None:
    quick = get_preset("quick")
    assert quick.dataset == "digits", "bundled data: no download"
    assert quick.resources.gpu == 0 and quick.max_concurrent_trials == 2, "two CPU trials at a time"
    assert (quick.label_noise, quick.metric, quick.schedule) == (0.2, "test_loss", "cosine"), "the mechanism's setup"
    assert quick.variants == ["sgd", "sgdw", "adamw"] and len(quick.seeds) >= 2, "an interval needs two seeds"
    assert quick.model == "shake_shake_8_2x16d_bnhead", "the scale-invariant head (see presets.py for why)"
    sgd_rows = quick.axis_values("lr", "sgd")
    assert quick.axis_values("lr", "sgdw") == sgd_rows and len(sgd_rows) >= 3, "three rows at least"
    assert all(b / a == 4.0 for a, b in zip(sgd_rows, sgd_rows[1:])), "rows are powers of two, 4x apart"
    assert sgd_rows[-1] / sgd_rows[0] == 16.0, "a 16x range of alpha"
    adamw_rows = quick.axis_values("lr", "adamw")
    assert adamw_rows[-1] / adamw_rows[0] == 16.0 and adamw_rows == [0.1 * 2.0**k for k in (-4, -2, 0)]
    for variant in quick.variants:
        wds = quick.axis_values("weight_decay", variant)
        assert all(w > 0 for w in wds), "no 0 column: a row whose best decay is 0 carries no ridge information"
        assert all(b / a == 4.0 for a, b in zip(wds, wds[1:])), "decay columns are powers of two, 4x apart"
    # SGD's measured optima (2^-3, 2^-5, 2^-7 by row) lie inside its grid, not at an edge: the ridge needs them.
    sgd_wds = quick.axis_values("weight_decay", "sgd")
    assert sgd_wds[0] < 2.0**-7 and 2.0**-3 < sgd_wds[-1]
    # the budget: 66 trials of 25 epochs, 16 s each two at a time (measured; the target is 10 minutes)
    assert quick.total_trials() <= 66 and quick.epochs <= 25
    # enough total decay for equilibrium at the decoupled optimum 2^-5: lambda * sum(eta_t) >= 1 (cosine: steps / 2)
    steps = quick.epochs * math.ceil(1437 / quick.batch_size)
    assert 2.0**-5 * steps / 2 >= 1


def test_quick_adam_gives_torch_adamw_its_own_decay_range() -> None:
    spec = get_preset("quick-adam")
    assert spec.variants == ["adam", "adamw-torch"] and len(spec.seeds) >= 2
    torch_wds = spec.axis_values("weight_decay", "adamw-torch")
    # torch's decay is alpha * lambda: its lambdas are the paper's optimum (2^-5) over alpha on these rows.
    lrs = spec.axis_values("lr", "adamw-torch")
    assert torch_wds[0] < 2.0**-5 / lrs[-1] and 2.0**-5 / lrs[0] < torch_wds[-1]
    assert spec.total_trials() <= 66


def test_get_preset_overrides_are_validated_and_unknown_names_listed() -> None:
    small = get_preset("fig2", name="fig2-sgd", variants=["sgd"], epochs=3)
    assert (small.name, small.variants, small.epochs, small.total_trials()) == ("fig2-sgd", ["sgd"], 3, 121)
    bayes = get_preset(
        "quick", bayes={"n_trials": 7, "lr": [1e-3, 1e-1], "weight_decay": [1e-5, 1e-2]}
    )
    assert bayes.mode == "bayes" and bayes.grid is None and bayes.total_trials() == 3 * 7
    with pytest.raises(ValidationError) as info:
        get_preset("fig2", epochs=0)
    assert format_validation_error(info.value).startswith("epochs:")
    with pytest.raises(SpecError, match="unknown preset 'fig5'.*adam-betas, budget, cifar-overnight, fig1, fig2"):
        get_preset("fig5")
    # The shared preset object is untouched by overrides.
    assert PRESETS["fig2"].epochs == 100


def test_grid_helpers() -> None:
    assert powers_of_two(-2, 1) == [0.25, 0.5, 1.0, 2.0]
    assert powers_of_two(0, 0, scale=0.1) == [0.1]
    assert powers_of_two(-5, -1, step=2) == [2.0**-5, 2.0**-3, 2.0**-1]
    with pytest.raises(ValueError, match="step"):
        powers_of_two(0, 2, step=0)
    with pytest.raises(ValueError, match="lo_exp"):
        powers_of_two(2, 1)
    assert fig2_weight_decays()[0] == 0.0 and fig2_weight_decays()[-1] == 0.016
    assert lr_by_family(["adam", "sgd", "rmsprop"], [1.0]) == {"adam": [0.1], "sgd": [1.0], "rmsprop": [0.1]}
    # Figure 2's Adam rows are exactly 0.1 * 2**k, as the paper writes them.
    assert lr_by_family(["adamw"], powers_of_two(-10, 0))["adamw"] == [0.1 * 2.0**k for k in range(-10, 1)]
    with pytest.raises(ValueError, match="unknown variant 'lion'"):
        lr_by_family(["lion"], [1.0])


# ---------------------------------------------------------------------------------------------
# Derived values


def test_cells_keys_and_counts() -> None:
    spec = SweepSpec.model_validate(
        _base(seeds=[0, 3], grid={"lr": {"sgd": [0.0625], "adamw": [0.1, 0.01]}, "weight_decay": [0, 0.001]})
    )
    assert spec.total_trials() == (1 + 2) * 2 * 2
    cells = spec.cells("sgd")
    assert cells[0] == Cell(0.0625, 0.0, 0, ("lr", "weight_decay"))
    assert [c.key for c in cells] == [
        "lr=0.0625|wd=0.0|seed=0",
        "lr=0.0625|wd=0.0|seed=3",
        "lr=0.0625|wd=0.001|seed=0",
        "lr=0.0625|wd=0.001|seed=3",
    ]
    assert all(Cell.from_key(c.key) == c for c in spec.cells("adamw"))
    with pytest.raises(ValueError, match="not in sweep"):
        spec.cells("adam")
    with pytest.raises(ValueError, match="bad cell key"):
        Cell.from_key("lr=1")
    with pytest.raises(ValueError, match="bad cell key"):
        Cell.from_key("lr=1|spin=2|seed=0")


def test_negative_zero_decay_is_normalized() -> None:
    spec = SweepSpec.model_validate(_base(grid={"lr": [0.1], "weight_decay": [-0.0]}))
    assert spec.cells("sgd")[0].key == "lr=0.1|wd=0.0|seed=0"


def test_bayes_spec_has_no_cells() -> None:
    spec = SweepSpec.model_validate(
        _base(grid=None, bayes={"n_trials": 10, "lr": [1e-3, 1], "weight_decay": [1e-5, 1e-1]})
    )
    assert spec.total_trials() == 20 and spec.bayes is not None and spec.bayes.sampler == "tpe"
    with pytest.raises(ValueError, match="needs a grid"):
        spec.cells("sgd")


def test_model_names() -> None:
    arch = validate_model_name("shake_shake_26_2x96d")
    assert (arch.depth, arch.width, arch.blocks_per_stage) == (26, 96, 4)
    assert validate_model_name("shake_shake_8_2x16d").blocks_per_stage == 1
    # Exactly the names the registry builds: depths 8-32 and widths 8-96 only (38 and 4 branches are not built).
    for bad in ["shake_shake_2_2x64d", "shake_shake_10_2x64d", "shake_shake_26_2x48d", "resnet18",
                "shake_shake_26_4x64d", "shake_shake_38_2x8d", "shake_shake_26_2x64d\n"]:
        with pytest.raises(ValueError, match="shake_shake_<depth>_2x<width>d"):
            validate_model_name(bad)


# ---------------------------------------------------------------------------------------------
# Every bad input names its field


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"grid": {"lr": [0.1, 0.2, 0.3, float("nan")], "weight_decay": [0]}}, "grid.lr[3]: must be a finite number > 0, got nan"),
        ({"grid": {"lr": [float("inf")], "weight_decay": [0]}}, "grid.lr[0]: must be a finite number > 0, got inf"),
        ({"grid": {"lr": [0.1, 0.0], "weight_decay": [0]}}, "grid.lr[1]: must be a finite number > 0, got 0.0"),
        ({"grid": {"lr": [-0.1], "weight_decay": [0]}}, "grid.lr[0]: must be a finite number > 0"),
        ({"grid": {"lr": [0.1], "weight_decay": [0, -1e-4]}}, "grid.weight_decay[1]: must be a finite number >= 0"),
        ({"grid": {"lr": [0.1], "weight_decay": [float("-inf")]}}, "grid.weight_decay[0]: must be a finite number >= 0, got -inf"),
        ({"grid": {"lr": [0.1], "weight_decay": [float("nan")]}}, "grid.weight_decay[0]: must be a finite number >= 0, got nan"),
        ({"grid": {"lr": [0.1, 0.2, 0.1], "weight_decay": [0]}}, "grid.lr[2]: duplicate of item [0]"),
        ({"grid": {"lr": [0.1], "weight_decay": [0, 0.0]}}, "grid.weight_decay[1]: duplicate"),
        ({"grid": {"lr": [], "weight_decay": [0]}}, "grid.lr: must list at least one learning rate value"),
        ({"grid": {"lr": [0.1], "weight_decay": []}}, "grid.weight_decay: must list at least one"),
        ({"grid": {"lr": ["fast"], "weight_decay": [0]}}, "grid.lr[0]: must be a number, got 'fast'"),
        ({"grid": {"lr": [True], "weight_decay": [0]}}, "grid.lr[0]: must be a number, got True"),
        ({"grid": {"lr": {"sgd": [0.1, float("nan")], "adamw": [0.1]}, "weight_decay": [0]}}, "grid.lr.sgd[1]: must be a finite number > 0, got nan"),
        ({"grid": {"lr": {"sgd": [0.1]}, "weight_decay": [0]}}, "grid.lr: no lr values for variant adamw"),
        ({"grid": {"lr": {"sgd": [0.1], "adamw": [0.1], "lion": [1]}, "weight_decay": [0]}}, "grid.lr.lion: unknown variant 'lion'"),
        ({"grid": {"lr": [0.1], "weight_decay": [0], "momentum": [0.9]}}, "grid: must sweep exactly two axes (the first is vertical), got 3"),
        ({"grid": {"lr": [0.1]}}, "grid: must sweep exactly two axes (the first is vertical), got 1: lr"),
        ({"grid": {"lr": [0.1], "spin": [1]}}, "grid.spin: unknown axis 'spin'; a grid axis may be: lr, weight_decay"),
        ({"grid": {"lr": [0.1], "schedule": ["step"]}}, "grid.schedule: schedule cannot be a grid axis"),
        ({"variants": ["sgd", "lion"]}, "variants[1]: Input should be 'sgd', 'sgdw', 'adam', 'adamw', 'adamw-torch', 'amsgrad'"),
        ({"variants": ["sgd", "sgd"]}, "variants[1]: duplicate of item [0] ('sgd')"),
        ({"variants": []}, "variants: must list at least one variant"),
        ({"model": "resnet18"}, "model: unknown model 'resnet18'"),
        ({"model": "shake_shake_12_2x64d"}, "model: unknown model 'shake_shake_12_2x64d'"),
        ({"model": "shake_shake_38_2x8d"}, "model: unknown model 'shake_shake_38_2x8d'"),
        ({"dataset": "mnist"}, "dataset: Input should be 'cifar10', 'digits', 'imagenet32' or 'synthetic', got 'mnist'"),
        ({"optimizer": "sgd"}, "optimizer: unknown field; allowed: name, dataset"),
        ({"name": "a/b"}, "name: 'a/b' is not allowed"),
        ({"name": "-lead"}, "name: '-lead' is not allowed"),
        ({"name": "nl\n"}, "name: 'nl\\n' is not allowed"),
        ({"name": "x" * 201}, "name: must be 1 to 200 characters long, got 201"),
        ({"name": ""}, "name: must be 1 to 200 characters long, got 0"),
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
        ({"epochs": 10001}, "epochs: Input should be less than or equal to 10000"),
        ({"epochs": 2.5}, "epochs: Input should be a valid integer"),
        ({"batch_size": 65537}, "batch_size: Input should be less than or equal to 65536"),
        ({"schedule": "linear"}, "schedule: Input should be"),
        ({"metric": "accuracy"}, "metric: Input should be 'test_error' or 'test_loss', got 'accuracy'"),
        ({"label_noise": 1.0}, "label_noise: must be a finite number in [0, 1) (a fraction of labels), got 1.0"),
        ({"label_noise": float("nan")}, "label_noise: must be a finite number in [0, 1) (a fraction of labels), got nan"),
        ({"seeds": [0, 0]}, "seeds[1]: duplicate of item [0] (0)"),
        ({"seeds": [-1]}, "seeds[0]: Input should be greater than or equal to 0"),
        ({"seeds": []}, "seeds: must list at least one seed"),
        ({"resources": {"cpu": 0}}, "resources.cpu: must be a finite number > 0, got 0.0"),
        ({"resources": {"gpu": 9}}, "resources.gpu: must be between 0 and 8"),
        ({"resources": {"gpu": float("inf")}}, "resources.gpu: must be a finite number >= 0, got inf"),
        ({"resources": {"tpu": 1}}, "resources.tpu: unknown field; allowed: cpu, gpu"),
        ({"max_concurrent_trials": 0}, "max_concurrent_trials: Input should be greater than or equal to 1"),
        ({"grid": None}, "grid: give exactly one of `grid` (two axes and their values) or `bayes` (a Bayesian search over two axes' ranges), got neither"),
        ({"bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2]}}, "grid: give exactly one of `grid`"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-1, 1e-3], "weight_decay": [1e-4, 1e-2]}}, "bayes.lr: must be [low, high] with low < high, got [0.1, 0.001]"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "weight_decay": [0, 1e-2]}}, "bayes.weight_decay[0]: must be a finite number > 0 (the search is log-uniform on log2, so 0 is not in range), got 0.0"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1]}}, "bayes: give [low, high] ranges for exactly two axes"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "spin": [1, 2]}}, "bayes.spin: unknown axis 'spin'; a searched axis may be"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "epochs": [2, 8], "pruning": "asha"}}, "bayes.pruning: ASHA stops trials at fractions of the epoch budget"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, float("inf")], "weight_decay": [1e-4, 1e-2]}}, "bayes.lr[1]: must be a finite number > 0, got inf"),
        ({"grid": None, "bayes": {"n_trials": 0, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2]}}, "bayes.n_trials: Input should be greater than or equal to 1"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2], "sampler": "cmaes"}}, "bayes.sampler: Input should be 'tpe' or 'gp', got 'cmaes'"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2], "pruning": "hyperband"}}, "bayes.pruning: Input should be 'none' or 'asha', got 'hyperband'"),
        ({"grid": None, "bayes": {"lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2]}}, "bayes.n_trials: required field is missing"),
        ({"precision": "fp16"}, "precision: Input should be 'fp32' or 'bf16', got 'fp16'"),
        ({"compile": "sometimes"}, "compile: Input should be a valid boolean"),
        ({"step_milestones": [1, 1]}, "step_milestones[1]: must be larger than the milestone before it (1): milestones are increasing epochs, got 1"),
        ({"step_milestones": [2, 1]}, "step_milestones[1]: must be larger than the milestone before it (2)"),
        ({"step_milestones": [0]}, "step_milestones[0]: must be a whole number of epochs >= 1 (the lr drops after that many epochs), got 0"),
        ({"step_milestones": [1.5]}, "step_milestones[0]: must be a whole number of epochs >= 1 (the lr drops after that many epochs), got 1.5"),
        ({"step_milestones": [True]}, "step_milestones[0]: must be a whole number of epochs >= 1"),
        ({"step_milestones": [1, 3]}, "step_milestones[1]: must be an epoch within 1..epochs (2), got 3"),
        ({"step_milestones": []}, "step_milestones: must list at least one epoch, or be null for drops at 50 % and 75 % of the iterations (for no drop at all, use schedule: constant)"),
        ({"step_milestones": 30}, "step_milestones: must be a list of increasing epochs (e.g. [30, 60, 80]) or null"),
        ({"step_gamma": 0}, "step_gamma: must be a finite number in (0, 1] (the factor the lr is multiplied by at each step milestone), got 0.0"),
        ({"step_gamma": 1.5}, "step_gamma: must be a finite number in (0, 1]"),
        ({"step_gamma": float("nan")}, "step_gamma: must be a finite number in (0, 1]"),
        ({"restart_period": 0}, "restart_period: must be a whole number of epochs >= 1 (the first warm-restart period T_0), got 0"),
        ({"restart_period": 2.5}, "restart_period: must be a whole number of epochs >= 1"),
        ({"restart_mult": 0}, "restart_mult: must be a whole number >= 1 (T_mult, each warm-restart period's length over the one before; 1 keeps them equal), got 0"),
    ],
)
def test_bad_input_names_the_field(changes: dict[str, Any], expected: str) -> None:
    message = _errors(_base(**changes))
    assert expected in message, message


def test_step_milestones_are_checked_against_the_longest_trial() -> None:
    # epochs swept (grid or facet) or searched: a milestone may reach the longest trial; shorter ones never get there.
    grid = SweepSpec.model_validate(_base(grid={"lr": [0.1], "epochs": [2, 8]}, step_milestones=[4, 8]))
    assert grid.max_epochs() == 8 and grid.step_milestones == [4, 8]
    facet = SweepSpec.model_validate(_base(facet={"epochs": [2, 6]}, step_milestones=[3, 6]))
    assert facet.step_milestones == [3, 6]
    bayes = SweepSpec.model_validate(_base(grid=None, bayes={"n_trials": 2, "lr": [1e-3, 1e-1], "epochs": [2, 12]},
                                           step_milestones=[10]))
    assert bayes.max_epochs() == 12
    for changes in ({"grid": {"lr": [0.1], "epochs": [2, 8]}}, {"facet": {"epochs": [2, 8]}},
                    {"grid": None, "bayes": {"n_trials": 2, "lr": [1e-3, 1e-1], "epochs": [2, 8]}}):
        message = _errors(_base(**changes, step_milestones=[4, 9]))
        assert message == "step_milestones[1]: must be an epoch within 1..8, the longest trial's epochs (epochs " \
                          "varies per trial), got 9", message


def test_new_fields_default_to_the_old_behaviour() -> None:
    # A spec written before precision, compile and the schedule parameters existed: valid, and dumped with defaults.
    spec = SweepSpec.model_validate(_base(schedule="step"))
    dumped = spec.model_dump(mode="json")
    assert {k: dumped[k] for k in ("precision", "compile", "step_milestones", "step_gamma", "restart_period",
                                   "restart_mult")} == {
        "precision": "fp32", "compile": False, "step_milestones": None, "step_gamma": 0.1, "restart_period": 10,
        "restart_mult": 2}
    assert SweepSpec.model_validate(dumped) == spec, "the dump round-trips"
    given = SweepSpec.model_validate(_base(epochs=100, schedule="step", step_milestones=[30, 60, 80], step_gamma=0.2,
                                           restart_period=1, restart_mult=1, precision="bf16", compile=True))
    assert (given.step_milestones, given.step_gamma, given.restart_period, given.restart_mult) == ([30, 60, 80], 0.2,
                                                                                                   1, 1)
    assert (given.precision, given.compile) == ("bf16", True)


def test_cpu_presets_stay_fp32_without_compile() -> None:
    for name, preset in PRESETS.items():
        if preset.resources.gpu == 0:
            assert (preset.precision, preset.compile) == ("fp32", False), name


def test_missing_fields_are_each_named() -> None:
    lines = _errors({"name": "t"}).splitlines()
    assert {line.split(":")[0] for line in lines} >= {"dataset", "model", "variants", "epochs", "batch_size"}
    assert all(line.endswith("required field is missing") for line in lines)


def test_several_problems_give_one_line_each() -> None:
    lines = _errors(_base(epochs=0, batch_size=0, dataset="x")).splitlines()
    assert len(lines) == 3
    assert [line.split(":")[0] for line in lines] == ["dataset", "epochs", "batch_size"]


def test_too_many_trials_says_how_many_and_the_cap() -> None:
    lrs = powers_of_two(-30, 20)  # 51 values
    wds = [0.0, *powers_of_two(-30, 18)]  # 50 values: 51 x 50 x 2 variants = 5100
    message = _errors(_base(grid={"lr": lrs, "weight_decay": wds}))
    assert message.startswith("grid: 5100 trials requested")
    assert f"MAX_TOTAL_TRIALS = {MAX_TOTAL_TRIALS}" in message
    # Exactly at the cap is allowed.
    ok = SweepSpec.model_validate(_base(grid={"lr": lrs[:50], "weight_decay": wds}))
    assert ok.total_trials() == MAX_TOTAL_TRIALS
    seeds = _errors(_base(seeds=list(range(626))))  # 2 x 2 x 2 x 626 = 5008
    assert "x 626 seed(s)" in seeds and seeds.startswith("grid: 5008 trials requested")
    bayes = _errors(_base(grid=None, bayes={"n_trials": 2501, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2]}))
    assert bayes.startswith("bayes.n_trials: 5002 trials requested (2 variant(s) x 2501 trials)")


def test_per_variant_lr_may_list_extra_known_variants() -> None:
    spec = SweepSpec.model_validate(
        _base(variants=["sgd"], grid={"lr": {"sgd": [0.5], "adam": [0.01]}, "weight_decay": [0]})
    )
    assert spec.axis_values("lr", "sgd") == [0.5] and spec.total_trials() == 1


def test_spec_is_immutable_and_replace_validates() -> None:
    spec = get_preset("quick")
    with pytest.raises(ValidationError):
        spec.epochs = 3  # type: ignore[misc]
    renamed = spec.replace(name="quick-2", seeds=[1, 2, 3, 4])
    assert (renamed.name, renamed.seeds, renamed.total_trials()) == ("quick-2", [1, 2, 3, 4], 2 * spec.total_trials())
    assert spec.name == "quick" and spec.seeds == [0, 1]
    with pytest.raises(ValidationError, match="is not allowed"):
        spec.replace(name="a/b")


# ---------------------------------------------------------------------------------------------
# Files


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_spec_files_round_trip(tmp_path: Path, suffix: str, preset: str) -> None:
    spec = get_preset(preset)
    path = dump_spec(spec, tmp_path / f"spec{suffix}")
    loaded = load_spec(path)
    assert loaded == spec
    assert loaded.cells(spec.variants[-1]) == spec.cells(spec.variants[-1])


def test_hand_written_yaml_and_json(tmp_path: Path) -> None:
    data = _base(bayes=None)
    (tmp_path / "s.json").write_text(json.dumps(data))
    # YAML 1.1 reads 1e-3 (no dot) as a string; the spec still takes it as a number.
    (tmp_path / "s.yaml").write_text(
        "name: t\ndataset: synthetic\nmodel: shake_shake_8_2x16d\nvariants: [sgd, adamw]\n"
        "epochs: 2\nbatch_size: 16\ngrid:\n  lr: [0.1, 0.2]\n  weight_decay: [0, 1e-3]\n"
    )
    assert load_spec(tmp_path / "s.json") == load_spec(tmp_path / "s.yaml")
    assert load_spec(str(tmp_path / "s.yaml")).axis_values("weight_decay", "sgd") == [0.0, 0.001]


def test_load_spec_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "s.toml").write_text("name = 't'")
    with pytest.raises(SpecError, match=r"unsupported spec file type '\.toml'; use \.yaml, \.yml or \.json"):
        load_spec(tmp_path / "s.toml")
    (tmp_path / "bad.yaml").write_text("name: t\ngrid:\n  lr: [0.1, 0.2\n  weight_decay: [0]\n")
    with pytest.raises(SpecError, match=r"bad\.yaml:\d+:\d+: invalid YAML"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "bad.json").write_text('{\n  "name": "t",\n  "epochs": ,\n}')
    with pytest.raises(SpecError, match=r"bad\.json:3:\d+: invalid JSON"):
        load_spec(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(tmp_path / "list.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(tmp_path / "empty.yaml")
    (tmp_path / "dup.yaml").write_text("name: a\nname: b\n")
    with pytest.raises(SpecError, match=r"dup\.yaml:2:1: invalid YAML: duplicate key 'name'"):
        load_spec(tmp_path / "dup.yaml")
    (tmp_path / "dup.json").write_text('{"epochs": 1, "epochs": 2}')
    with pytest.raises(SpecError, match="duplicate key 'epochs'"):
        load_spec(tmp_path / "dup.json")


def test_load_spec_invalid_content_lists_problems(tmp_path: Path) -> None:
    data = _base(epochs=0, grid={"lr": [0.1, -1], "weight_decay": [0]})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert info.value.problems == [
        "epochs: Input should be greater than or equal to 1",
        "grid.lr[1]: must be a finite number > 0, got -1.0",
    ]
    assert str(path) in str(info.value)
    assert format_validation_error(info.value) == "\n".join(info.value.problems)


def test_json_nan_is_rejected(tmp_path: Path) -> None:
    # Python's json module reads NaN and Infinity literals; the spec must still refuse them.
    path = tmp_path / "nan.json"
    data = copy.deepcopy(_base())
    data["grid"]["lr"] = [0.1, math.nan]
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=r"grid\.lr\[1\]: must be a finite number > 0, got nan"):
        load_spec(path)


# ---------------------------------------------------------------------------------------------
# Axes as data: any two axes, fixed hyperparameters, per-variant values, facets


def _betas(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"variants": ["adam", "adamw"], "hyperparameters": {"lr": 0.001, "weight_decay": 0.0005},
                              "grid": {"beta1": [0.5, 0.8, 0.9, 0.95], "beta2": [0.9, 0.99, 0.999]}}
    return _base(**{**values, **changes})


def test_beta1_by_beta2_grid_with_fixed_hyperparameters() -> None:
    spec = SweepSpec.model_validate(_betas())
    assert spec.swept_axes == ("beta1", "beta2") and spec.total_trials() == 2 * 12
    cell = spec.cells("adam")[0]
    assert cell.params == {"beta1": 0.5, "beta2": 0.9} and cell.key == "beta1=0.5|beta2=0.9|seed=0"
    assert Cell.from_key(cell.key) == cell
    values = spec.trial_values("adamw", cell.params)
    assert values == {"lr": 0.001, "weight_decay": 0.0005, "beta1": 0.5, "beta2": 0.9, "eps": 1e-8,
                      "batch_size": 16, "epochs": 2, "label_noise": 0.0, "schedule": "cosine"}
    assert "momentum" not in values, "only the axes the variant reads"


def test_unswept_axes_take_family_defaults() -> None:
    spec = SweepSpec.model_validate(_base(variants=["sgd", "adagrad", "rmsprop"]))
    assert spec.trial_values("sgd", {"lr": 0.1, "weight_decay": 0.0})["momentum"] == 0.9
    assert spec.trial_values("adagrad", {"lr": 0.1, "weight_decay": 0.0})["eps"] == 1e-10, "AdaGrad's own eps"
    rms = spec.trial_values("rmsprop", {"lr": 0.1, "weight_decay": 0.0})
    assert (rms["rho"], rms["eps"]) == (0.99, 1e-8)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"variants": ["sgd", "adamw"]},
         "grid.beta1: beta1 does not apply to variant sgd (SGD family, whose own hyperparameters are: momentum)"),
        ({"hyperparameters": {"lr": 0.001, "momentum": 0.9}},
         "hyperparameters.momentum: momentum does not apply to variant adam (Adam family"),
        ({"hyperparameters": {"lr": 0.001, "epochs": 5}},
         "hyperparameters.epochs: epochs is a top-level field of the spec"),
        ({"hyperparameters": {"lr": 0.001, "beta1": 0.9}},
         "hyperparameters.beta1: beta1 is swept in `grid`; remove it from `hyperparameters`"),
        ({"hyperparameters": {"weight_decay": 0.0005}},
         "hyperparameters.lr: required field is missing: give a fixed learning rate"),
        ({"hyperparameters": {"lr": 0.0}}, "hyperparameters.lr: must be a finite number > 0, got 0.0"),
        ({"hyperparameters": {"lr": 0.001, "spin": 1}}, "hyperparameters.spin: unknown axis 'spin'"),
        ({"hyperparameters": {"lr": {"adam": 0.001, "lion": 0.1}}}, "hyperparameters.lr.lion: unknown variant 'lion'"),
        ({"facet": {"beta1": [0.9]}}, "facet.beta1: beta1 is already swept or fixed; a facet must be a third axis"),
        ({"facet": {"momentum": [0.9]}}, "facet.momentum: momentum does not apply to variant adam"),
        ({"facet": {"schedule": ["step", "stepp"]}}, "facet.schedule[1]: must be one of constant, cosine, step"),
        ({"facet": {"schedule": ["step"], "epochs": [2]}}, "facet: must map exactly one axis name to its values"),
        ({"facet": {"schedule": []}}, "facet.schedule: must list at least one schedule value"),
        ({"grid": {"beta1": [0.9], "batch_size": [32, 64.5]}}, "grid.batch_size[1]: must be an integer between 1 and 65536"),
    ],
)
def test_axes_a_variant_does_not_read_are_refused_naming_both(changes: dict[str, Any], expected: str) -> None:
    message = _errors(_betas(**changes))
    assert expected in message, message


def test_fixed_hyperparameters_per_variant() -> None:
    spec = SweepSpec.model_validate(_base(
        variants=["sgd", "adam"], hyperparameters={"momentum": {"sgd": 0.5}, "lr": {"sgd": 0.1, "adam": 0.001}},
        grid={"weight_decay": [0.0, 0.001], "batch_size": [32, 64]}))
    assert spec.trial_values("sgd", {"weight_decay": 0.0, "batch_size": 32})["momentum"] == 0.5
    assert spec.trial_values("adam", {"weight_decay": 0.0, "batch_size": 64})["lr"] == 0.001
    assert spec.cells("sgd")[1].key == "wd=0.0|batch_size=64|seed=0", "an int axis keeps its integers"


def test_per_variant_values_with_a_default_list() -> None:
    spec = SweepSpec.model_validate(_base(
        variants=["sgd", "adamw", "adamw-torch"],
        grid={"lr": [0.1, 0.2], "weight_decay": {"default": [0.0, 0.001], "adamw-torch": [0.01, 0.1, 1.0]}}))
    assert spec.axis_values("weight_decay", "sgd") == [0.0, 0.001]
    assert spec.axis_values("weight_decay", "adamw-torch") == [0.01, 0.1, 1.0]
    assert spec.study_trials("adamw-torch") == 6 and spec.total_trials() == 4 + 4 + 6


def test_facet_studies_are_named_per_value() -> None:
    spec = SweepSpec.model_validate(_betas(facet={"schedule": ["constant", "step", "cosine"]}))
    assert spec.total_trials() == 2 * 12 * 3
    assert spec.facets() == [Facet("schedule", "constant"), Facet("schedule", "step"), Facet("schedule", "cosine")]
    step = spec.facets()[1]
    assert spec.study_name("adamw", step) == "t/adamw/schedule=step"
    assert parse_study_name("fig1/adamw/schedule=step") == ("fig1", "adamw", Facet("schedule", "step"))
    assert parse_study_name(study_name("b", "sgd", Facet("epochs", 25))) == ("b", "sgd", Facet("epochs", 25))
    assert parse_study_name("quick/sgdw") == ("quick", "sgdw", None)
    with pytest.raises(ValueError, match="not an hpscape study name"):
        parse_study_name("a/b/c/d")
    assert spec.trial_values("adam", spec.cells("adam")[0].params, step)["schedule"] == "step"
    faceted_epochs = SweepSpec.model_validate(_base(facet={"epochs": [2, 8, 32]}))
    assert faceted_epochs.max_epochs() == 32


def test_bayes_over_any_two_axes() -> None:
    spec = SweepSpec.model_validate(_base(
        variants=["adam"], hyperparameters={"weight_decay": 0.001}, grid=None,
        bayes={"n_trials": 5, "beta1": [0.5, 0.99], "lr": [1e-4, 1e-2]}))
    assert spec.swept_axes == ("beta1", "lr") and spec.bayes.ranges == {"beta1": (0.5, 0.99), "lr": (1e-4, 1e-2)}
    assert SweepSpec.model_validate(spec.model_dump(mode="json")) == spec, "the ranges sit beside n_trials, round trip"
    ints = SweepSpec.model_validate(_base(grid=None, bayes={"n_trials": 2, "lr": [1e-3, 1e-1], "batch_size": [16, 256]}))
    assert ints.bayes.ranges["batch_size"] == (16, 256)


def test_specs_of_hpscape_0_1_stay_valid() -> None:
    # The grid of lr and weight_decay, no hyperparameters, no facet: as every 0.1 spec was written.
    old = {"name": "old", "dataset": "digits", "model": "shake_shake_8_2x16d", "variants": ["sgd", "adamw"],
           "epochs": 3, "batch_size": 64, "schedule": "cosine", "normalized_decay": False, "label_noise": 0.2,
           "metric": "test_loss", "seeds": [0, 1], "resources": {"cpu": 1.0, "gpu": 0.0}, "max_concurrent_trials": 2,
           "grid": {"lr": {"sgd": [0.03125, 0.125], "adamw": [0.003125, 0.0125]}, "weight_decay": [0.0, 0.001953125]}}
    spec = SweepSpec.model_validate(old)
    assert spec.cells("sgd")[0].key == "lr=0.03125|wd=0.0|seed=0", "0.1's cell keys, so resumes find their cells"
    assert spec.study_name("sgd") == "old/sgd"
