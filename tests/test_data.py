"""Tests for workers.data: dataset loading, augmentation and batching."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

# Imported as a module on purpose: `from hpscape.workers.data import test_batches` would make pytest
# try to collect that function as a test.
from hpscape.workers import data

MEAN = (125.3, 123.0, 113.9)
STD = (63.0, 62.1, 66.7)


# --------------------------------------------------------------------------------------------
# A small archive in the exact format of cifar-10-python.tar.gz


@dataclass
class FakeCifar:
    path: Path
    md5: str
    train_data: np.ndarray  # (100, 3072) uint8, rows as stored in the archive
    train_labels: np.ndarray
    test_data: np.ndarray  # (20, 3072)
    test_labels: np.ndarray


def _pickled(obj: object) -> bytes:
    return pickle.dumps(obj, protocol=2)


def write_fake_cifar(
    directory: Path, *, per_batch: int = 20, seed: int = 0, skip_member: str | None = None
) -> FakeCifar:
    """Write cifar-10-python.tar.gz (5 train batches + test batch + batches.meta) into ``directory``."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batches[name] = {
            b"batch_label": name.encode(),
            b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            b"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
            b"filenames": [f"img{i}.png".encode() for i in range(per_batch)],
        }
    meta = {b"num_cases_per_batch": per_batch, b"label_names": [b"c%d" % i for i in range(10)], b"num_vis": 3072}
    path = directory / "cifar-10-python.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        members = {"batches.meta": meta, **batches}
        for name, obj in members.items():
            if name == skip_member:
                continue
            payload = _pickled(obj)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return FakeCifar(
        path=path,
        md5=hashlib.md5(path.read_bytes()).hexdigest(),
        train_data=np.concatenate([b[b"data"] for b in train]),
        train_labels=np.concatenate([b[b"labels"] for b in train]),
        test_data=batches["test_batch"][b"data"],
        test_labels=np.asarray(batches["test_batch"][b"labels"]),
    )


@pytest.fixture
def fake_cifar(tmp_path: Path) -> FakeCifar:
    return write_fake_cifar(tmp_path)


def _load_fake(fake: FakeCifar) -> data.DeviceDataset:
    return data.load_dataset("cifar10", data_dir=fake.path.parent, cifar_md5=fake.md5, download=False)


# --------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_shapes_labels_and_metadata(fake_cifar: FakeCifar) -> None:
    ds = _load_fake(fake_cifar)
    assert ds.name == "cifar10"
    assert (ds.train_size, ds.test_size) == (100, 20)
    assert ds.train_x.shape == (100, 3, 32, 32) and ds.test_x.shape == (20, 3, 32, 32)
    assert ds.train_x.dtype == torch.float32 and ds.train_y.dtype == torch.int64
    assert ds.train_y.tolist() == fake_cifar.train_labels.tolist()
    assert ds.test_y.tolist() == fake_cifar.test_labels.tolist()
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 3, 32)
    assert ds.augmentation == data.Augmentation(flip=True, pad=4)


@pytest.mark.parametrize(("split", "i", "c", "r", "k"),
                         [("train", 0, 0, 0, 0), ("train", 57, 1, 3, 30), ("test", 19, 2, 31, 5)])
def test_cifar_pixel_normalized_by_hand(fake_cifar: FakeCifar, split: str, i: int, c: int, r: int, k: int) -> None:
    ds = _load_fake(fake_cifar)
    raw = fake_cifar.train_data if split == "train" else fake_cifar.test_data
    x = ds.train_x if split == "train" else ds.test_x
    # A CIFAR row holds 1024 R, then 1024 G, then 1024 B values, each plane row-major 32x32.
    v = float(raw[i, c * 1024 + r * 32 + k])
    assert x[i, c, r, k].item() == pytest.approx((v - MEAN[c]) / STD[c], abs=1e-5)


def test_cifar_all_pixels_match_reference(fake_cifar: FakeCifar) -> None:
    ds = _load_fake(fake_cifar)
    ref = fake_cifar.train_data.reshape(100, 3, 32, 32).astype(np.float64)
    ref = (ref - np.array(MEAN)[None, :, None, None]) / np.array(STD)[None, :, None, None]
    np.testing.assert_allclose(ds.train_x.numpy(), ref, atol=1e-5)


def test_cifar_cache_is_reused_and_broken_cache_ignored(fake_cifar: FakeCifar) -> None:
    first = _load_fake(fake_cifar)
    caches = list(fake_cifar.path.parent.glob("*.npz"))
    assert len(caches) == 1, f"expected one decoded cache next to the archive, found {caches}"
    assert fake_cifar.md5 in caches[0].name
    second = _load_fake(fake_cifar)
    assert torch.equal(first.train_x, second.train_x) and torch.equal(first.test_y, second.test_y)
    caches[0].write_bytes(b"not an npz file")
    third = _load_fake(fake_cifar)
    assert torch.equal(first.train_x, third.train_x) and torch.equal(first.train_y, third.train_y)


