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
    SpecError,
    SweepSpec,
    dump_spec,
    fig2_weight_decays,
    format_validation_error,
    get_preset,
    load_spec,
    lr_by_family,
    powers_of_two,
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
    assert set(PRESETS) == {"fig2", "quick"}
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
    sgd_lrs = [2.0**k for k in range(-10, 1)]
    adam_lrs = [0.1 * 2.0**k for k in range(-10, 1)]
    for variant, expected in [("sgd", sgd_lrs), ("sgdw", sgd_lrs), ("adam", adam_lrs), ("adamw", adam_lrs)]:
        assert fig2.lr_values(variant) == expected
    assert fig2.lr_values("adam")[0] == pytest.approx(9.765625e-5, rel=1e-12)
    decays = [0.0, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert fig2.grid is not None
    assert fig2.grid.weight_decay == [d * 0.001 for d in decays]
    assert list(FIG2_DECAY_TICKS) == decays
    cells = fig2.cells("adamw")
    assert len(cells) == 121 and len({c.key for c in cells}) == 121


def test_quick_preset_is_cpu_sized_and_follows_protocol_5() -> None:
    quick = get_preset("quick")
    assert quick.dataset == "digits", "bundled data: no download"
    assert quick.resources.gpu == 0 and quick.max_concurrent_trials == 2, "two CPU trials at a time"
    assert (quick.label_noise, quick.metric, quick.schedule) == (0.2, "test_loss", "cosine"), "PROTOCOL section 5"
    assert quick.variants == ["sgd", "sgdw", "adam", "adamw", "adamw-torch"]
    sgd_rows = quick.lr_values("sgdw")
    assert quick.lr_values("sgd") == sgd_rows
    for adam_lr, sgd_lr in zip(quick.lr_values("adamw-torch"), sgd_rows, strict=True):
        assert adam_lr == pytest.approx(0.1 * sgd_lr), "the Adam family's rows are ten times smaller, as in fig2"
    assert all(b / a == 4.0 for a, b in zip(sgd_rows, sgd_rows[1:])), "rows are powers of two, 4x apart"
    assert sgd_rows[-1] / sgd_rows[0] == 16.0, "a 16x range of alpha, as in PROTOCOL section 5"
    wds = quick.grid.weight_decay
    assert all(w > 0 for w in wds), "no 0 column: a row whose best decay is 0 carries no ridge information"
    assert all(b / a == 4.0 for a, b in zip(wds, wds[1:])), "decay columns are powers of two, 4x apart"
    # the budget: at most 60 trials of 25 epochs (about 8 minutes on 2 cores, measured; the target is 10)
    assert quick.total_trials() <= 60 and quick.epochs <= 25
    assert quick.model == "shake_shake_8_2x16d_bnhead", "the scale-invariant head (see presets.py for why)"
    assert (quick.label_noise, quick.metric, quick.schedule) == (0.2, "test_loss", "cosine"), "PROTOCOL section 5"
    # enough total decay for equilibrium at the middle decay: lambda * sum(eta_t) >= 1 (cosine: sum = steps / 2)
    steps = quick.epochs * math.ceil(1437 / quick.batch_size)
    assert wds[len(wds) // 2] * steps / 2 >= 1


def test_get_preset_overrides_are_validated_and_unknown_names_listed() -> None:
    small = get_preset("fig2", name="fig2-sgd", variants=["sgd"], epochs=3)
    assert (small.name, small.variants, small.epochs, small.total_trials()) == ("fig2-sgd", ["sgd"], 3, 121)
    bayes = get_preset(
        "quick", bayes={"n_trials": 7, "lr": [1e-3, 1e-1], "weight_decay": [1e-5, 1e-2]}
    )
    assert bayes.mode == "bayes" and bayes.grid is None and bayes.total_trials() == 35
    with pytest.raises(ValidationError) as info:
        get_preset("fig2", epochs=0)
    assert format_validation_error(info.value).startswith("epochs:")
    with pytest.raises(SpecError, match="fig2, quick"):
        get_preset("fig3")
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
    assert lr_by_family(["adam", "sgd"], sgd=[1.0], adam=[0.1]) == {"adam": [0.1], "sgd": [1.0]}
    with pytest.raises(ValueError, match="unknown variant 'lion'"):
        lr_by_family(["lion"], sgd=[1.0], adam=[0.1])


# ---------------------------------------------------------------------------------------------
# Derived values


def test_cells_keys_and_counts() -> None:
    spec = SweepSpec.model_validate(
        _base(seeds=[0, 3], grid={"lr": {"sgd": [0.0625], "adamw": [0.1, 0.01]}, "weight_decay": [0, 0.001]})
    )
    assert spec.total_trials() == (1 + 2) * 2 * 2
    cells = spec.cells("sgd")
    assert cells[0] == Cell(0.0625, 0.0, 0)
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
    for bad in ["shake_shake_2_2x64d", "shake_shake_10_2x64d", "shake_shake_26_2x48d", "resnet18", "shake_shake_26_4x64d"]:
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
        ({"grid": {"lr": [], "weight_decay": [0]}}, "grid.lr: must list at least one learning rate"),
        ({"grid": {"lr": [0.1], "weight_decay": []}}, "grid.weight_decay: must list at least one"),
        ({"grid": {"lr": ["fast"], "weight_decay": [0]}}, "grid.lr[0]: must be a number, got 'fast'"),
        ({"grid": {"lr": [True], "weight_decay": [0]}}, "grid.lr[0]: must be a number, got True"),
        ({"grid": {"lr": {"sgd": [0.1, float("nan")], "adamw": [0.1]}, "weight_decay": [0]}}, "grid.lr.sgd[1]: must be a finite number > 0, got nan"),
        ({"grid": {"lr": {"sgd": [0.1]}, "weight_decay": [0]}}, "grid.lr: no learning rates for variant(s) adamw"),
        ({"grid": {"lr": {"sgd": [0.1], "adamw": [0.1], "lion": [1]}, "weight_decay": [0]}}, "grid.lr.lion: unknown variant 'lion'"),
        ({"grid": {"lr": [0.1], "weight_decay": [0], "momentum": [0.9]}}, "grid.momentum: unknown field; allowed: lr, weight_decay"),
        ({"variants": ["sgd", "lion"]}, "variants[1]: Input should be 'sgd', 'sgdw', 'adam', 'adamw' or 'adamw-torch', got 'lion'"),
        ({"variants": ["sgd", "sgd"]}, "variants[1]: duplicate of item [0] ('sgd')"),
        ({"variants": []}, "variants: must list at least one variant"),
        ({"model": "resnet18"}, "model: unknown model 'resnet18'"),
        ({"model": "shake_shake_12_2x64d"}, "model: bad depth 12"),
        ({"dataset": "mnist"}, "dataset: Input should be 'cifar10', 'digits' or 'synthetic', got 'mnist'"),
        ({"optimizer": "sgd"}, "optimizer: unknown field; allowed: name, dataset"),
        ({"name": "a/b"}, "name: 'a/b' is not allowed"),
        ({"name": "-lead"}, "name: '-lead' is not allowed"),
        ({"name": "x" * 201}, "name: must be 1 to 200 characters long, got 201"),
        ({"name": ""}, "name: must be 1 to 200 characters long, got 0"),
        ({"epochs": 0}, "epochs: Input should be greater than or equal to 1"),
        ({"epochs": 10001}, "epochs: Input should be less than or equal to 10000"),
        ({"epochs": 2.5}, "epochs: Input should be a valid integer"),
        ({"batch_size": 65537}, "batch_size: Input should be less than or equal to 65536"),
        ({"schedule": "linear"}, "schedule: Input should be"),
        ({"metric": "accuracy"}, "metric: Input should be 'test_error' or 'test_loss', got 'accuracy'"),
        ({"label_noise": 1.0}, "label_noise: must be in [0, 1)"),
        ({"label_noise": float("nan")}, "label_noise: must be a finite number >= 0, got nan"),
        ({"seeds": [0, 0]}, "seeds[1]: duplicate of item [0] (0)"),
        ({"seeds": [-1]}, "seeds[0]: Input should be greater than or equal to 0"),
        ({"seeds": []}, "seeds: must list at least one seed"),
        ({"resources": {"cpu": 0}}, "resources.cpu: must be a finite number > 0, got 0.0"),
        ({"resources": {"gpu": 9}}, "resources.gpu: must be between 0 and 8"),
        ({"resources": {"gpu": float("inf")}}, "resources.gpu: must be a finite number >= 0, got inf"),
        ({"resources": {"tpu": 1}}, "resources.tpu: unknown field; allowed: cpu, gpu"),
        ({"max_concurrent_trials": 0}, "max_concurrent_trials: Input should be greater than or equal to 1"),
        ({"grid": None}, "grid: give exactly one of `grid` (explicit lr and weight_decay lists) or `bayes` (a Bayesian search), got neither"),
        ({"bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2]}}, "grid: give exactly one of `grid`"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-1, 1e-3], "weight_decay": [1e-4, 1e-2]}}, "bayes.lr: must be [low, high] with low < high, got [0.1, 0.001]"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "weight_decay": [0, 1e-2]}}, "bayes.weight_decay[0]: must be a finite number > 0, got 0.0"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, float("inf")], "weight_decay": [1e-4, 1e-2]}}, "bayes.lr[1]: must be a finite number > 0, got inf"),
        ({"grid": None, "bayes": {"n_trials": 0, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2]}}, "bayes.n_trials: Input should be greater than or equal to 1"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2], "sampler": "cmaes"}}, "bayes.sampler: Input should be 'tpe' or 'gp', got 'cmaes'"),
        ({"grid": None, "bayes": {"n_trials": 3, "lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2], "pruning": "hyperband"}}, "bayes.pruning: Input should be 'none' or 'asha', got 'hyperband'"),
        ({"grid": None, "bayes": {"lr": [1e-3, 1e-1], "weight_decay": [1e-4, 1e-2]}}, "bayes.n_trials: required field is missing"),
    ],
)
def test_bad_input_names_the_field(changes: dict[str, Any], expected: str) -> None:
    message = _errors(_base(**changes))
    assert expected in message, message


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
    assert spec.lr_values("sgd") == [0.5] and spec.total_trials() == 1


def test_spec_is_immutable_and_replace_validates() -> None:
    spec = get_preset("quick")
    with pytest.raises(ValidationError):
        spec.epochs = 3  # type: ignore[misc]
    renamed = spec.replace(name="quick-2", seeds=[1, 2])
    assert (renamed.name, renamed.seeds, renamed.total_trials()) == ("quick-2", [1, 2], 2 * spec.total_trials())
    assert spec.name == "quick" and spec.seeds == [0]
    with pytest.raises(ValidationError, match="is not allowed"):
        spec.replace(name="a/b")


# ---------------------------------------------------------------------------------------------
# Files


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
@pytest.mark.parametrize("preset", ["fig2", "quick"])
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
    assert load_spec(str(tmp_path / "s.yaml")).grid.weight_decay == [0.0, 0.001]  # type: ignore[union-attr]


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
