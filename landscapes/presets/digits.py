"""CPU-sized presets on the bundled digits data: each finishes in about 10 minutes on two cores.

- `quick`: Figure 2's mechanism (SGD with L2 against SGDW, and the paper's AdamW; lr x weight decay);
- `quick-adam`: Adam with L2 and torch's AdamW, whose decays couple to lr, each on its own decay range;
- `quick-families`: the same for RMSProp and AdaGrad, L2 against decoupled decay;
- `adam-betas`: Adam against AdamW over beta1 x beta2 at a fixed learning rate and decay;
- `quick-fig1`, `quick-fig3`, `quick-fig4`, `quick-budget`: the paper's Figures 1, 3, 4 and its budget study.

Why each value is what it is: docs/science.md (the mechanism) and docs/presets.md (what each preset measured).
"""

from __future__ import annotations

from typing import Any

from ..grid import powers_of_two
from ..variants import lr_by_family

__all__ = ["DIGITS_PRESETS"]

# What every CPU-sized preset shares: bundled data, the scale-invariant model, the mechanism's conditions.
_DIGITS: dict[str, Any] = {
    "dataset": "digits",  # bundled with scikit-learn: no download, trains on a CPU
    # 152 k parameters: enough to memorise the noisy labels where the effective step is small. The head batch-
    # normalizes the logits, so every decayed weight is scale-invariant and the decay acts only through the
    # effective step (the mechanism in docs/science.md, "the effective step"); with the paper's linear head the
    # softmax temperature, set by the decayed last layer, dominates the test loss and hides the coupling
    # (measured: ridge slopes of +0.75 for both sgd and sgdw).
    "model": "shake_shake_8_2x16d_bnhead",
    "epochs": 25,  # 575 steps: lambda * sum(eta_t) = 9 at the SGDW optimum 2^-5, well past equilibrium
    "batch_size": 64,  # 23 steps per epoch; on CPU this model costs about the same per epoch at 64 as at 128
    "schedule": "cosine",  # same schedule shape as fig2
    "normalized_decay": False,  # raw decay, so the axes read like Figure 2's
    "label_noise": 0.2,  # docs/science.md, "the effective step": without label noise the coupling did not appear
    "metric": "test_loss",  # docs/science.md, "the effective step": test error on digits was too noisy
    "resources": {"cpu": 1, "gpu": 0},  # one core per trial, no GPU
    "max_concurrent_trials": 2,  # the CI machine has 2 cores
}
# 2^-5, 2^-3, 2^-1 for the SGD family: a 16x range of alpha, as in docs/science.md, "the effective step"
# (adaptive families: 0.1x).
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

_RMSPROP, _ADAGRAD = ["rmsprop", "rmspropw"], ["adagrad", "adagradw"]  # the other families (docs/science.md)
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
# The paper's other experiments, CPU-sized. Digits' lambda_norm scale: quick's decoupled optimum 2^-5 at 25 epochs of
# batch 64 over 1,437 images is lambda_norm = 2^-5 / sqrt(64 / (1437 * 25)) = 0.74 (the paper's CIFAR-10 values,
# 0.025 and 0.05, belong to its own data and model).

# Figure 1: Adam against AdamW under three schedules. 20 epochs; the drops at 30 %, 60 % and 80 % of the run, where
# the paper's 100-epoch runs drop (30, 60, 80).
_QUICK_FIG1: dict[str, Any] = {
    "name": "quick-fig1",
    **_DIGITS,
    "epochs": 20,  # 63 trials in the 10-minute budget (25 epochs would not fit)
    "variants": ["adam", "adamw"],
    "seeds": [0],
    "facet": {"schedule": ["constant", "step", "cosine"]},
    "step_milestones": [6, 12, 16],
    "step_gamma": 0.1,
    "grid": {
        "lr": lr_by_family(["adam", "adamw"], _ADAM_RATES),
        # Adam's L2 optimum falls about 2 octaves per octave of alpha (quick-adam), so its columns span 9 octaves;
        # AdamW's optimum stays near 2^-5 (quick).
        "weight_decay": {"adam": [2.0**k for k in (-12, -9, -6, -3)], "adamw": [2.0**k for k in (-7, -5, -3)]},
    },
}

# Figure 3: alpha fixed, Adam with L2 against AdamW with normalized decay, trained long; learning curves and test
# error against training loss.
_QUICK_FIG3: dict[str, Any] = {
    "name": "quick-fig3",
    **_DIGITS,
    "epochs": 60,  # 2.4 times quick's budget: long enough for the training loss to separate the settings
    "variants": ["adam", "adamw"],
    "seeds": [0],
    "normalized_decay": True,  # AdamW's values are lambda_norm; Adam's L2 factor stays raw
    "grid": {
        "lr": [0.1 * 2.0**-4],  # quick's lowest Adam row (alpha = 0.001 barely trains in 60 epochs here)
        "weight_decay": {"adam": [2.0**k for k in (-13, -11, -9, -7, -5, -3)],
                         "adamw": [0.125, 0.5, 2.0, 8.0]},
    },
}

# Figure 4: warm restarts against one cosine period, at each variant's best cell; T_0 = 2, T_mult = 2 gives
# restarts after epochs 2, 6, 14 and 30 (the paper's B.2 example at 1/50 of its length).
_QUICK_FIG4: dict[str, Any] = {
    "name": "quick-fig4",
    **_DIGITS,
    "epochs": 30,
    "variants": ["sgdw", "adamw"],
    "seeds": [0, 1, 2],  # few cells: three seeds give each curve its spread
    "facet": {"schedule": ["cosine", "warm_restarts"]},
    "restart_period": 2,
    "restart_mult": 2,
    "normalized_decay": True,  # renormalized with each period's length under warm restarts
    "grid": {
        "lr": lr_by_family(["sgdw", "adamw"], [2.0**-3]),  # quick's middle row
        "weight_decay": [0.75],  # digits' lambda_norm (above)
    },
}

# The budget study: the optimal raw decay against the number of epochs, with the decay raw on the grid (the
# budget view converts each optimum to lambda_norm).
_QUICK_BUDGET: dict[str, Any] = {
    "name": "quick-budget",
    **_DIGITS,
    "variants": ["sgdw", "adamw"],
    "seeds": [0],
    "facet": {"epochs": [5, 10, 20, 40]},  # an 8x range of budgets: sqrt(8) = 2.8x in the normalized optimum
    "grid": {
        "lr": lr_by_family(["sgdw", "adamw"], [2.0**-3]),
        "weight_decay": powers_of_two(-8, -2),  # octave steps: the optimum's interval needs neighbours each side
    },
}

DIGITS_PRESETS: tuple[dict[str, Any], ...] = (
    _QUICK, _QUICK_ADAM, _QUICK_FAMILIES, _ADAM_BETAS, _QUICK_FIG1, _QUICK_FIG3, _QUICK_FIG4, _QUICK_BUDGET,
)
