"""ImageNet32x32 (Chrabaszcz, Loshchilov & Hutter, 2017) from the official downsampled-ImageNet batch files.

The official release is two zips, ``Imagenet32_train.zip`` (ten pickled batches ``train_data_batch_1`` ..
``train_data_batch_10``) and ``Imagenet32_val.zip`` (one pickled batch ``val_data``). Each batch is a dict with
``data`` (N x 3072 uint8, each row 1024 R then 1024 G then 1024 B values, row-major 32x32 planes) and ``labels``
(1-based class numbers 1..1000). Both the zips and their extracted folders are accepted, under ``data_dir`` or
``data_dir/imagenet32``.

The images stay uint8 on the device (1,281,167 x 3 x 32 x 32 bytes = 3.9 GB; float32 would be 15.7 GB) and are
normalized per batch by `batches.normalized`, with the per-channel mean and std of the training set it loaded
(computed on the device, so the numbers always belong to the files at hand).
"""

from __future__ import annotations

import io
import logging
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .dataset import Augmentation, DatasetUnavailableError, DeviceDataset, as_labels

__all__ = ["IMAGENET32_COUNTS", "IMAGENET32_URL", "channel_stats", "find_imagenet32",
           "load_imagenet32"]

log = logging.getLogger(__name__)

IMAGENET32_URL = "https://image-net.org/download-images.php (Downsampled ImageNet 32x32)"
# (training images, validation images) of the official release; a set with other counts is not it.
IMAGENET32_COUNTS = (1_281_167, 50_000)
_NUM_CLASSES = 1000
_TRAIN_ZIP, _VAL_ZIP = "Imagenet32_train.zip", "Imagenet32_val.zip"
_TRAIN_MEMBERS = tuple(f"train_data_batch_{i}" for i in range(1, 11))
_VAL_MEMBER = "val_data"
_PIXELS = 3 * 32 * 32


def load_imagenet32(device: torch.device, data_dir: str | Path | None, *,
                    expected_counts: tuple[int, int] | None = IMAGENET32_COUNTS) -> DeviceDataset:
    """ImageNet32x32 as uint8 tensors on ``device``; ``expected_counts=None`` accepts any size (tests)."""
    if data_dir is None:
        raise DatasetUnavailableError(
            "imagenet32 needs a data directory: pass data_dir=... (or set HPSCAPE_DATA_DIR for the service); "
            f"{_TRAIN_ZIP} and {_VAL_ZIP} (or their extracted folders) are looked for there"
        )
    root = find_imagenet32(Path(data_dir).expanduser())
    train_x, train_y = _read_split(root, _TRAIN_ZIP, _TRAIN_MEMBERS)
    test_x, test_y = _read_split(root, _VAL_ZIP, (_VAL_MEMBER,))
    counts = (len(train_y), len(test_y))
    if expected_counts is not None and counts != tuple(expected_counts):
        raise DatasetUnavailableError(
            f"ImageNet32x32 under {root} has {counts[0]:,} training and {counts[1]:,} validation images; the "
            f"official release has {expected_counts[0]:,} and {expected_counts[1]:,}. Some batch files are "
            f"truncated or from another release; download them again from {IMAGENET32_URL}"
        )
    for split, y in (("training", train_y), ("validation", test_y)):
        if y.size and (y.min() < 0 or y.max() >= _NUM_CLASSES):
            raise DatasetUnavailableError(
                f"ImageNet32x32 {split} labels under {root} run {y.min() + 1}..{y.max() + 1}; the official files "
                f"number the classes 1..{_NUM_CLASSES}. Download them again from {IMAGENET32_URL}"
            )
    train_x_device = torch.from_numpy(train_x).to(device)
    return DeviceDataset(
        name="imagenet32",
        train_x=train_x_device,
        train_y=as_labels(train_y, device),
        test_x=torch.from_numpy(test_x).to(device),
        test_y=as_labels(test_y, device),
        num_classes=_NUM_CLASSES,
        in_channels=3,
        image_size=32,
        augmentation=Augmentation(flip=True, pad=4),
        normalization=channel_stats(train_x_device),
    )


