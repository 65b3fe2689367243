"""Batches from a device-resident dataset: shuffled, augmented on the device, reproducible from one generator.

All randomness comes from a caller-owned ``torch.Generator``, so saving its state at an epoch boundary is enough
to resume a run bit-for-bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from .dataset import Augmentation, DeviceDataset

__all__ = ["augment_batch", "normalized", "steps_per_epoch", "test_batches", "train_batches"]


def augment_batch(x: Tensor, aug: Augmentation, generator: torch.Generator) -> Tensor:
    """Randomly crop (after zero padding ``aug.pad``) then randomly flip each image of ``x`` (N, C, H, W).

    Vectorized on ``x.device``. Random draws, in this order, all from ``generator``: per-image
    row offsets, column offsets (each uniform in [0, 2*pad]; only when pad > 0), then the flip
    mask (only when flip). Returns ``x`` itself when ``aug`` does nothing.
    """
    if x.dim() != 4:
        raise ValueError(f"augment_batch expects an (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    if not aug.enabled:
        return x
    _check_generator(generator, x.device)
    n, c, h, w = x.shape
    dev = x.device
    if aug.pad > 0:
        p = aug.pad
        padded = F.pad(x, (p, p, p, p))
        oy = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=dev)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=generator, device=dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (N, 1, H, 1)
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (N, 1, 1, W)
        batch = torch.arange(n, device=dev)[:, None, None, None]
        chan = torch.arange(c, device=dev)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    if aug.flip:
        flip = torch.rand(n, generator=generator, device=dev) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
    return x


def _check_generator(generator: torch.Generator, device: torch.device) -> None:
    if generator.device.type != device.type:
        raise ValueError(
            f"generator is on {generator.device} but the data is on {device}; create it with "
            f"torch.Generator(device={str(device)!r}) so all draws happen on the data's device"
        )


def _check_batch_size(batch_size: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")


def steps_per_epoch(train_size: int, batch_size: int) -> int:
    """Number of batches in one epoch, counting the short last batch."""
    _check_batch_size(batch_size)
    if train_size < 0:
        raise ValueError(f"train_size must be non-negative, got {train_size!r}")
    return math.ceil(train_size / batch_size)


def normalized(ds: DeviceDataset, x: Tensor) -> Tensor:
    """A batch as float32, normalized per channel when the dataset is kept as uint8 (else as it is)."""
    if ds.normalization is None:
        return x
    mean, std = ds.normalization
    shape = (1, -1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(shape)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(shape)
    return (x.float() - m) / s


def train_batches(ds: DeviceDataset, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    """One epoch of shuffled, augmented training batches; the last batch may be short.

    Draws the permutation from ``generator`` when iteration starts, then each batch's
    augmentation, so a saved generator state at an epoch boundary reproduces the epoch.
    """
    # Checked here, not in the generator body, so bad input fails at the call.
    _check_batch_size(batch_size)
    _check_generator(generator, ds.device)
    return _train_iter(ds, batch_size, generator)


def _train_iter(ds: DeviceDataset, batch_size: int, generator: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
    perm = torch.randperm(ds.train_size, generator=generator, device=ds.train_x.device)
    for start in range(0, ds.train_size, batch_size):
        idx = perm[start : start + batch_size]
        # Normalized before the augmentation: the crop pads with zeros after normalization (docs/science.md).
        yield augment_batch(normalized(ds, ds.train_x[idx]), ds.augmentation, generator), ds.train_y[idx]


def test_batches(ds: DeviceDataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Test batches in dataset order, without augmentation; the last batch may be short."""
    _check_batch_size(batch_size)
    return (
        (normalized(ds, ds.test_x[start : start + batch_size]), ds.test_y[start : start + batch_size])
        for start in range(0, ds.test_size, batch_size)
    )


# Its name starts with "test_": keep pytest from collecting it when a test module imports it.
test_batches.__test__ = False  # type: ignore[attr-defined]
