"""Training throughput (images/s) of the real trainer, each row against a baseline measured in the same run.

    python bench/train_throughput.py                              # CPU: the quick preset's step, one table
    python bench/train_throughput.py --images 512 --epochs 3      # the same, shorter
    python bench/train_throughput.py --rows telemetry --epochs 8  # the baseline and the telemetry-off row only
    python bench/train_throughput.py --model shake_shake_26_2x64d --batch-size 128 --device cuda
    python bench/train_throughput.py --suite paths --model shake_shake_26_2x32d --device cpu --images 1024

Two suites:

- ``cpu`` (the default on a CPU): the quick preset's model and batch size (``shake_shake_8_2x16d_bnhead``, batch 64,
  on digits-shaped 1x8x8 images, 10 classes). Baseline: eager fp32 with 1 thread (as a sweep worker runs, one core
  per trial), with telemetry on as every trial runs; then telemetry off (`hpscape.workers.telemetry` must cost under
  5 % of an epoch: the lines under the table say what it costs, from `--pairs` interleaved runs on / off), 2
  threads, channels_last, torch.compile (inductor, default mode and ``max-autotune-no-cudagraphs``), batch 32 and
  128, and bf16 autocast, each with 1 thread unless named.
- ``paths`` (the default on CUDA): eager fp32 against bf16 + channels_last and the fast path (+ torch.compile).

Random tensors of the dataset's shape stand in for the data (throughput does not depend on pixel values), so no download
is needed. Each row trains `--epochs` epochs of `--images` images through `hpscape.workers.train.train_trial`; the
first epoch is warm-up (cudnn autotuning, torch.compile) and is left out: images/s is the median of the other epochs'
training throughput (evaluation excluded). A row that fails (e.g. a compile mode the platform lacks) says why and
the others still run.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from hpscape.landscapes.presets import get_preset  # noqa: E402
from hpscape.landscapes.variants import DEFAULT_VARIANT  # noqa: E402
from hpscape.workers.data import Augmentation, DeviceDataset  # noqa: E402
from hpscape.workers.train import TrialConfig, resolve_device, train_trial  # noqa: E402

_SHAPES = {  # (channels, size, augmentation) as the real datasets have them
    "cifar": (3, 32, Augmentation(flip=True, pad=4)),
    "digits": (1, 8, Augmentation(flip=False, pad=0)),
}
_TRAIN_SIZE = {"cifar": 50_000, "digits": 1437}  # images per epoch of the real dataset
_MAX_AUTOTUNE = "max-autotune-no-cudagraphs"
_TELEMETRY_OFF = "telemetry off"


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


@dataclass
class Row:
    """One measured path: TrialConfig changes against the common settings, a thread count, a compile mode."""

    name: str
    changes: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None  # None: leave torch's thread count as it is
    compile_mode: str | None = None  # torch.compile's mode when the row compiles (None: the default mode)


@dataclass
class Measured:
    row: Row
    batch_size: int
    images_per_s: float | None = None  # None: the row failed
    wall_s: float = 0.0
    error: str = ""


@contextlib.contextmanager
def _threads(count: int | None) -> Iterator[None]:
    before = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _compile_mode(mode: str | None) -> Iterator[None]:
    """The trainer calls ``torch.compile(model)``; route it through `mode` for the duration of one row."""
    original = torch.compile
    if mode is not None:
        torch.compile = functools.partial(original, mode=mode)  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.compile = original  # type: ignore[assignment]


def measure(config: TrialConfig, data: DeviceDataset) -> float:
    result = train_trial(config, dataset=data)
    steady = [m.images_per_s for m in result.history[1:]] or [result.history[0].images_per_s]
    return statistics.median(steady)


def run_row(row: Row, common: dict[str, Any], data: DeviceDataset) -> Measured:
    config = TrialConfig(**{**common, **row.changes})
    out = Measured(row, config.batch_size)
    if config.compile:
        torch._dynamo.reset()  # each compiled row compiles afresh, in its own mode
    started = time.perf_counter()
    try:
        with _threads(row.threads), _compile_mode(row.compile_mode):
            out.images_per_s = measure(config, data)
    except Exception as exc:  # a row that cannot run on this platform is reported, not fatal
        out.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
    out.wall_s = time.perf_counter() - started
    return out


@dataclass
class Paired:
    """The steady epochs of one row in a paired comparison: images/s (wall clock), CPU seconds per epoch, and the CPU
    seconds spent inside `Telemetry`'s calls during each."""

    images_per_s: list[float] = field(default_factory=list)
    cpu_s: list[float] = field(default_factory=list)
    telemetry_s: list[float] = field(default_factory=list)


