"""The words a sweep spec is written in: datasets, schedules, metrics, names, and the model names that exist.

Each list here is the only one of its kind: the spec, the workers (data loaders, the model registry), the service
and the CLI read them. The model registry in `hpscape.workers.models` registers exactly `model_names()`, so the
spec accepts a model name if and only if a worker can build it.
"""

from __future__ import annotations

import re
from typing import NamedTuple

__all__ = [
    "DATASETS",
    "DATASET_SIZES",
    "HISTORY_FIELDS",
    "LANDSCAPE_METRICS",
    "METRICS",
    "MODEL_BRANCHES",
    "MODEL_DEPTHS",
    "MODEL_HEADS",
    "MODEL_NAME_PATTERN",
    "MODEL_WIDTHS",
    "NAME_PATTERN",
    "SCHEDULES",
    "ModelArch",
    "model_names",
    "validate_model_name",
]

# Name -> (training images, test images), what a sweep's plan counts; each loader returns exactly these (tested).
DATASET_SIZES: dict[str, tuple[int, int]] = {
    "cifar10": (50_000, 10_000),
    "digits": (1_437, 360),  # scikit-learn's 1,797 images, split once and for all
    "imagenet32": (1_281_167, 50_000),  # the validation set serves as the test set, as in the paper
    "synthetic": (512, 256),
}
DATASETS: tuple[str, ...] = tuple(DATASET_SIZES)
SCHEDULES: tuple[str, ...] = ("constant", "cosine", "step", "warm_restarts")
# What a sweep may minimize (the Optuna objective) ...
METRICS: tuple[str, ...] = ("test_error", "test_loss")
# ... and what a landscape may show, at any recorded epoch.
LANDSCAPE_METRICS: tuple[str, ...] = ("test_error", "test_loss", "train_loss", "train_error")
# One dict per finished epoch in each trial's `history` user attr holds at least these keys.
HISTORY_FIELDS: tuple[str, ...] = (
    "epoch", "test_error", "test_loss", "train_loss", "train_error", "lr_t", "epoch_seconds", "images_per_s",
    "diverged",
    # What the scale-invariant weights did (hpscape.workers.telemetry); None where not measured.
    "weight_norm", "weight_norm_stages", "weight_norm_last", "angular_update", "angular_update_theory", "grad_norm",
    "decay_share",
)

# Sweep names: no "/" (study names are "<sweep>/<variant>[/<axis>=<value>]"). Matched whole (re.fullmatch), so a
# trailing newline is refused too.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# Shake-Shake models (docs/science.md, "The network"): depth 6n+2, two branches, base width, and the classifier head.
MODEL_DEPTHS: tuple[int, ...] = (8, 14, 20, 26, 32)
MODEL_BRANCHES: tuple[int, ...] = (2,)
MODEL_WIDTHS: tuple[int, ...] = (8, 16, 32, 64, 96)  # 8 and 16: the CPU-sized digits models
# Head name -> model-name suffix. "linear" is the paper's; "bn" batch-normalizes the logits (no affine, no bias),
# so every decayed weight is scale-invariant (see hpscape.workers.models.shake_shake).
MODEL_HEADS: dict[str, str] = {"linear": "", "bn": "_bnhead"}
MODEL_NAME_PATTERN = re.compile(r"shake_shake_(\d+)_(\d+)x(\d+)d(_bnhead)?")


class ModelArch(NamedTuple):
    """A parsed model name: depth (6n+2), branches, base width of the first stage, and head."""

    depth: int
    width: int
    branches: int = 2
    head: str = "linear"

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6

    @property
    def name(self) -> str:
        return f"shake_shake_{self.depth}_{self.branches}x{self.width}d{MODEL_HEADS[self.head]}"


def model_names() -> list[str]:
    """Every model name the worker registry builds, sorted."""
    return sorted(
        ModelArch(depth, width, branches, head).name
        for depth in MODEL_DEPTHS
        for branches in MODEL_BRANCHES
        for width in MODEL_WIDTHS
        for head in MODEL_HEADS
    )


def validate_model_name(name: object) -> ModelArch:
    """Parse a model name the registry builds; ValueError saying exactly what is accepted."""
    hint = (
        f"expected shake_shake_<depth>_2x<width>d with depth one of {', '.join(map(str, MODEL_DEPTHS))} and "
        f"width one of {', '.join(map(str, MODEL_WIDTHS))}, optionally followed by _bnhead "
        "(e.g. shake_shake_26_2x64d, shake_shake_8_2x16d_bnhead); `hpscape models` lists them all"
    )
    match = MODEL_NAME_PATTERN.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise ValueError(f"unknown model {name!r}: {hint}")
    depth, branches, width = int(match.group(1)), int(match.group(2)), int(match.group(3))
    head = "bn" if match.group(4) else "linear"
    if depth not in MODEL_DEPTHS or branches not in MODEL_BRANCHES or width not in MODEL_WIDTHS:
        raise ValueError(f"unknown model {name!r}: {hint}")
    return ModelArch(depth, width, branches, head)
