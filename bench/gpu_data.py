"""Data for bench/gpu_check.py: random CIFAR-shaped images (throughput does not depend on pixels), and a learnable
CIFAR-shaped set for the bf16 agreement check when the real CIFAR-10 is not at hand."""

from __future__ import annotations

from pathlib import Path

import torch

from hpscape.workers.data import Augmentation, DeviceDataset


def cifar_shaped(images: int, device: torch.device, *, shape: tuple[int, int, int] = (3, 32, 32),
                 seed: int = 0) -> DeviceDataset:
    g = torch.Generator().manual_seed(seed)
    return DeviceDataset(
        name="random-cifar", train_x=torch.randn(images, *shape, generator=g).to(device),
        train_y=torch.randint(0, 10, (images,), generator=g).to(device),
        test_x=torch.randn(256, *shape, generator=g).to(device),
        test_y=torch.randint(0, 10, (256,), generator=g).to(device),
        num_classes=10, in_channels=shape[0], image_size=shape[1], augmentation=Augmentation(flip=True, pad=4),
    )


def _learnable(train: int, test: int, device: torch.device, shape: tuple[int, int, int]) -> DeviceDataset:
    """Ten classes, each a fixed random template plus unit noise: a network learns it in an epoch or two, so the
    two precisions' losses move (random labels would leave both flat at ln 10 and agree trivially)."""
    g = torch.Generator().manual_seed(1)
    templates = torch.randn(10, *shape, generator=g)
    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.randint(0, 10, (n,), generator=g)
        return (templates[y] + torch.randn(n, *shape, generator=g)).to(device), y.to(device)
    train_x, train_y = split(train)
    test_x, test_y = split(test)
    return DeviceDataset(name="learnable-cifar-shaped", train_x=train_x, train_y=train_y, test_x=test_x,
                         test_y=test_y, num_classes=10, in_channels=shape[0], image_size=shape[1],
                         augmentation=Augmentation(flip=True, pad=4))


def cifar_or_shaped(data_dir: Path | None, device: torch.device, *, tiny: bool) -> tuple[DeviceDataset, str]:
    """CIFAR-10 when `data_dir` holds it, else the learnable stand-in of CIFAR-10's size (tiny: a few hundred)."""
    if tiny:
        return _learnable(512, 128, device, (3, 8, 8)), "a learnable 8x8 stand-in (smoke run)"
    if data_dir is not None:
        from hpscape.workers.data import DatasetUnavailableError, load_dataset

        try:
            data = load_dataset("cifar10", device=device, data_dir=data_dir, download=False)
            return data, f"CIFAR-10 from {data_dir}"
        except DatasetUnavailableError as exc:
            print(f"  CIFAR-10 unavailable ({exc}); using the learnable stand-in", flush=True)
    return _learnable(50_000, 10_000, device, (3, 32, 32)), "a learnable CIFAR-shaped stand-in (50,000 + 10,000 images)"
