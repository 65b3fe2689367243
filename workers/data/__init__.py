"""Device-resident datasets and vectorized training augmentation.

A whole dataset lives as tensors on the training device, so a training step never waits on a host-side loader:
batches are index-selects, and augmentation (random flip, pad-and-crop) is a handful of batched tensor ops.

- `dataset`: `DeviceDataset`, the errors loaders raise;  `cifar`: CIFAR-10 from the official archive;
- `imagenet32`: ImageNet32x32 from the official downsampled batch files, kept as uint8 on the device;
- `small`: digits (bundled with scikit-learn) and a synthetic set for tests;  `batches`: epochs of batches.

The dataset names are the vocabulary's (`hpscape.landscapes.vocabulary.DATASETS`); `load_dataset` has a loader
for each of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from hpscape.landscapes.vocabulary import DATASETS

from .batches import augment_batch, normalized, steps_per_epoch, test_batches, train_batches
from .cifar import CIFAR10_ARCHIVE, CIFAR10_MD5, CIFAR10_MEAN, CIFAR10_STD, CIFAR10_URL, load_cifar10
from .dataset import Augmentation, DatasetChecksumError, DatasetUnavailableError, DeviceDataset, noisy_labels
from .imagenet32 import IMAGENET32_COUNTS, find_imagenet32, load_imagenet32
from .small import load_digits, load_synthetic

__all__ = [
    "CIFAR10_ARCHIVE",
    "CIFAR10_MD5",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10_URL",
    "DATASETS",
    "Augmentation",
    "DatasetChecksumError",
    "DatasetUnavailableError",
    "DeviceDataset",
    "IMAGENET32_COUNTS",
    "augment_batch",
    "check_available",
    "load_dataset",
    "normalized",
    "steps_per_epoch",
    "test_batches",
    "train_batches",
]

Loader = Callable[[torch.device, "str | Path | None", bool, str], DeviceDataset]
# One loader per vocabulary name (a test checks they match).
LOADERS: dict[str, Loader] = {
    "cifar10": lambda device, data_dir, download, md5: load_cifar10(device, data_dir, download=download,
                                                                    expected_md5=md5),
    "digits": lambda device, data_dir, download, md5: load_digits(device),
    "imagenet32": lambda device, data_dir, download, md5: load_imagenet32(device, data_dir),
    "synthetic": lambda device, data_dir, download, md5: load_synthetic(device),
}


def check_available(name: str, data_dir: str | Path | None) -> None:
    """Raise DatasetUnavailableError, with the fix, when ``name``'s files are not under ``data_dir``.

    Cheap (no decoding): the CLI calls it before a sweep starts, so a misplaced file is one line, not a failed
    trial per cell. Bundled datasets are always available.
    """
    if name == "cifar10":
        archive = Path(data_dir).expanduser() / CIFAR10_ARCHIVE if data_dir is not None else None
        if archive is None or not archive.is_file():
            raise DatasetUnavailableError(
                f"the CIFAR-10 archive is not at {archive or f'DATA_DIR/{CIFAR10_ARCHIVE}'}: download {CIFAR10_URL} "
                f"(md5 {CIFAR10_MD5}) and put it there, or pass --data-dir (HPSCAPE_DATA_DIR) where it is; on a "
                "cluster every node needs it"
            )
    elif name == "imagenet32":
        if data_dir is None:
            raise DatasetUnavailableError("imagenet32 needs a data directory: pass --data-dir (HPSCAPE_DATA_DIR)")
        find_imagenet32(Path(data_dir).expanduser())


def load_dataset(
    name: str,
    *,
    device: str | torch.device = "cpu",
    data_dir: str | Path | None = None,
    label_noise: float = 0.0,
    seed: int = 0,
    download: bool = True,
    cifar_md5: str = CIFAR10_MD5,
    train_limit: int | None = None,
) -> DeviceDataset:
    """Load dataset ``name`` onto ``device``.

    ``label_noise`` replaces that fraction of the training labels by uniformly random classes (deterministic per
    ``seed``; test labels are never touched). ``train_limit`` keeps only the first N training examples (all of
    them when N exceeds the training-set size); noise is drawn on the full training set first, so a limited set
    is a prefix of the full one. ``data_dir``, ``download`` and ``cifar_md5`` only matter for ``cifar10``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}")
    if not isinstance(label_noise, (int, float)) or not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must be a fraction in [0, 1), got {label_noise!r}")
    if train_limit is not None and (isinstance(train_limit, bool) or not isinstance(train_limit, int)
                                    or train_limit < 1):
        raise ValueError(f"train_limit must be a positive int or None, got {train_limit!r}")
    ds = LOADERS[name](torch.device(device), data_dir, download, cifar_md5)
    if label_noise > 0.0:
        ds.train_y = noisy_labels(ds.train_y, ds.num_classes, label_noise, seed)
    if train_limit is not None and train_limit < ds.train_size:
        ds.train_x = ds.train_x[:train_limit].contiguous()
        ds.train_y = ds.train_y[:train_limit].contiguous()
    return ds
