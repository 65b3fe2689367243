"""Device-resident datasets and vectorized training augmentation.

A whole dataset lives as tensors on the training device, so a training step never waits on a
host-side loader: batches are index-selects, and augmentation (random flip, pad-and-crop) is a
handful of batched tensor ops. All randomness comes from a caller-owned ``torch.Generator``, so
saving its state is enough to resume a run bit-for-bit.

Datasets (see PROTOCOL.md sections 3 and 5):

- ``cifar10``: the official python archive, verified by md5, decoded straight from the tarball.
- ``digits``: scikit-learn's bundled 8x8 digits with a fixed train/test split and optional
  label noise on the training labels.
- ``synthetic``: a tiny, deterministic, learnable dataset for fast tests.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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
    "augment_batch",
    "load_dataset",
    "steps_per_epoch",
    "test_batches",
    "train_batches",
]

log = logging.getLogger(__name__)

DATASETS = ("cifar10", "digits", "synthetic")

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
# Per-channel statistics on the 0-255 scale, as in the authors' Lua code (PROTOCOL.md section 3).
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)

_CIFAR_MEMBER_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_MEMBER = "test_batch"
_DOWNLOAD_TIMEOUT_S = 60.0

# The digits split is fixed forever (independent of any trial seed) so every trial in a
# landscape sees the same train and test images.
_DIGITS_SPLIT_SEED = 0
_DIGITS_TRAIN_SIZE = 1437

_SYNTH_SEED = 12345
_SYNTH_TRAIN, _SYNTH_TEST = 512, 256
_SYNTH_CLASSES, _SYNTH_CHANNELS, _SYNTH_SIZE = 10, 3, 8
_SYNTH_NOISE_STD = 1.0


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

    ``*_x`` are float32 NCHW, already normalized; ``*_y`` are int64 class indices.
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

    @property
    def train_size(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def test_size(self) -> int:
        return int(self.test_x.shape[0])

    @property
    def device(self) -> torch.device:
        return self.train_x.device


# --------------------------------------------------------------------------------------------
# Loading


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

    ``label_noise`` replaces that fraction of the training labels by uniformly random classes
    (deterministic per ``seed``; test labels are never touched). ``train_limit`` keeps only the
    first N training examples (all of them when N exceeds the training-set size); noise is drawn
    on the full training set first, so a limited set is a prefix of the full one.
    ``data_dir``, ``download`` and ``cifar_md5`` only matter for ``cifar10``.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names are: {', '.join(DATASETS)}")
    if not isinstance(label_noise, (int, float)) or not 0.0 <= label_noise < 1.0:
        raise ValueError(f"label_noise must be a fraction in [0, 1), got {label_noise!r}")
    if train_limit is not None and (isinstance(train_limit, bool) or not isinstance(train_limit, int) or train_limit < 1):
        raise ValueError(f"train_limit must be a positive int or None, got {train_limit!r}")
    device = torch.device(device)

    if name == "cifar10":
        ds = _load_cifar10(device, data_dir, download=download, expected_md5=cifar_md5)
    elif name == "digits":
        ds = _load_digits(device)
    else:
        ds = _load_synthetic(device)

    if label_noise > 0.0:
        ds.train_y = _noisy_labels(ds.train_y, ds.num_classes, label_noise, seed)
    if train_limit is not None and train_limit < ds.train_size:
        ds.train_x = ds.train_x[:train_limit].contiguous()
        ds.train_y = ds.train_y[:train_limit].contiguous()
    return ds


def _noisy_labels(y: Tensor, num_classes: int, fraction: float, seed: int) -> Tensor:
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


def _normalize_uint8(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device) -> Tensor:
    """(x - mean) / std per channel, computed on ``device`` (moving uint8 is 4x cheaper than float32)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
    m = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    return ((t.float() - m) / s).contiguous()


