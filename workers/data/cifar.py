"""CIFAR-10 from the official python archive: md5-checked, decoded straight from the tarball, cached as npz.

docs/science.md, "Figure 2": per-channel mean (125.3, 123.0, 113.9) and std (63.0, 62.1, 66.7) on the 0-255 scale,
training augmentation a horizontal flip and a 32x32 crop after zero-padding 4 pixels.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from .dataset import (
    Augmentation,
    DatasetChecksumError,
    DatasetUnavailableError,
    DeviceDataset,
    as_labels,
    normalize_uint8,
)

__all__ = ["CIFAR10_ARCHIVE", "CIFAR10_MD5", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR10_URL", "load_cifar10"]

log = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
# Per-channel statistics on the 0-255 scale, as in the authors' Lua code (docs/science.md, "Figure 2").
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)

_CIFAR_MEMBER_DIR = "cifar-10-batches-py"
_CIFAR_TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_TEST_MEMBER = "test_batch"
_DOWNLOAD_TIMEOUT_S = 60.0


def load_cifar10(device: torch.device, data_dir: str | Path | None, *, download: bool,
                 expected_md5: str) -> DeviceDataset:
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
        train_x=normalize_uint8(train_x, CIFAR10_MEAN, CIFAR10_STD, device),
        train_y=as_labels(train_y, device),
        test_x=normalize_uint8(test_x, CIFAR10_MEAN, CIFAR10_STD, device),
        test_y=as_labels(test_y, device),
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
