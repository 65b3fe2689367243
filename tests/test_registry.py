"""The registries are the only lists: variants, axes, datasets and model names are written once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from hpscape.landscapes import AXES, DATASETS, FAMILIES, VARIANTS, landscape_pairs, model_names
from hpscape.landscapes.axes import axis_applies

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("landscapes", "workers", "dashboards", "service", "hpscape", "bench", "scripts")
# Where variant names may be written: the registry itself, and the presets, which choose their variants by name.
NAMED_HERE = {"landscapes/variants.py", "landscapes/presets/digits.py", "landscapes/presets/paper.py"}


def _string_constants(path: Path) -> list[tuple[int, str]]:
    """String literals of a module that are not docstrings, with their line numbers."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    # An optimizer class names the family it implements (`family = "adam"`); family names are not variants.
    declared = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Assign)
                and [getattr(t, "id", None) for t in node.targets] == ["family"]}
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and id(node) not in declared]


def test_no_module_but_the_registry_lists_variants() -> None:
    names = set(VARIANTS)
    found = []
    for folder in PRODUCT:
        for path in sorted((REPO / folder).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative in NAMED_HERE:
                continue
            found += [f"{relative}:{line}: {text!r}" for line, text in _string_constants(path) if text in names]
        for path in sorted((REPO / folder).rglob("*.js")):
            text = path.read_text(encoding="utf-8")
            found += [f"{path.relative_to(REPO)}: {name!r}" for name in names
                      if re.search(rf"[\"']{re.escape(name)}[\"']", text)]
    assert not found, "variant names written outside landscapes/variants.py (read the registry instead):\n" + \
        "\n".join(found)


def test_the_check_above_can_fail(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text('"""sgd in a docstring is fine."""\nPAIRS = [("sgd", "sgdw")]\n'
                      'class A:\n    family = "sgd"\n')
    assert [text for _, text in _string_constants(module)] == ["sgd", "sgdw"]


def test_every_variant_is_complete() -> None:
    for name, variant in VARIANTS.items():
        assert variant.name == name and variant.family.name in FAMILIES
        assert variant.decay in ("l2", "decoupled", "torch")
        assert variant.partner in VARIANTS and variant.partner != name
        # Partners pair an L2 form with a decoupled one (torch's AdamW is compared with the paper's).
        partner = VARIANTS[variant.partner]
        assert partner.family.name == variant.family.name
        assert {variant.decay, partner.decay} in ({"l2", "decoupled"}, {"torch", "decoupled"})
        for axis in variant.hyperparameters:
            assert axis in AXES and axis_applies(AXES[axis], variant)
    assert [name for name, v in VARIANTS.items() if v.decay == "decoupled"] == [
        v.partner for v in VARIANTS.values() if v.decay == "l2"
    ], "every L2 variant has its decoupled twin"


def test_figure_rows_pair_each_variant_with_its_partner() -> None:
    assert landscape_pairs(VARIANTS)[:3] == [("sgd", "sgdw"), ("adam", "adamw"), ("adamw", "adamw-torch")]
    assert landscape_pairs(["adamw-torch", "adamw"]) == [("adamw", "adamw-torch")]
    assert landscape_pairs(["rmspropw"]) == [("rmspropw", None)]


def test_the_worker_registries_build_exactly_the_vocabulary() -> None:
    from hpscape.workers.data import LOADERS
    from hpscape.workers.models import list_models
    from hpscape.workers.optim import FAMILY_OPTIMIZERS

    assert list_models() == model_names(), "the spec accepts exactly the model names a worker builds"
    assert set(LOADERS) == set(DATASETS)
    assert set(FAMILY_OPTIMIZERS) == set(FAMILIES)


def test_dataset_sizes_are_what_the_loaders_load() -> None:
    from hpscape.landscapes import DATASET_SIZES
    from hpscape.workers.data import IMAGENET32_COUNTS, load_dataset

    for name in ("digits", "synthetic"):  # the bundled ones load here; the others are checked against their counts
        ds = load_dataset(name)
        assert (ds.train_size, ds.test_size) == DATASET_SIZES[name], name
    assert DATASET_SIZES["imagenet32"] == IMAGENET32_COUNTS  # what the loader insists on


@pytest.mark.parametrize("name", ["shake_shake_38_2x8d", "shake_shake_26_2x48d", "shake_shake_26_3x64d"])
def test_names_the_registry_does_not_build_are_refused(name: str) -> None:
    from hpscape.landscapes import validate_model_name
    from hpscape.workers.models import create_model

    with pytest.raises(ValueError, match="unknown model"):
        validate_model_name(name)
    with pytest.raises(ValueError, match="unknown model name"):
        create_model(name)
