"""Training throughput (images/s) of the real trainer: eager fp32 against the fast path, measured in the same run.

    python bench/train_throughput.py --model shake_shake_26_2x64d --batch-size 128 --device cuda
    python bench/train_throughput.py --model shake_shake_26_2x32d --batch-size 128 --device cpu --images 1024
    python bench/train_throughput.py --model shake_shake_8_2x16d --shape digits --device cpu

Random tensors of the dataset's shape stand in for the data (throughput does not depend on pixel values), so no download
is needed. Each path trains `--epochs` epochs of `--images` images through `hpscape.workers.train.train_trial`;
the first epoch is warm-up (cudnn autotuning, torch.compile) and is left out of the figure.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from hpscape.landscapes.variants import DEFAULT_VARIANT  # noqa: E402
from hpscape.workers.data import Augmentation, DeviceDataset  # noqa: E402
from hpscape.workers.train import TrialConfig, resolve_device, train_trial  # noqa: E402

_SHAPES = {  # (channels, size, augmentation) as the real datasets have them
    "cifar": (3, 32, Augmentation(flip=True, pad=4)),
    "digits": (1, 8, Augmentation(flip=False, pad=0)),
}
_TRAIN_SIZE = {"cifar": 50_000, "digits": 1437}  # images per epoch of the real dataset


def random_dataset(shape: str, images: int, device: torch.device) -> DeviceDataset:
    channels, size, augmentation = _SHAPES[shape]
    g = torch.Generator().manual_seed(0)
    return DeviceDataset(
        name=f"random-{shape}",
        train_x=torch.randn(images, channels, size, size, generator=g).to(device),
        train_y=torch.randint(0, 10, (images,), generator=g).to(device),
        test_x=torch.randn(256, channels, size, size, generator=g).to(device),
        test_y=torch.randint(0, 10, (256,), generator=g).to(device),
        num_classes=10,
        in_channels=channels,
        image_size=size,
        augmentation=augmentation,
    )


def measure(config: TrialConfig, data: DeviceDataset) -> float:
    result = train_trial(config, dataset=data)
    steady = [m.images_per_s for m in result.history[1:]] or [result.history[0].images_per_s]
    return statistics.median(steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="shake_shake_26_2x32d")
    parser.add_argument("--shape", choices=sorted(_SHAPES), default="cifar")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=None, help="images per epoch (default: 25600 GPU, 1024 CPU)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per path; the first is warm-up")
    parser.add_argument("--paths", default="eager,bf16,fast",
                        help="comma-separated subset of: eager (fp32), bf16 (+ channels_last), fast (+ torch.compile)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    images = args.images or (25_600 if device.type == "cuda" else 1024)
    data = random_dataset(args.shape, images, device)
    common = dict(model=args.model, dataset=data.name, variant=DEFAULT_VARIANT, lr=0.05, weight_decay=5e-4,
                  epochs=args.epochs, batch_size=args.batch_size, device=str(device))
    wanted = set(args.paths.split(","))
    unknown = wanted - {"eager", "bf16", "fast"}
    if unknown:
        parser.error(f"--paths: unknown {', '.join(sorted(unknown))}; choose from eager, bf16, fast")
    paths = {"eager fp32": TrialConfig(**common)}  # the baseline is always measured
    if "bf16" in wanted:
        paths["bf16 + channels_last"] = TrialConfig(**common, precision="bf16", channels_last=True)
    if "fast" in wanted:
        paths["fast (bf16 + channels_last + compile)"] = TrialConfig.fast(**common)

    rates = {name: measure(config, data) for name, config in paths.items()}
    baseline = rates["eager fp32"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    table = Table(title=f"{args.model}, batch {args.batch_size}, {args.shape}-shaped, {name}, "
                        f"torch {torch.__version__}")
    dataset = "CIFAR-10" if args.shape == "cifar" else "digits"
    for column in ("path", "images/s", "× eager fp32", f"100 epochs of {dataset}"):
        table.add_column(column, justify="right")
    for path, rate in rates.items():
        minutes = 100 * _TRAIN_SIZE[args.shape] / rate / 60
        table.add_row(path, f"{rate:,.0f}", f"{rate / baseline:.2f}", f"{minutes:,.1f} min")
    Console().print(table)


if __name__ == "__main__":
    main()