@contextlib.contextmanager
def _timed_telemetry(spent: list[float]) -> Iterator[None]:
    """Add the CPU time of every `Telemetry` call to spent[0], for as long as the block runs."""
    from hpscape.workers.telemetry import Telemetry

    names = ("start_epoch", "after_backward", "after_step", "finish_epoch")
    originals = {name: getattr(Telemetry, name) for name in names}

    def timed(method):
        @functools.wraps(method)
        def call(*args, **kwargs):
            started = time.thread_time()
            try:
                return method(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - started
        return call

    for name, method in originals.items():
        setattr(Telemetry, name, timed(method))
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(Telemetry, name, method)


def paired_throughput(a: Row, b: Row, common: dict[str, Any], data: DeviceDataset, pairs: int) -> tuple[Paired, Paired]:
    """The steady epochs of rows `a` and `b`, run in turn (a b, b a, a b, ...) so that drift cancels.

    Besides images/s, each epoch's CPU time of this thread (training and evaluation): with one torch thread every
    kernel runs on it, and CPU time does not count the time other processes held the core. And the CPU time inside
    the telemetry's own calls in the same epochs, the cost least moved by the machine's other load (it leaves out
    what the telemetry costs the rest of the step, such as caches it evicts, which the on / off ratios include).
    """
    measured = (Paired(), Paired())
    for pair in range(pairs):
        for index in ((0, 1) if pair % 2 == 0 else (1, 0)):
            row = (a, b)[index]
            marks: list[tuple[float, float]] = []
            spent = [0.0]
            with _threads(row.threads), _timed_telemetry(spent):
                result = train_trial(TrialConfig(**{**common, **row.changes}), dataset=data,
                                     on_epoch=lambda _m: marks.append((time.thread_time(), spent[0])))
            out = measured[index]
            out.images_per_s.extend(m.images_per_s for m in result.history[1:])
            out.cpu_s.extend(later[0] - earlier[0] for earlier, later in zip(marks, marks[1:]))
            out.telemetry_s.extend(later[1] - earlier[1] for earlier, later in zip(marks, marks[1:]))
    return measured


def cpu_rows(batch_size: int) -> list[Row]:
    """The quick preset's CPU step: baseline first, then one change at a time."""
    one = 1  # as a sweep worker runs: one core per trial
    return [
        Row(f"eager fp32 (baseline), batch {batch_size}", threads=one),
        Row(_TELEMETRY_OFF, {"telemetry": False}, threads=one),
        Row("eager fp32, 2 threads", threads=2),
        Row("channels_last", {"channels_last": True}, threads=one),
        Row("torch.compile (inductor, default mode)", {"compile": True}, threads=one),
        Row(f"torch.compile (inductor, {_MAX_AUTOTUNE})", {"compile": True}, threads=one, compile_mode=_MAX_AUTOTUNE),
        Row("batch 32", {"batch_size": 32}, threads=one),
        Row("batch 128", {"batch_size": 128}, threads=one),
        Row("bf16 autocast", {"precision": "bf16"}, threads=one),
    ]


def path_rows(wanted: set[str]) -> list[Row]:
    """The GPU comparison: eager fp32 (always, the baseline), bf16 + channels_last, the fast path."""
    rows = [Row("eager fp32")]
    if "bf16" in wanted:
        rows.append(Row("bf16 + channels_last", {"precision": "bf16", "channels_last": True}))
    if "fast" in wanted:
        rows.append(Row("fast (bf16 + channels_last + compile)",
                        {"precision": "bf16", "channels_last": True, "compile": True}))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", choices=("cpu", "paths"), default=None,
                        help="cpu: the quick preset's CPU step, one change per row; paths: eager / bf16 / fast "
                             "(default: cpu on a CPU, paths on CUDA)")
    parser.add_argument("--model", default=None,
                        help="default: the quick preset's model (cpu suite), shake_shake_26_2x32d (paths)")
    parser.add_argument("--shape", choices=sorted(_SHAPES), default=None,
                        help="default: digits (cpu suite), cifar (paths)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the quick preset's batch size (cpu suite), 128 (paths)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=None,
                        help="images per epoch (default: 25600 GPU, 1437 (one digits epoch) cpu suite, 1024 paths)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per row; the first is warm-up")
    parser.add_argument("--paths", default="eager,bf16,fast",
                        help="paths suite: comma-separated subset of: eager (fp32), bf16 (+ channels_last), "
                             "fast (+ torch.compile)")
    parser.add_argument("--pairs", type=int, default=4,
                        help="interleaved telemetry on / off runs for the telemetry cost line (0: skip it)")
    parser.add_argument("--rows", default=None,
                        help="keep only the rows whose name contains one of these comma-separated words (the "
                             "baseline, the first row, is always measured), e.g. --rows telemetry")
    args = parser.parse_args()

    device = resolve_device(args.device)
    suite = args.suite or ("paths" if device.type == "cuda" else "cpu")
    if suite == "cpu":
        quick = get_preset("quick")
        model = args.model or quick.model
        shape = args.shape or "digits"
        batch_size = args.batch_size or quick.batch_size
        images = args.images or (25_600 if device.type == "cuda" else _TRAIN_SIZE["digits"])
        rows = cpu_rows(batch_size)
        if device.type == "cuda":  # thread counts mean little there; keep the rows, drop the pinning
            rows = [Row(r.name, r.changes, None, r.compile_mode) for r in rows]
    else:
        model = args.model or "shake_shake_26_2x32d"
        shape = args.shape or "cifar"
        batch_size = args.batch_size or 128
        images = args.images or (25_600 if device.type == "cuda" else 1024)
        wanted = set(args.paths.split(","))
        unknown = wanted - {"eager", "bf16", "fast"}
        if unknown:
            parser.error(f"--paths: unknown {', '.join(sorted(unknown))}; choose from eager, bf16, fast")
        rows = path_rows(wanted)

    if args.rows:
        words = [w.strip().lower() for w in args.rows.split(",") if w.strip()]
        rows = rows[:1] + [r for r in rows[1:] if any(w in r.name.lower() for w in words)]
    data = random_dataset(shape, images, device)
    common = dict(model=model, dataset=data.name, variant=DEFAULT_VARIANT, lr=0.05, weight_decay=5e-4,
                  epochs=args.epochs, batch_size=batch_size, device=str(device))
    console = Console(width=None if sys.stdout.isatty() else 150)  # a log file gets the whole table on one line
    measured = []
    for row in rows:  # the baseline is the first row and always measured
        result = run_row(row, common, data)
        done = f"{result.images_per_s:,.0f} images/s" if result.images_per_s is not None else result.error
        console.print(f"[dim]{row.name}: {done} ({result.wall_s:.0f} s wall)[/dim]")
        measured.append(result)

    baseline = measured[0].images_per_s
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"CPU, {torch.get_num_threads()} threads available, {torch.backends.cpu.get_cpu_capability()}"
    table = Table(title=f"{model}, {shape}-shaped, {images} images x {args.epochs} epochs (first is warm-up), "
                        f"{where}, torch {torch.__version__}")
    dataset = "CIFAR-10" if shape == "cifar" else "digits"
    for column in ("path", "threads", "batch", "images/s", "× baseline", f"100 epochs of {dataset}",
                   "wall"):
        table.add_column(column, justify="right")
    for result in measured:
        threads = str(result.row.threads) if result.row.threads is not None else str(torch.get_num_threads())
        if result.images_per_s is None:
            table.add_row(result.row.name, threads, str(result.batch_size), "failed", result.error, "",
                          f"{result.wall_s:.0f} s")
            continue
        ratio = f"{result.images_per_s / baseline:.2f}" if baseline else "n/a"
        minutes = 100 * _TRAIN_SIZE[shape] / result.images_per_s / 60
        table.add_row(result.row.name, threads, str(result.batch_size), f"{result.images_per_s:,.0f}", ratio,
                      f"{minutes:,.1f} min", f"{result.wall_s:.0f} s")
    console.print(table)
    telemetry_row = next((m.row for m in measured if m.row.name == _TELEMETRY_OFF and m.images_per_s), None)
    if telemetry_row is not None and args.pairs > 0:
        # Two rows measured one after the other differ by whatever else the machine did meanwhile (on a shared CPU,
        # easily 20 %): the cost of telemetry, about 1 %, needs its own comparison, interleaved.
        on, off = paired_throughput(Row("telemetry on", threads=telemetry_row.threads), telemetry_row, common, data,
                                    args.pairs)
        inside = statistics.median(t / (c - t) for t, c in zip(on.telemetry_s, on.cpu_s, strict=True))
        cpu = statistics.median(on.cpu_s) / statistics.median(off.cpu_s)
        wall = statistics.median(off.images_per_s) / statistics.median(on.images_per_s)
        console.print(f"telemetry (the budget is +5 % per epoch), medians of {len(on.cpu_s)} epochs each, "
                      f"{args.pairs} interleaved runs on / off:\n"
                      f"  inside its calls     {100 * inside:+.1f} % of the rest of the same epochs' CPU time\n"
                      f"  CPU time per epoch   {cpu:.3f} x telemetry off ({100 * (cpu - 1):+.1f} %)\n"
                      f"  wall clock, training {wall:.3f} x telemetry off ({100 * (wall - 1):+.1f} %; the least "
                      "reliable on a shared machine)")


if __name__ == "__main__":
    main()
