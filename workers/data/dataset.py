"""A dataset held on the training device: what every loader returns, and the errors loaders raise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ["Augmentation", "DatasetChecksumError", "DatasetUnavailableError", "DeviceDataset", "as_labels",
           "noisy_labels", "normalize_uint8"]


class DatasetUnavailableError(RuntimeError):
    """The dataset files are missing, cannot be downloaded, or cannot be used."""


class DatasetChecksumError(DatasetUnavailableError):
    """A dataset archive exists but its md5 does not match the expected one."""


@dataclass(frozen=True)
class Augmentation:
    """Training-time augmentation: horizontal flip with p=0.5 and random crop after zero-padding ``pad``."""

    flip: bool
    pad: int

    def __post_init__(self) -> None:
        if isinstance(self.pad, bool) or not isinstance(self.pad, int) or self.pad < 0:
            raise ValueError(f"Augmentation.pad must be a non-negative int, got {self.pad!r}")

    @property
    def enabled(self) -> bool:
        """True when augment_batch changes anything."""
        return self.flip or self.pad > 0


@dataclass
class DeviceDataset:
    """A train/test dataset held as tensors on one device.

    ``*_x`` are NCHW: float32 and already normalized, or uint8 with the per-channel ``normalization`` (mean, std on
    the 0-255 scale) that `batches` applies to each batch (ImageNet32x32: 3.9 GB as uint8, four times that as
    float32); ``*_y`` are int64 class indices.
    """

    name: str
    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    num_classes: int
    in_channels: int
    image_size: int
    augmentation: Augmentation
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    @property
    def train_size(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.test_x.shape[0])

    @property
    def device(self) -> torch.device:
        return self.train_x.device


def noisy_labels(y: Tensor, num_classes: int, fraction: float, seed: int) -> Tensor:
    """Replace round(fraction * n) labels, chosen at random, by uniformly random classes.

    A replacement can equal the original label, so about fraction * (1 - 1/num_classes) of
    the labels actually change. Drawn with numpy so the result is the same on every device.
    """
    rng = np.random.default_rng(seed)
    n = int(y.shape[0])
    chosen = rng.permutation(n)[: round(fraction * n)]
    new = rng.integers(0, num_classes, size=chosen.shape[0])
    out = y.cpu().numpy().copy()
    out[chosen] = new
    return torch.from_numpy(out).to(device=y.device, dtype=torch.int64)


def normalize_uint8(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> Tensor:
    """(x - mean) / std per channel, computed on ``device`` (moving uint8 is 4x cheaper than float32)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return ((t.float() - m) / s).contiguous()


def as_labels(y: np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(y), dtype=torch.int64).to(device)
