"""Named sweeps: `fig2` (the paper's Figure 2, PROTOCOL section 3) and CPU-sized ones that finish in minutes.

- `quick`: Figure 2's mechanism on digits (SGD with L2 against SGDW, and the paper's AdamW; lr x weight decay);
- `quick-adam`: Adam with L2 and torch's AdamW, whose decays couple to lr, each on its own decay range;
- `quick-families`: the same for RMSProp and AdaGrad, L2 against decoupled decay;
- `adam-betas`: Adam against AdamW over beta1 x beta2 at a fixed learning rate and decay.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .errors import SpecError
from .grid import fig2_weight_decays, powers_of_two
from .spec import SweepSpec
from .variants import lr_by_family

__all__ = ["PRESETS", "get_preset"]

# ---------------------------------------------------------------------------------------------
# The preset values, one block each.

_FIG2_VARIANTS = ["sgd", "sgdw", "adam", "adamw"]  # the four panels: SGD | SGDW over Adam | AdamW
_FIG2: dict[str, Any] = {
    "name": "fig2",
    "dataset": "cifar10",  # the paper's data: 50k train / 10k test, no validation split
    "model": "shake_shake_26_2x64d",  # the network of Figure 2 (about 11.65 M parameters)
    "variants": _FIG2_VARIANTS,
    "epochs": 100,  # Figure 2 runs are 100 epochs (not the 1800 of the Shake-Shake paper)
    "batch_size": 128,  # 391 iterations per epoch, as in the authors' code
    "schedule": "cosine",  # cosine multiplier 1 -> 0 per iteration, no restarts
    "normalized_decay": False,  # the figure's axis is the raw per-step decay / L2 factor
    "label_noise": 0.0,  # clean CIFAR-10 labels
    "metric": "test_error",  # colour = final-epoch test error
    "seeds": [0],  # one run per cell
    "grid": {
        # alpha: SGD/SGDW 2^-10 .. 2^0; Adam/AdamW ten times smaller (0.1 * 2^-10 .. 0.1 * 2^0)
        "lr": lr_by_family(_FIG2_VARIANTS, powers_of_two(-10, 0)),
        # {0, 1/32, ..., 16} x 0.001, the same ticks in all four panels
        "weight_decay": fig2_weight_decays(),
    },
    "resources": {"gpu": 0.25, "cpu": 2},  # four 26 2x64d runs share one GPU; 2 cores feed each
    # The fast path for 484 runs of 50 PFLOP each: bf16 autocast (weights stay fp32) and torch.compile. The paper
    # trained in fp32: `precision: fp32` (and `compile: false` to skip the warm-up) reproduces that arithmetic.
    "precision": "bf16",
    "compile": True,
    "max_concurrent_trials": 16,  # e.g. 4 GPUs x 4 trials each
}

# What every CPU-sized preset shares: bundled data, the scale-invariant model, the mechanism's conditions.
_DIGITS: dict[str, Any] = {
    "dataset": "digits",  # bundled with scikit-learn: no download, trains on a CPU
    # 152 k parameters: enough to memorise the noisy labels where the effective step is small. The head batch-
    # normalizes the logits, so every decayed weight is scale-invariant and the decay acts only through the
    # effective step (the mechanism of PROTOCOL section 5); with the paper's linear head the softmax temperature,
    # set by the decayed last layer, dominates the test loss and hides the coupling (measured: ridge slopes of
    # +0.75 for both sgd and sgdw).
    "model": "shake_shake_8_2x16d_bnhead",
    "epochs": 25,  # 575 steps: lambda * sum(eta_t) = 9 at the SGDW optimum 2^-5, well past equilibrium
    "batch_size": 64,  # 23 steps per epoch; on CPU this model costs about the same per epoch at 64 as at 128
    "schedule": "cosine",  # same schedule shape as fig2
    "normalized_decay": False,  # raw decay, so the axes read like Figure 2's
    "label_noise": 0.2,  # PROTOCOL section 5: without label noise the coupling did not appear
    "metric": "test_loss",  # PROTOCOL section 5: test error on digits was too noisy
    "resources": {"cpu": 1, "gpu": 0},  # one core per trial, no GPU
    "max_concurrent_trials": 2,  # the CI machine has 2 cores
}
# 2^-5, 2^-3, 2^-1 for the SGD family: a 16x range of alpha, as in PROTOCOL section 5 (adaptive families: 0.1x).
_QUICK_RATES = powers_of_two(-5, -1, step=2)
# 2^-9 .. 2^-3 in steps of 4x: a slope of -1 moves SGD's optimum one column per row. No 0 column: a row whose best
# decay is 0 says nothing about the ridge, and the 10-minute budget has no room for it.
_QUICK_DECAYS = [2.0**k for k in (-9, -7, -5, -3)]
# The Adam family's rows, before its 0.1 scale: 2^-4, 2^-2, 2^0 (0.1 x: 0.00625 .. 0.1), also a 16x range.
_ADAM_RATES = powers_of_two(-4, 0, step=2)

_QUICK_VARIANTS = ["sgd", "sgdw", "adamw"]  # the pair of Figure 2's top row, and the paper's AdamW
_QUICK: dict[str, Any] = {
    "name": "quick",
    **_DIGITS,
    "variants": _QUICK_VARIANTS,
    # Two seeds (label noise, initialisation, data order): the ridge slope's interval comes from their spread.
    "seeds": [0, 1],
    "grid": {
        "lr": {
            **lr_by_family(["sgd", "sgdw"], _QUICK_RATES),
            # One octave above 0.1 x the SGD rows: at 0.1 x 2^-5 the largest decay collapses the network (test loss
            # 0.80), a corner that drags the parabola through the row's best cell (measured slope +0.18 there,
            # +0.02 with these rows).
            "adamw": lr_by_family(["adamw"], _ADAM_RATES)["adamw"],
        },
        # SGD + L2's optimum falls one column (4x) per row (4x): 2^-3, 2^-5, 2^-7 (measured), so its grid reaches
        # 2^-1 and every row's optimum lies inside it. The decoupled optima sit at 2^-5 in every row: 2^-7 and 2^-3
        # bracket them (a 2^-9 column changed neither slope, measured), which keeps the sweep to 66 trials.
        "weight_decay": {"sgd": [*_QUICK_DECAYS, 2.0**-1], "default": _QUICK_DECAYS[1:]},
    },
}

_QUICK_ADAM: dict[str, Any] = {
    "name": "quick-adam",
    **_DIGITS,
    "variants": ["adam", "adamw-torch"],  # L2 inside Adam, and torch's AdamW: both couple their decay to alpha
    "seeds": [0, 1],
    "grid": {
        "lr": lr_by_family(["adam", "adamw-torch"], _ADAM_RATES),
        "weight_decay": {
            # L2 passes through Adam's normalization, and its optimum falls about 2 octaves per octave of alpha
            # (measured: 2^-6.6 at alpha 0.025, 2^-10.7 at 0.1): six columns keep every row's optimum inside.
            "adam": [2.0**k for k in (-13, -11, -9, -7, -5, -3)],
            # torch multiplies its decay by alpha: its equilibrium lambda is the paper's (2^-5) over alpha, about
            # 2^-2 .. 2^2 on these rows, so it gets a range of its own (on quick's range it never reached one).
            "adamw-torch": [2.0**k for k in (-3, -1, 1, 3, 5)],
        },
    },
}

_RMSPROP, _ADAGRAD = ["rmsprop", "rmspropw"], ["adagrad", "adagradw"]  # PROTOCOL section 2's other families
# AdaGrad's decay range sits 4x lower: at 2^-3 with decoupled decay its shrinking steps cannot hold the weights'
# norm, and the network collapses to uniform predictions (measured: test loss 2.303 = ln 10).
_ADAGRAD_DECAYS = [2.0**k for k in (-11, -9, -7, -5)]
_QUICK_FAMILIES: dict[str, Any] = {
    "name": "quick-families",
    **_DIGITS,
    "variants": [*_RMSPROP, *_ADAGRAD],
    "seeds": [0],
    "grid": {"lr": lr_by_family([*_RMSPROP, *_ADAGRAD], _QUICK_RATES),
             "weight_decay": {"default": _QUICK_DECAYS, **{v: _ADAGRAD_DECAYS for v in _ADAGRAD}}},
}

_ADAM_BETAS: dict[str, Any] = {
    "name": "adam-betas",
    **_DIGITS,
    "variants": ["adam", "adamw"],  # L2 inside Adam against the paper's decoupled decay
    "seeds": [0],
    # The middle of quick's Adam grid: lr 0.1 * 2^-3, decay 2^-5 (AdamW's best decay on quick).
    "hyperparameters": {"lr": 0.1 * 2.0**-3, "weight_decay": 2.0**-5},
    "grid": {"beta1": [0.5, 0.8, 0.9, 0.95], "beta2": [0.9, 0.99, 0.999]},
}

# ---------------------------------------------------------------------------------------------

# Validated at import so a broken preset fails loudly and early.
PRESETS: Mapping[str, SweepSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            SweepSpec.model_validate(values) for values in (_FIG2, _QUICK, _QUICK_ADAM, _QUICK_FAMILIES, _ADAM_BETAS)
        )
    }
)


def get_preset(name: str, /, **overrides: Any) -> SweepSpec:
    """The preset `name` with top-level fields replaced by `overrides`, validated again.

    `name` is positional-only so that `name=...` overrides the sweep name.

    Nested fields are replaced whole (e.g. ``resources={"gpu": 1}`` resets cpu to its default).
    Overriding `bayes` drops the preset's `grid` (and vice versa) unless both are given.
    Raises SpecError for an unknown preset and pydantic.ValidationError for bad overrides.
    """
    if name not in PRESETS:
        raise SpecError(f"unknown preset {name!r}; available presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name].replace(**overrides)
