"""The paper's experiments at its sizes (CIFAR-10, Shake-Shake 26 2x64d), for a GPU cluster; and `cifar-overnight`.

- `fig2`: Figure 2, lr x weight decay for SGD, SGDW, Adam and AdamW (484 runs of 100 epochs);
- `fig1`: Figure 1, Adam against AdamW under a fixed, a step-drop and a cosine schedule;
- `fig3`: Figure 3, alpha = 0.001, Adam with 12 L2 factors against AdamW with 7 normalized decays, 1800 epochs;
- `fig4`: Figure 4, SGDWR and AdamWR (warm restarts, T_0 = 100, T_mult = 2) against one cosine period;
- `budget`: the optimal raw decay against the budget (100 to 1800 epochs), and its normalized value;
- `cifar-overnight`: Figure 2's SGD pair on one GPU in a night: a narrower network, fewer epochs, a 6 x 6 grid.

Where the paper does not state a value (Figure 3's exact decay settings, Figure 4's learning rates, the budget
grid), the value here is ours, chosen around the paper's stated optima; docs/presets.md says which.
"""

from __future__ import annotations

from typing import Any

from ..grid import fig2_weight_decays, powers_of_two
from ..variants import lr_by_family

__all__ = ["PAPER_PRESETS"]

_FIG2_VARIANTS = ["sgd", "sgdw", "adam", "adamw"]  # the four panels: SGD | SGDW over Adam | AdamW
_CIFAR: dict[str, Any] = {
    "dataset": "cifar10",  # the paper's data: 50k train / 10k test, no validation split
    "model": "shake_shake_26_2x64d",  # the network of Figures 1-4 (about 11.65 M parameters)
    "batch_size": 128,  # 391 iterations per epoch, as in the authors' code
    "schedule": "cosine",  # cosine multiplier 1 -> 0 per iteration, no restarts
    "label_noise": 0.0,  # clean CIFAR-10 labels
    "metric": "test_error",  # colour = final-epoch test error
    "seeds": [0],  # one run per cell
    "resources": {"gpu": 0.25, "cpu": 2},  # four 26 2x64d runs share one GPU; 2 cores feed each
    # The fast path: bf16 autocast (weights stay fp32) and torch.compile. The paper trained in fp32: `precision:
    # fp32` (and `compile: false` to skip the warm-up) reproduces that arithmetic.
    "precision": "bf16",
    "compile": True,
    "max_concurrent_trials": 16,  # e.g. 4 GPUs x 4 trials each
}
# alpha: SGD/SGDW 2^-10 .. 2^0; Adam/AdamW ten times smaller (0.1 * 2^-10 .. 0.1 * 2^0)
_FIG2_RATES = powers_of_two(-10, 0)

_FIG2: dict[str, Any] = {
    "name": "fig2",
    **_CIFAR,
    "variants": _FIG2_VARIANTS,
    "epochs": 100,  # Figure 2 runs are 100 epochs (not the 1800 of the Shake-Shake paper)
    "normalized_decay": False,  # the figure's axis is the raw per-step decay / L2 factor
    "grid": {
        "lr": lr_by_family(_FIG2_VARIANTS, _FIG2_RATES),
        # {0, 1/32, ..., 16} x 0.001, the same ticks in all four panels
        "weight_decay": fig2_weight_decays(),
    },
}

_FIG1: dict[str, Any] = {
    "name": "fig1",
    **_CIFAR,
    "variants": ["adam", "adamw"],  # Figure 1's two rows
    "epochs": 100,
    "facet": {"schedule": ["constant", "step", "cosine"]},  # its three columns
    "step_milestones": [30, 60, 80],  # the caption's drops
    "step_gamma": 0.1,  # not stated in the paper; the usual factor
    "grid": {"lr": lr_by_family(["adam", "adamw"], _FIG2_RATES), "weight_decay": fig2_weight_decays()},
}

_FIG3: dict[str, Any] = {
    "name": "fig3",
    **_CIFAR,
    "variants": ["adam", "adamw"],
    "epochs": 1800,  # Figure 3's long runs
    "normalized_decay": True,  # AdamW's seven values are lambda_norm; Adam's L2 factors stay raw
    "grid": {
        "lr": [0.001],  # alpha fixed at Adam's default
        "weight_decay": {
            "adam": powers_of_two(-7, 4, 0.001),  # 12 L2 factors, 2^-7 .. 2^4 x 0.001
            "adamw": powers_of_two(-3, 3, 0.05),  # 7 normalized decays around the paper's AdamW optimum 0.05
        },
    },
}

_FIG4: dict[str, Any] = {
    "name": "fig4",
    **_CIFAR,
    "variants": ["sgdw", "adamw"],  # SGDW(R) and AdamW(R)
    "epochs": 1500,  # four periods: restarts after epochs 100, 300, 700 and 1500 (paper B.2)
    "facet": {"schedule": ["cosine", "warm_restarts"]},
    "restart_period": 100,
    "restart_mult": 2,
    "normalized_decay": True,  # renormalized with each period's length
    "grid": {
        "lr": {"sgdw": [0.05, 0.1, 0.2], "adamw": [0.0005, 0.001, 0.002]},
        # The paper's normalized optima: 0.025 for SGDW, 0.05 for AdamW.
        "weight_decay": {"sgdw": [0.025], "adamw": [0.05]},
    },
}

_BUDGET: dict[str, Any] = {
    "name": "budget",
    **_CIFAR,
    "variants": ["sgdw", "adamw"],
    "epochs": 100,
    "facet": {"epochs": [100, 200, 400, 800, 1800]},  # the span of the paper's budget study
    "normalized_decay": False,  # raw on the grid: the budget view converts each optimum to lambda_norm
    "grid": {
        "lr": {"sgdw": [0.05, 0.1, 0.2], "adamw": [0.0005, 0.001, 0.002]},
        # lambda_norm 0.025 .. 0.05 is a raw 1.3e-4 .. 2.5e-4 at 100 epochs and 2.4 times less at 1800: octave steps
        # from 2^-16 (1.5e-5) to 2^-10 (9.8e-4) hold every budget's optimum with a neighbour on each side.
        "weight_decay": powers_of_two(-16, -10),
    },
}

# One GPU, one night. 26 2x32d has a quarter of 2x64d's multiply-adds; 50 epochs of cosine; a 6 x 6 grid two octaves
# wide per step on the decay axis, so SGD's tilted valley and SGDW's upright one both fit; four trials share the GPU.
# 180 M training images: 3.6 h even at the 14,000 images/s targeted for the larger 2x64d (`--plan` computes the
# hours from a measured throughput).
_CIFAR_OVERNIGHT: dict[str, Any] = {
    "name": "cifar-overnight",
    **_CIFAR,
    "model": "shake_shake_26_2x32d",
    "variants": ["sgd", "sgdw"],
    "epochs": 50,
    "max_concurrent_trials": 4,  # one GPU, four trials on it
    "grid": {
        "lr": lr_by_family(["sgd", "sgdw"], powers_of_two(-6, -1)),
        "weight_decay": powers_of_two(-5, 5, 0.001, step=2),  # 1/32 .. 32 x 0.001
    },
}

PAPER_PRESETS: tuple[dict[str, Any], ...] = (_FIG2, _FIG1, _FIG3, _FIG4, _BUDGET, _CIFAR_OVERNIGHT)