def test_cifar_wrong_md5_names_file_and_both_sums(fake_cifar: FakeCifar) -> None:
    wrong = "0" * 32
    with pytest.raises(data.DatasetChecksumError) as err:
        data.load_dataset("cifar10", data_dir=fake_cifar.path.parent, cifar_md5=wrong, download=False)
    msg = str(err.value)
    assert wrong in msg and fake_cifar.md5 in msg and str(fake_cifar.path) in msg
    assert "download" in msg  # says what to do
    assert isinstance(err.value, data.DatasetUnavailableError)


def test_cifar_missing_archive_without_download(tmp_path: Path) -> None:
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(tmp_path / "cifar-10-python.tar.gz") in str(err.value)
    assert data.CIFAR10_URL in str(err.value)


def test_cifar_without_data_dir_says_how_to_fix() -> None:
    with pytest.raises(data.DatasetUnavailableError, match="data_dir") as err:
        data.load_dataset("cifar10", data_dir=None, download=False)
    assert "HPSCAPE_DATA_DIR" in str(err.value)


def test_cifar_download_failure_gives_placement_instructions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = "http://127.0.0.1:9/x"
    monkeypatch.setattr(data.cifar, "CIFAR10_URL", url)
    dest = tmp_path / "sub" / "cifar-10-python.tar.gz"
    with pytest.raises(data.DatasetUnavailableError) as err:
        data.load_dataset("cifar10", data_dir=dest.parent, download=True)
    msg = str(err.value)
    assert msg.startswith("download failed (")
    assert f"download {url} yourself and place it at {dest}" in msg
    assert list(dest.parent.iterdir()) == [], "a failed download must not leave files behind"


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """Serve a fresh directory over HTTP on localhost; yields (base URL, directory)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_cifar_download_success(http_dir: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = http_dir
    fake = write_fake_cifar(root)
    monkeypatch.setattr(data.cifar, "CIFAR10_URL", f"{base}/cifar-10-python.tar.gz")
    target = tmp_path / "data"
    ds = data.load_dataset("cifar10", data_dir=target, cifar_md5=fake.md5, download=True)
    assert (target / "cifar-10-python.tar.gz").read_bytes() == fake.path.read_bytes()
    assert ds.train_y.tolist() == fake.train_labels.tolist()
    assert not list(target.glob("*.part")), "temp download file left behind"


def test_cifar_download_with_wrong_md5_keeps_nothing(
    http_dir: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, root = http_dir
    fake = write_fake_cifar(root)
    monkeypatch.setattr(data.cifar, "CIFAR10_URL", f"{base}/cifar-10-python.tar.gz")
    target = tmp_path / "data"
    with pytest.raises(data.DatasetChecksumError) as err:
        data.load_dataset("cifar10", data_dir=target, cifar_md5="f" * 32, download=True)
    assert fake.md5 in str(err.value) and "f" * 32 in str(err.value)
    assert list(target.iterdir()) == []


def test_cifar_archive_missing_member(tmp_path: Path) -> None:
    fake = write_fake_cifar(tmp_path, skip_member="data_batch_3")
    with pytest.raises(data.DatasetUnavailableError, match="data_batch_3"):
        _load_fake(fake)


# --------------------------------------------------------------------------------------------
# digits


def test_digits_shapes_and_normalization() -> None:
    ds = data.load_dataset("digits")
    assert ds.train_x.shape == (1437, 1, 8, 8) and ds.test_x.shape == (360, 1, 8, 8)
    assert ds.train_y.dtype == torch.int64 and set(ds.train_y.tolist()) == set(range(10))
    assert (ds.num_classes, ds.in_channels, ds.image_size) == (10, 1, 8)
    assert not ds.augmentation.enabled
    assert abs(ds.train_x.mean().item()) < 1e-4 and abs(ds.train_x.std().item() - 1) < 1e-3


def test_digits_split_fixed_across_seeds_and_noise() -> None:
    a = data.load_dataset("digits", seed=0)
    b = data.load_dataset("digits", seed=7, label_noise=0.3)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_x, b.test_x)
    assert torch.equal(a.test_y, b.test_y), "test labels must never be noised"
    # Train and test are disjoint pieces of the 1797 bundled images.
    from sklearn.datasets import load_digits

    assert a.train_size + a.test_size == len(load_digits().target)


def test_digits_label_noise_fraction_and_determinism() -> None:
    clean = data.load_dataset("digits")
    frac = 0.2
    noisy = data.load_dataset("digits", label_noise=frac, seed=1)
    again = data.load_dataset("digits", label_noise=frac, seed=1)
    other = data.load_dataset("digits", label_noise=frac, seed=2)
    changed = (noisy.train_y != clean.train_y).sum().item()
    expected = frac * 0.9 * clean.train_size  # a random class equals the old one 1 time in 10
    assert abs(changed - expected) < 0.1 * expected, (changed, expected)
    # Replacements are uniform over the classes: each class gets about 1/10 of them.
    counts = torch.bincount(noisy.train_y[noisy.train_y != clean.train_y], minlength=10)
    assert counts.min() > 0.04 * changed and counts.max() < 0.18 * changed, counts.tolist()
    assert torch.equal(noisy.train_y, again.train_y)
    assert not torch.equal(noisy.train_y, other.train_y)
    assert torch.equal(noisy.test_y, clean.test_y)
    assert noisy.train_y.min() >= 0 and noisy.train_y.max() < 10


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_label_noise_out_of_range(bad: float) -> None:
    with pytest.raises(ValueError, match="label_noise"):
        data.load_dataset("digits", label_noise=bad)


def test_unknown_dataset_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="unknown dataset .imagenet.") as err:
        data.load_dataset("imagenet")
    for name in data.DATASETS:
        assert name in str(err.value)


def test_train_limit_keeps_prefix() -> None:
    full = data.load_dataset("digits", label_noise=0.2, seed=3)
    small = data.load_dataset("digits", label_noise=0.2, seed=3, train_limit=100)
    assert small.train_size == 100 and small.test_size == full.test_size
    assert torch.equal(small.train_x, full.train_x[:100]) and torch.equal(small.train_y, full.train_y[:100])
    assert data.load_dataset("synthetic", train_limit=10**6).train_size == 512  # over-large: keep all
    with pytest.raises(ValueError, match="train_limit"):
        data.load_dataset("digits", train_limit=0)


# --------------------------------------------------------------------------------------------
# synthetic


def test_synthetic_is_deterministic() -> None:
    a, b = data.load_dataset("synthetic", seed=0), data.load_dataset("synthetic", seed=5)
    assert a.train_x.shape == (512, 3, 8, 8) and a.test_x.shape == (256, 3, 8, 8)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    assert set(a.train_y.tolist()) == set(range(a.num_classes))


def test_synthetic_is_learnable_by_a_small_net() -> None:
    ds = data.load_dataset("synthetic")
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(ds.in_channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, ds.num_classes),
    )  # fmt: skip
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(0)
    for _ in range(6):
        net.train()
        for x, y in data.train_batches(ds, 64, g):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    net.eval()
    with torch.no_grad():
        wrong = sum(int((net(x).argmax(1) != y).sum()) for x, y in data.test_batches(ds, 100))
    assert wrong / ds.test_size < 0.4, f"test error {wrong / ds.test_size:.2f} (chance is 0.9)"


# --------------------------------------------------------------------------------------------
# augment_batch


def _reference_candidates(img: torch.Tensor, pad: int, flip: bool) -> dict[tuple[bool, int, int], torch.Tensor]:
    """Every allowed output for one image: (flipped, row offset, col offset) -> window, by slow loops."""
    c, h, w = img.shape
    padded = torch.zeros(c, h + 2 * pad, w + 2 * pad)
    for ch in range(c):
        for r in range(h):
            for k in range(w):
                padded[ch, r + pad, k + pad] = img[ch, r, k]
    out = {}
    for oy in range(2 * pad + 1):
        for ox in range(2 * pad + 1):
            window = padded[:, oy : oy + h, ox : ox + w]
            out[(False, oy, ox)] = window
            if flip:
                out[(True, oy, ox)] = torch.stack([window[:, :, w - 1 - k] for k in range(w)], dim=2)
    return out


def _match(out: torch.Tensor, x: torch.Tensor, pad: int, flip: bool) -> list[tuple[bool, int, int]]:
    """For each output image, the unique (flip, oy, ox) whose reference window equals it exactly."""
    found = []
    for i in range(x.shape[0]):
        cands = _reference_candidates(x[i], pad, flip)
        hits = [key for key, ref in cands.items() if torch.equal(out[i], ref)]
        assert len(hits) == 1, f"image {i}: output matches {len(hits)} reference windows"
        found.append(hits[0])
    return found


def test_augment_is_exact_flip_and_shifted_window() -> None:
    x = torch.randn(200, 2, 6, 7, generator=torch.Generator().manual_seed(1))  # non-square: catches H/W mix-ups
    out = data.augment_batch(x, data.Augmentation(flip=True, pad=2), torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    keys = _match(out, x, pad=2, flip=True)
    flips = sum(k[0] for k in keys)
    assert 70 <= flips <= 130, f"{flips}/200 flipped, expected about half"
    assert {k[1] for k in keys} == set(range(5)) and {k[2] for k in keys} == set(range(5))
    assert any(k[1] != k[2] for k in keys), "row and column offsets must be drawn independently"


def test_augment_flip_only_and_crop_only() -> None:
    x = torch.randn(64, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    flipped = data.augment_batch(x, data.Augmentation(flip=True, pad=0), torch.Generator().manual_seed(0))
    keys = _match(flipped, x, pad=0, flip=True)
    assert 0 < sum(k[0] for k in keys) < 64
    cropped = data.augment_batch(x, data.Augmentation(flip=False, pad=1), torch.Generator().manual_seed(0))
    keys = _match(cropped, x, pad=1, flip=False)
    assert len({k[1:] for k in keys}) > 1


def test_augment_deterministic_per_generator_seed() -> None:
    x = torch.randn(32, 3, 8, 8)
    aug = data.Augmentation(flip=True, pad=4)
    a = data.augment_batch(x, aug, torch.Generator().manual_seed(5))
    b = data.augment_batch(x, aug, torch.Generator().manual_seed(5))
    c = data.augment_batch(x, aug, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_noop_and_bad_input() -> None:
    x = torch.randn(4, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    state = g.get_state()
    assert torch.equal(data.augment_batch(x, data.Augmentation(flip=False, pad=0), g), x)
    assert torch.equal(g.get_state(), state), "a no-op augmentation must not consume randomness"
    with pytest.raises(ValueError, match="N, C, H, W"):
        data.augment_batch(x[0], data.Augmentation(flip=True, pad=0), g)
    with pytest.raises(ValueError, match="pad"):
        data.Augmentation(flip=False, pad=-1)


# --------------------------------------------------------------------------------------------
# batching


def _indexed_dataset(n_train: int, n_test: int, aug: data.Augmentation) -> data.DeviceDataset:
    """Every image is filled with its own index, so batches reveal which examples they hold."""
    def images(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()

    return data.DeviceDataset(
        name="indexed", train_x=images(n_train), train_y=torch.arange(n_train), test_x=images(n_test),
        test_y=torch.arange(n_test), num_classes=n_train, in_channels=1, image_size=4, augmentation=aug,
    )  # fmt: skip


def test_train_batches_cover_each_example_once_last_short() -> None:
    ds = _indexed_dataset(103, 10, data.Augmentation(flip=False, pad=0))
    g = torch.Generator().manual_seed(0)
    epochs = []
    for _ in range(2):
        batches = list(data.train_batches(ds, 25, g))
        assert [len(y) for _, y in batches] == [25, 25, 25, 25, 3]
        assert len(batches) == data.steps_per_epoch(103, 25)
        for x, y in batches:
            assert torch.equal(x[:, 0, 0, 0], y.float()), "images and labels got out of step"
        order = torch.cat([y for _, y in batches])
        assert sorted(order.tolist()) == list(range(103))
        epochs.append(order)
    assert not torch.equal(epochs[0], epochs[1]), "each epoch must be reshuffled"
    assert not torch.equal(epochs[0], torch.arange(103))


def test_train_batches_are_augmented_and_resumable() -> None:
    ds = data.load_dataset("synthetic", train_limit=200)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    first = list(data.train_batches(ds, 64, g))
    g.set_state(state)
    second = list(data.train_batches(ds, 64, g))
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second, strict=True))
    # pad=1 crops: at least some images differ from every stored training image.
    xs = torch.cat([x for x, _ in first])
    stored = ds.train_x.flatten(1)
    exact = (torch.cdist(xs.flatten(1), stored) < 1e-6).any(dim=1)
    assert not exact.all()


def test_test_batches_in_order_without_augmentation() -> None:
    ds = _indexed_dataset(10, 23, data.Augmentation(flip=True, pad=1))
    batches = list(data.test_batches(ds, 10))
    assert [len(y) for _, y in batches] == [10, 10, 3]
    assert torch.equal(torch.cat([x for x, _ in batches]), ds.test_x)
    assert torch.equal(torch.cat([y for _, y in batches]), ds.test_y)


def test_steps_per_epoch_and_bad_batch_size() -> None:
    assert data.steps_per_epoch(50_000, 128) == 391
    assert data.steps_per_epoch(1437, 1437) == 1
    assert data.steps_per_epoch(512, 100) == 6
    ds = _indexed_dataset(10, 10, data.Augmentation(flip=False, pad=0))
    for bad in (0, -1):
        with pytest.raises(ValueError, match="batch_size"):
            data.train_batches(ds, bad, torch.Generator())
        with pytest.raises(ValueError, match="batch_size"):
            data.test_batches(ds, bad)
        with pytest.raises(ValueError, match="batch_size"):
            data.steps_per_epoch(10, bad)
