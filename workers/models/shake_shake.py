"""Shake-Shake residual networks (Gastaldi 2017) with Shake-Shake-Image regularization.

Layout and initialization follow the authors' Lua Torch code (xgastaldi/shake-shake), as restated in
docs/science.md, "The network". Names: ``shake_shake_{depth}_{branches}x{width}d``.
"""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn as nn
import torch.nn.functional as F

from hpscape.landscapes.vocabulary import MODEL_BRANCHES, MODEL_DEPTHS, MODEL_HEADS, MODEL_WIDTHS, ModelArch

from .registry import _register_name_pattern, register_model

__all__ = ["HEADS", "NormalizedLogits", "ShakeShake", "ShakeShakeBlock", "shake_shake_image", "count_parameters"]

# The names that exist are the vocabulary's (hpscape.landscapes.vocabulary), so a spec accepts exactly what is built.
# Heads: "linear" is the paper's. "bn" batch-normalizes the logits (no affine, no bias), so the whole network is
# scale-invariant: with label noise and test loss as the metric, the softmax temperature set by the decayed last
# layer would otherwise dominate the landscape (SGD+L2 fixes it through lambda', SGDW through lambda/alpha), hiding
# the effect of decay on the scale-invariant layers that Figure 2 is about (docs/science.md, "the effective step").
HEADS: dict[str, str] = dict(MODEL_HEADS)
_STEM_CHANNELS = 16


