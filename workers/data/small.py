"""The small datasets that need no download: scikit-learn's bundled digits, and a synthetic one for tests."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .dataset import Augmentation, DeviceDataset, as_labels

__all__ = ["DIGITS_TRAIN_SIZE", "load_digits", "load_synthetic"]

# The digits split is fixed forever (independent of any trial seed) so every trial in a landscape sees the same
# train and test images.
_DIGITS_SPLIT_SEED = 0
DIGITS_TRAIN_SIZE = 1437

_SYNTH_SEED = 12345
_SYNTH_TRAIN, _SYNTH_TEST = 512, 256
_SYNTH_CLASSES, _SYNTH_CHANNELS, _SYNTH_SIZE = 10, 3, 8
_SYNTH_NOISE_STD = 1.0


def load_digits(device: torch.device) -> DeviceDataset:
    from sklearn import datasets  # bundled with scikit-learn, no download

    bunch = datasets.load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(labels))
    tr, te = order[:DIGITS_TRAIN_SIZE], order[DIGITS_TRAIN_SIZE:]
    mean = images[tr].mean(axis=(0, 2, 3), keepdims=True)
    std = images[tr].std(axis=(0, 2, 3), keepdims=True)

    def norm(x: np.ndarray) -> Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32)).to(device).contiguous()

    return DeviceDataset(
        name="digits",
        train_x=norm(images[tr]),
        train_y=as_labels(labels[tr], device),
        test_x=norm(images[te]),
        test_y=as_labels(labels[te], device),
        num_classes=10,
        in_channels=1,
        image_size=8,
        # Flipping would change what a digit means; 8x8 images have no room to crop.
        augmentation=Augmentation(flip=False, pad=0),
    )




def load_synthetic(device: torch.device) -> DeviceDataset:
    """Class templates plus gaussian noise; fixed forever (independent of any trial seed).

    Templates are smooth (4x4 upsampled to 8x8) so small conv nets pick them up in a few epochs
    even with one-pixel random crops.
    """
    rng = np.random.default_rng(_SYNTH_SEED)
    c, s, k = _SYNTH_CHANNELS, _SYNTH_SIZE, _SYNTH_CLASSES
    coarse = rng.standard_normal((k, c, s // 2, s // 2))
    templates = coarse.repeat(2, axis=2).repeat(2, axis=3)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % k)
        x = templates[y] + _SYNTH_NOISE_STD * rng.standard_normal((n, c, s, s))
        return x, y

    train_x, train_y = sample(_SYNTH_TRAIN)
    test_x, test_y = sample(_SYNTH_TEST)
    mean = train_x.mean(axis=(0, 2, 3), keepdims=True)
    std = train_x.std(axis=(0, 2, 3), keepdims=True)

    def norm(x: np.ndarray) -> Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32)).to(device).contiguous()

    return DeviceDataset(
        name="synthetic",
        train_x=norm(train_x),
        train_y=as_labels(train_y, device),
        test_x=norm(test_x),
        test_y=as_labels(test_y, device),
        num_classes=k,
        in_channels=c,
        image_size=s,
        # A one-pixel crop keeps the augmentation path exercised in fast end-to-end tests.
        augmentation=Augmentation(flip=False, pad=1),
    )