def channel_stats(x: torch.Tensor, chunk: int = 8_192) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (0-255 scale) of uint8 NCHW images, in float64 chunks (never a float copy)."""
    channels = x.shape[1]
    total = torch.zeros(channels, dtype=torch.float64, device=x.device)
    squares = torch.zeros(channels, dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        part = x[start : start + chunk].to(torch.float64)
        total += part.sum(dim=(0, 2, 3))
        squares += part.square().sum(dim=(0, 2, 3))
    n = max(x.shape[0] * x.shape[2] * x.shape[3], 1)
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(1e-12).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def _placement_help(where: Path) -> str:
    return (f"download {_TRAIN_ZIP} and {_VAL_ZIP} from {IMAGENET32_URL} and place them (zipped or extracted) "
            f"in {where}")


def find_imagenet32(data_dir: Path) -> Path:
    """The folder holding both splits (``data_dir`` or ``data_dir/imagenet32``), or the placement error."""
    for root in (data_dir, data_dir / "imagenet32"):
        if _split_source(root, _TRAIN_ZIP, _TRAIN_MEMBERS[0]) and _split_source(root, _VAL_ZIP, _VAL_MEMBER):
            return root
    raise DatasetUnavailableError(f"ImageNet32x32 is not under {data_dir}: {_placement_help(data_dir)}, or pass "
                                  "--data-dir (HPSCAPE_DATA_DIR) where they are; on a cluster every node needs them")


def _split_source(root: Path, zip_name: str, first_member: str) -> Path | None:
    """The zip, or the folder holding the extracted batch files, of one split (None when neither is there)."""
    if (root / zip_name).is_file():
        return root / zip_name
    for folder in (root, root / zip_name.removesuffix(".zip")):
        if (folder / first_member).is_file():
            return folder
    return None


def _read_split(root: Path, zip_name: str, members: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """All of a split's batches, decoded into one preallocated uint8 array (no second copy of 3.9 GB)."""
    source = _split_source(root, zip_name, members[0])
    assert source is not None  # find_imagenet32 checked
    batches = list(_batches(source, members))
    n = sum(len(y) for _, y in batches)
    x = np.empty((n, 3, 32, 32), dtype=np.uint8)
    y = np.empty(n, dtype=np.int64)
    at = 0
    for data, labels in batches:
        x[at : at + len(labels)] = data.reshape(-1, 3, 32, 32)
        y[at : at + len(labels)] = labels - 1  # the files number classes from 1
        at += len(labels)
    return x, y


def _batches(source: Path, members: tuple[str, ...]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    if source.suffix == ".zip":
        try:
            with zipfile.ZipFile(source) as zf:
                by_name = {Path(info.filename).name: info for info in zf.infolist() if not info.is_dir()}
                missing = [m for m in members if m not in by_name]
                if missing:
                    raise DatasetUnavailableError(
                        f"{source} lacks {', '.join(missing)}; it is not the official ImageNet32x32 zip: "
                        f"{_placement_help(source.parent)}"
                    )
                for m in members:
                    with zf.open(by_name[m]) as f:
                        yield _decode(io.BytesIO(f.read()), f"{source}:{m}")
        except (zipfile.BadZipFile, OSError) as exc:
            raise DatasetUnavailableError(
                f"cannot read {source} as a zip ({type(exc).__name__}: {exc}); {_placement_help(source.parent)}"
            ) from exc
        return
    missing = [m for m in members if not (source / m).is_file()]
    if missing:
        raise DatasetUnavailableError(f"{source} lacks {', '.join(missing)}; {_placement_help(source)}")
    for m in members:
        with (source / m).open("rb") as f:
            yield _decode(f, str(source / m))


def _decode(f: io.BufferedIOBase | io.BytesIO, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        # The release's pickles hold numpy arrays; latin1 reads both its Python 2 and Python 3 pickles.
        batch = pickle.load(f, encoding="latin1")
        data = np.asarray(_entry(batch, "data"), dtype=np.uint8)
        labels = np.asarray(_entry(batch, "labels"), dtype=np.int64).reshape(-1)
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, AttributeError) as exc:
        raise DatasetUnavailableError(
            f"cannot read {where} as an ImageNet32x32 batch ({type(exc).__name__}: {exc}); download it again "
            f"from {IMAGENET32_URL}"
        ) from exc
    if data.ndim != 2 or data.shape[1] != _PIXELS or data.shape[0] != labels.shape[0]:
        raise DatasetUnavailableError(
            f"{where} holds data of shape {data.shape} and {labels.shape[0]} labels; an ImageNet32x32 batch has "
            f"N x {_PIXELS} bytes and N labels (a 64x64 or 16x16 release?). Use the 32x32 files from "
            f"{IMAGENET32_URL}"
        )
    return data, labels


def _entry(batch: object, key: str) -> object:
    if not isinstance(batch, dict):
        raise TypeError(f"expected a dict, got {type(batch).__name__}")
    return batch[key] if key in batch else batch[key.encode()]