def _labels(y: np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(np.asarray(y), dtype=torch.int64).to(device)


# ---- CIFAR-10


def _load_cifar10(device: torch.device, data_dir: str | Path | None, *, download: bool, expected_md5: str) -> DeviceDataset:
    if data_dir is None:
        raise DatasetUnavailableError(
            "cifar10 needs a data directory: pass data_dir=... (or set HPSCAPE_DATA_DIR for the "
            f"service); {CIFAR10_ARCHIVE} is looked for, or downloaded to, that directory"
        )
    archive = Path(data_dir).expanduser() / CIFAR10_ARCHIVE
    if not archive.is_file():
        if not download:
            raise DatasetUnavailableError(
                f"CIFAR-10 archive not found at {archive} and download is disabled; download "
                f"{CIFAR10_URL} and place it at {archive}, or enable downloading"
            )
        _download(CIFAR10_URL, archive, expected_md5)
    else:
        _check_md5(archive, expected_md5)

    train_x, train_y, test_x, test_y = _decoded_cifar(archive, expected_md5)
    return DeviceDataset(
        name="cifar10",
        train_x=_normalize_uint8(train_x, CIFAR10_MEAN, CIFAR10_STD, device),
        train_y=_labels(train_y, device),
        test_x=_normalize_uint8(test_x, CIFAR10_MEAN, CIFAR10_STD, device),
        test_y=_labels(test_y, device),
        num_classes=10,
        in_channels=3,
        image_size=32,
        augmentation=Augmentation(flip=True, pad=4),
    )


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_md5(path: Path, expected: str) -> None:
    actual = _md5(path)
    if actual != expected.lower():
        raise DatasetChecksumError(
            f"md5 mismatch for {path}: expected {expected}, actual {actual}. The file is corrupt, "
            f"truncated or not the official archive; delete it and download {CIFAR10_URL} again "
            "(or let hpscape download it)"
        )


def _download(url: str, dest: Path, expected_md5: str) -> None:
    """Download ``url`` to ``dest`` via a temp file in the same directory, then rename atomically."""
    how_to_fix = f"download {url} yourself and place it at {dest}"
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetUnavailableError(f"cannot create data directory {dest.parent} ({exc}); {how_to_fix}") from exc
    log.info("downloading %s to %s", url, dest)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as resp:
                shutil.copyfileobj(resp, out, length=1 << 20)
        except Exception as exc:  # any network/HTTP/disk failure: the remedy is the same
            reason = f"{type(exc).__name__}: {exc}"
            raise DatasetUnavailableError(f"download failed ({reason}); {how_to_fix}") from exc
        actual = _md5(tmp)
        if actual != expected_md5.lower():
            raise DatasetChecksumError(
                f"downloaded file from {url} has md5 {actual}, expected {expected_md5}; "
                f"try again, or {how_to_fix}"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _cache_path(archive: Path, md5: str) -> Path:
    # Keyed by the archive md5 so a replaced archive never reuses a stale decode.
    return archive.with_name(f"{CIFAR10_ARCHIVE}.decoded-{md5.lower()}.npz")


def _decoded_cifar(archive: Path, md5: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decoded uint8 arrays (train_x, train_y, test_x, test_y), from the cache when possible."""
    cache = _cache_path(archive, md5)
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return z["train_x"], z["train_y"], z["test_x"], z["test_y"]
        except Exception as exc:  # a broken cache is only a lost speed-up
            log.warning("ignoring unreadable CIFAR-10 cache %s (%s)", cache, exc)
    arrays = _read_cifar_archive(archive)
    _write_cache(cache, arrays)
    return arrays


def _read_cifar_archive(archive: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    wanted = {f"{_CIFAR_MEMBER_DIR}/{m}": m for m in (*_CIFAR_TRAIN_MEMBERS, _CIFAR_TEST_MEMBER)}
    batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                key = wanted.get(member.name)
                if key is None or not member.isfile():
                    continue
                f = tar.extractfile(member)
                assert f is not None
                # Unpickling is safe here only because the archive's md5 was verified first.
                batch = pickle.load(f, encoding="bytes")
                data = np.asarray(batch[b"data"], dtype=np.uint8)
                # Each row is 1024 R, then 1024 G, then 1024 B values, each plane row-major 32x32.
                batches[key] = (data.reshape(-1, 3, 32, 32), np.asarray(batch[b"labels"], dtype=np.int64))
    except (tarfile.TarError, OSError, pickle.UnpicklingError, KeyError, ValueError, EOFError) as exc:
        raise DatasetUnavailableError(
            f"cannot read {archive} as the CIFAR-10 python archive ({type(exc).__name__}: {exc}); "
            f"delete it and download {CIFAR10_URL} again"
        ) from exc
    missing = [m for m in wanted.values() if m not in batches]
    if missing:
        raise DatasetUnavailableError(
            f"{archive} lacks {', '.join(f'{_CIFAR_MEMBER_DIR}/{m}' for m in missing)}; it is not the "
            f"CIFAR-10 python archive: delete it and download {CIFAR10_URL} again"
        )
    train_x = np.concatenate([batches[m][0] for m in _CIFAR_TRAIN_MEMBERS])
    train_y = np.concatenate([batches[m][1] for m in _CIFAR_TRAIN_MEMBERS])
    test_x, test_y = batches[_CIFAR_TEST_MEMBER]
    return train_x, train_y, test_x, test_y


def _write_cache(cache: Path, arrays: tuple[np.ndarray, ...]) -> None:
    train_x, train_y, test_x, test_y = arrays
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=cache.name + ".", suffix=".part", dir=cache.parent)
    except OSError as exc:  # e.g. a read-only data directory: just skip the cache
        log.info("not caching decoded CIFAR-10 (%s)", exc)
        return
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y)
        os.replace(tmp_name, cache)
    except OSError as exc:
        log.info("not caching decoded CIFAR-10 (%s)", exc)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


# ---- digits


def _load_digits(device: torch.device) -> DeviceDataset:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    bunch = load_digits()
    images = np.asarray(bunch.images, dtype=np.float64)[:, None]  # (1797, 1, 8, 8), values 0..16
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(len(labels))
    tr, te = order[:_DIGITS_TRAIN_SIZE], order[_DIGITS_TRAIN_SIZE:]
    mean = images[tr].mean(axis=(0, 2, 3), keepdims=True)
    std = images[tr].std(axis=(0, 2, 3), keepdims=True)

    def norm(x: np.ndarray) -> Tensor:
        return torch.from_numpy(((x - mean) / std).astype(np.float32)).to(device).contiguous()

    return DeviceDataset(
        name="digits",
        train_x=norm(images[tr]),
        train_y=_labels(labels[tr], device),
        test_x=norm(images[te]),
        test_y=_labels(labels[te], device),
        num_classes=10,
        in_channels=1,
        image_size=8,
        # Flipping would change what a digit means; 8x8 images have no room to crop.
        augmentation=Augmentation(flip=False, pad=0),
    )


# ---- synthetic


def _load_synthetic(device: torch.device) -> DeviceDataset:
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
        train_y=_labels(train_y, device),
        test_x=norm(test_x),
        test_y=_labels(test_y, device),
        num_classes=k,
        in_channels=c,
        image_size=s,
        # A one-pixel crop keeps the augmentation path exercised in fast end-to-end tests.
        augmentation=Augmentation(flip=False, pad=1),
    )


# --------------------------------------------------------------------------------------------
# Augmentation and batching


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
        yield augment_batch(ds.train_x[idx], ds.augmentation, generator), ds.train_y[idx]


def test_batches(ds: DeviceDataset, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Test batches in dataset order, without augmentation; the last batch may be short."""
    _check_batch_size(batch_size)
    return (
        (ds.test_x[start : start + batch_size], ds.test_y[start : start + batch_size])
        for start in range(0, ds.test_size, batch_size)
    )


# Its name starts with "test_": keep pytest from collecting it when a test module imports it.
test_batches.__test__ = False  # type: ignore[attr-defined]