def _shake_shake_image_mix(x1: torch.Tensor, x2: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Forward value ``a*x1 + (1-a)*x2``; gradients ``b`` to ``x1`` and ``1-b`` to ``x2``.

    The detached correction term carries the forward/backward difference, so no custom autograd
    Function is needed and torch.compile can trace it.
    """
    return b * x1 + (1 - b) * x2 + ((a - b) * (x1 - x2)).detach()


def shake_shake_image(x1: torch.Tensor, x2: torch.Tensor, training: bool) -> torch.Tensor:
    """Shake-Shake-Image mixing of two branch outputs.

    Training: independent per-image ``a, b ~ U(0, 1)`` drawn from the global torch RNG on every call
    (so saving/restoring the torch RNG state reproduces a run). Evaluation: ``0.5 * (x1 + x2)``.
    """
    if not training:
        return 0.5 * (x1 + x2)
    shape = (x1.shape[0],) + (1,) * (x1.dim() - 1)
    a = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    b = torch.rand(shape, device=x1.device, dtype=x1.dtype)
    return _shake_shake_image_mix(x1, x2, a, b)


def _conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


def _branch(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        # Not in-place: the block input is shared by the other branch and the skip.
        nn.ReLU(inplace=False),
        _conv3x3(in_channels, out_channels, stride),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        _conv3x3(out_channels, out_channels),
        nn.BatchNorm2d(out_channels),
    )


class _ShortcutDown(nn.Module):
    """Skip for a change of channels or resolution: two shifted 1x1-conv paths, concatenated, then BN."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels % 2:
            raise ValueError(f"shortcut needs an even number of output channels, got {out_channels}")
        self.stride = stride
        self.conv1 = nn.Conv2d(in_channels, out_channels // 2, kernel_size=1, bias=False)
        self.conv2 = nn.Conv2d(in_channels, out_channels // 2, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        path1 = F.avg_pool2d(x, kernel_size=1, stride=self.stride)
        # Gastaldi's SpatialZeroPadding(1, -1, 1, -1): shift one pixel right and down (pad 1 zero row on top and
        # 1 zero column on the left, drop the last row and column), so shifted[i, j] = x[i-1, j-1] and output
        # (i, j) of the stride-2 pool reads x[2i-1, 2j-1], with zeros in the first row and column.
        shifted = F.pad(x[:, :, :-1, :-1], (1, 0, 1, 0))
        path2 = F.avg_pool2d(shifted, kernel_size=1, stride=self.stride)
        return self.bn(torch.cat([self.conv1(path1), self.conv2(path2)], dim=1))


class ShakeShakeBlock(nn.Module):
    """Residual block: ``skip(x) + shake(branch1(x), branch2(x))``, no ReLU after the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.branch1 = _branch(in_channels, out_channels, stride)
        self.branch2 = _branch(in_channels, out_channels, stride)
        if in_channels != out_channels or stride != 1:
            self.shortcut: nn.Module = _ShortcutDown(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + shake_shake_image(self.branch1(x), self.branch2(x), self.training)


class NormalizedLogits(nn.Module):
    """Linear (no bias) then BatchNorm of the logits without an affine: the output ignores the weight's scale.

    A one-image training batch (a short last batch) is normalized with the running statistics, since a batch
    statistic over one value is undefined.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes, bias=False)
        self.norm = nn.BatchNorm1d(num_classes, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.linear(x)
        if self.training and logits.shape[0] == 1:
            return F.batch_norm(logits, self.norm.running_mean, self.norm.running_var, training=False,
                                eps=self.norm.eps)
        return self.norm(logits)


class ShakeShake(nn.Module):
    """Shake-Shake network for small images: stem, three stages (width, 2w, 4w), ReLU + global pool + linear."""

    def __init__(
        self,
        depth: int,
        width: int,
        num_classes: int = 10,
        in_channels: int = 3,
        branches: int = 2,
        head: str = "linear",
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...), got {depth}")
        if branches != 2:
            raise ValueError(f"Shake-Shake-Image mixes exactly 2 branches, got branches={branches}")
        if width < 1 or width % 2:
            raise ValueError(f"width must be a positive even number of channels, got {width}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {', '.join(HEADS)}, got {head!r}")
        blocks_per_stage = (depth - 2) // 6
        self.depth, self.width, self.branches, self.head = depth, width, branches, head

        self.stem = nn.Sequential(_conv3x3(in_channels, _STEM_CHANNELS), nn.BatchNorm2d(_STEM_CHANNELS))
        stages: list[nn.Module] = []
        channels = _STEM_CHANNELS
        for stage_index, stage_width in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for block_index in range(blocks_per_stage):
                stride = 2 if stage_index > 0 and block_index == 0 else 1
                blocks.append(ShakeShakeBlock(channels, stage_width, stride))
                channels = stage_width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        if head == "linear":  # the paper's head
            self.fc: nn.Module = nn.Linear(channels, num_classes)
        else:
            # Scale-invariant head: the logits are batch-normalized without an affine, so no decayed
            # parameter sets their scale (the softmax temperature). See HEADS.
            self.fc = NormalizedLogits(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # As the Lua code: He-normal with fan-out (k*k*out_channels) for every conv, including 1x1 skips.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                k_h, k_w = module.kernel_size
                std = math.sqrt(2.0 / (k_h * k_w * module.out_channels))
                nn.init.normal_(module.weight, mean=0.0, std=std)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = F.adaptive_avg_pool2d(F.relu(x), 1)
        return self.fc(torch.flatten(x, 1))


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters in ``model`` (shared parameters counted once)."""
    return sum(p.numel() for p in model.parameters())


def _build(
    depth: int, branches: int, width: int, head: str, num_classes: int, in_channels: int
) -> ShakeShake:
    return ShakeShake(depth, width, num_classes=num_classes, in_channels=in_channels, branches=branches, head=head)


def _register_all() -> None:
    _register_name_pattern(
        "shake_shake_{depth}_{branches}x{width}d with depth in "
        + "{" + ", ".join(map(str, MODEL_DEPTHS)) + "}, branches in "
        + "{" + ", ".join(map(str, MODEL_BRANCHES)) + "}, width in "
        + "{" + ", ".join(map(str, MODEL_WIDTHS)) + "}, optionally followed by _bnhead (e.g. shake_shake_26_2x64d, "
        "shake_shake_8_2x16d_bnhead)"
    )
    for depth in MODEL_DEPTHS:
        for branches in MODEL_BRANCHES:
            for width in MODEL_WIDTHS:
                for head in MODEL_HEADS:
                    name = ModelArch(depth, width, branches, head).name
                    register_model(name)(partial(_build, depth, branches, width, head))


_register_all()
