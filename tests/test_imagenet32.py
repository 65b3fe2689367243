"""ImageNet32x32 from files in the official downsampled-ImageNet format (generated small, here)."""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from hpscape.workers import data
from hpscape.workers.data import imagenet32
from hpscape.workers.train import TrialConfig, train_trial

TRAIN_PER_BATCH, VAL = 7, 11


@dataclass
class FakeImagenet32:
    root: Path
    train_rows: np.ndarray  # (70, 3072) uint8, as stored
    train_labels: np.ndarray  # 1-based, as stored
    val_rows: np.ndarray
    val_labels: np.ndarray


def _batch(rng: np.random.Generator, n: int, with_mean: bool) -> dict[str, object]:
    rows = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    # The release stores labels as a list of 1-based ints and, in training batches, the mean image.
    batch: dict[str, object] = {"data": rows, "labels": [int(v) for v in rng.integers(1, 1001, size=n)]}
    if with_mean:
        batch["mean"] = rows.mean(axis=0)
    return batch


def make_imagenet32(root: Path, *, zipped: bool, protocol: int = 4, seed: int = 0) -> FakeImagenet32:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    train = {f"train_data_batch_{i}": _batch(rng, TRAIN_PER_BATCH, True) for i in range(1, 11)}
    val = {"val_data": _batch(rng, VAL, False)}
    for zip_name, members in (("Imagenet32_train.zip", train), ("Imagenet32_val.zip", val)):
        if zipped:
            with zipfile.ZipFile(root / zip_name, "w") as zf:
                for name, batch in members.items():
                    zf.writestr(f"{zip_name.removesuffix('.zip')}/{name}", pickle.dumps(batch, protocol=protocol))
        else:
            for name, batch in members.items():
                (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    return FakeImagenet32(
        root=root,
        train_rows=np.concatenate([b["data"] for b in train.values()]),  # type: ignore[misc]
        train_labels=np.concatenate([b["labels"] for b in train.values()]),  # type: ignore[misc]
        val_rows=val["val_data"]["data"],  # type: ignore[arg-type]
        val_labels=np.asarray(val["val_data"]["labels"]),
    )


def _load(root: Path) -> data.DeviceDataset:
    return imagenet32.load_imagenet32(torch.device("cpu"), root, expected_counts=(70, VAL))


@pytest.mark.parametrize("zipped", [True, False], ids=["zips", "extracted"])
def test_reads_the_official_layout_as_uint8(tmp_path: Path, zipped: bool) -> None:
    fake = make_imagenet32(tmp_path, zipped=zipped)
    ds = _load(tmp_path)
    assert ds.name == "imagenet32" and ds.num_classes == 1000 and ds.image_size == 32 and ds.in_channels == 3
    assert ds.train_x.dtype == torch.uint8 and ds.train_x.shape == (70, 3, 32, 32)
    assert ds.test_x.shape == (VAL, 3, 32, 32)
    # Row layout: 1024 R, 1024 G, 1024 B, each a row-major 32x32 plane.
    assert np.array_equal(ds.train_x[5, 1].numpy().reshape(-1), fake.train_rows[5, 1024:2048])
    assert np.array_equal(ds.train_x[5, 2, 3].numpy(), fake.train_rows[5, 2048 + 3 * 32 : 2048 + 4 * 32])
    # Labels: 1-based in the files, 0-based class indices in the dataset.
    assert np.array_equal(ds.train_y.numpy(), fake.train_labels - 1)
    assert np.array_equal(ds.test_y.numpy(), fake.val_labels - 1)


def test_normalized_per_batch_with_training_set_statistics(tmp_path: Path) -> None:
    fake = make_imagenet32(tmp_path, zipped=True)
    ds = _load(tmp_path)
    images = fake.train_rows.reshape(-1, 3, 32, 32).astype(np.float64)
    mean, std = ds.normalization
    assert np.allclose(mean, images.mean(axis=(0, 2, 3))) and np.allclose(std, images.std(axis=(0, 2, 3)))
    x, _ = next(iter(data.test_batches(ds, batch_size=VAL)))
    assert x.dtype == torch.float32
    expected = (fake.val_rows.reshape(-1, 3, 32, 32) - np.array(mean).reshape(1, 3, 1, 1)) / np.array(std).reshape(
        1, 3, 1, 1)
    assert np.allclose(x.numpy(), expected, atol=1e-4)
    # Training batches are normalized too (then augmented): over the whole set the mean is about zero.
    train = torch.cat([xb for xb, _ in data.train_batches(ds, 32, torch.Generator().manual_seed(0))])
    assert train.dtype == torch.float32 and train.shape == (70, 3, 32, 32)
    assert abs(float(train.mean())) < 0.1


def test_python2_style_pickles_are_read(tmp_path: Path) -> None:
    make_imagenet32(tmp_path, zipped=True, protocol=2)
    assert _load(tmp_path).train_size == 70


def test_imagenet32_subfolder_is_found(tmp_path: Path) -> None:
    make_imagenet32(tmp_path / "imagenet32", zipped=True)
    assert _load(tmp_path).test_size == VAL


def test_missing_files_say_where_to_put_them(tmp_path: Path) -> None:
    with pytest.raises(data.DatasetUnavailableError, match="Imagenet32_train.zip and Imagenet32_val.zip") as err:
        data.load_dataset("imagenet32", data_dir=tmp_path)
    assert str(tmp_path) in str(err.value) and "HPSCAPE_DATA_DIR" in str(err.value)
    with pytest.raises(data.DatasetUnavailableError, match="needs a data directory"):
        data.load_dataset("imagenet32")
    with pytest.raises(data.DatasetUnavailableError, match="ImageNet32x32 is not under"):
        data.check_available("imagenet32", tmp_path)


def test_official_counts_are_checked(tmp_path: Path) -> None:
    make_imagenet32(tmp_path, zipped=True)
    data.check_available("imagenet32", tmp_path)  # the files are there ...
    with pytest.raises(data.DatasetUnavailableError, match="has 70 training and 11 validation images.*1,281,167"):
        data.load_dataset("imagenet32", data_dir=tmp_path)  # ... but they are not the whole release


def test_a_missing_batch_is_named(tmp_path: Path) -> None:
    make_imagenet32(tmp_path, zipped=False)
    (tmp_path / "train_data_batch_7").unlink()
    with pytest.raises(data.DatasetUnavailableError, match="lacks train_data_batch_7"):
        _load(tmp_path)


def test_other_resolutions_are_refused(tmp_path: Path) -> None:
    make_imagenet32(tmp_path, zipped=False)
    batch = {"data": np.zeros((3, 3 * 64 * 64), dtype=np.uint8), "labels": [1, 2, 3]}
    (tmp_path / "val_data").write_bytes(pickle.dumps(batch))
    with pytest.raises(data.DatasetUnavailableError, match="a 64x64 or 16x16 release"):
        _load(tmp_path)


def test_a_corrupt_zip_is_reported(tmp_path: Path) -> None:
    make_imagenet32(tmp_path, zipped=True)
    (tmp_path / "Imagenet32_val.zip").write_bytes(b"not a zip")
    with pytest.raises(data.DatasetUnavailableError, match="cannot read .*Imagenet32_val.zip as a zip"):
        _load(tmp_path)


def test_labels_out_of_range_are_refused(tmp_path: Path) -> None:
    make_imagenet32(tmp_path, zipped=False)
    batch = {"data": np.zeros((2, 3072), dtype=np.uint8), "labels": [0, 1001]}
    (tmp_path / "val_data").write_bytes(pickle.dumps(batch))
    with pytest.raises(data.DatasetUnavailableError, match="labels .* run 0..1001"):
        imagenet32.load_imagenet32(torch.device("cpu"), tmp_path, expected_counts=None)


def test_trains_with_a_1000_class_head(tmp_path: Path) -> None:
    make_imagenet32(tmp_path, zipped=True)
    ds = _load(tmp_path)
    config = TrialConfig(variant="sgdw", lr=0.05, weight_decay=0.01, epochs=1, batch_size=32, dataset="imagenet32",
                         model="shake_shake_8_2x8d", seed=0)
    result = train_trial(config, dataset=ds)
    assert len(result.history) == 1
    first = result.history[0]
    assert np.isfinite(first.test_loss) and 0.9 <= first.test_error <= 1.0  # 11 images, 1000 classes
    # Cross-entropy over 1000 classes starts near ln(1000) = 6.9.
    assert 5.0 < first.test_loss < 9.0
