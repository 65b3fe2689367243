"""One GPU, at most 8 minutes: the figures a CIFAR-10 sweep's plan needs, and whether the fast path is trustworthy.

    bench/gpu_check.sh                      # on a machine with one NVIDIA GPU (stops at once without one)
    bench/gpu_check.sh --data-dir ~/data    # the agreement check on real CIFAR-10 instead of CIFAR-shaped data
    python bench/gpu_check.py --cpu-smoke   # every code path on a CPU with a tiny model (what the tests run)

It measures, on Shake-Shake 26 2x64d at batch 128 (the paper's network and batch):

1. training images/s of one trial, eager fp32 against the fast path (bf16 autocast + channels_last +
   torch.compile), and their ratio;
2. aggregate images/s of 1, 2 and 4 trials sharing the GPU through Ray's fractional GPUs (each trial 1/k of it,
   bf16 + channels_last, no compile so that every process starts in seconds);
3. bf16 against fp32 over the first 2 epochs of one fig2 cell (SGDW, alpha 2^-3, lambda 0.001, same seed): the
   per-epoch training loss and test error, within the tolerance below.

and writes the table to bench/results/gpu_check.md and .json. Targets on one H100/H200: >= 14,000 images/s for one
trial on the fast path, and >= 2x eager fp32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

NO_GPU_EXIT = 3
BUDGET_S = 8 * 60
AGREEMENT_TOLERANCE = 0.05  # bf16 and fp32 training losses per epoch within 5 % of each other
TARGET_IMAGES_PER_S, TARGET_RATIO = 14_000, 2.0


def _no_gpu(reason: str) -> None:
    print(f"gpu_check: no usable NVIDIA GPU ({reason}). It measures GPU throughput and the bf16 path; run it on a "
          "machine with one, after installing the CUDA build of torch 2.13.0 (README: one-GPU quick start). "
          "`python bench/gpu_check.py --cpu-smoke` runs its code paths on a CPU.", file=sys.stderr)
    raise SystemExit(NO_GPU_EXIT)


class Budget:
    """The 8-minute limit: each phase asks before it starts, and a phase that would not fit is skipped, saying so."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _config(settings: dict[str, Any], **changes: Any):
    from hpscape.workers.train import TrialConfig

    return TrialConfig(**{**settings, **changes})


def _steady_images_per_s(result) -> float:
    steady = [m.images_per_s for m in result.history[1:]] or [result.history[0].images_per_s]
    return statistics.median(steady)


FAST = "bf16 + channels_last + compile"


def throughput(settings: dict[str, Any], data, out: dict[str, Any], *, compile_model: bool) -> None:
    from hpscape.workers.train import train_trial

    # The smoke run skips torch.compile: on a CPU it takes minutes and measures nothing the GPU run needs.
    fast = {"precision": "bf16", "channels_last": True, "compile": compile_model}
    for name, changes in (("eager fp32", {}), (FAST if compile_model else FAST + " (smoke run: not compiled)", fast)):
        started = time.perf_counter()
        result = train_trial(_config(settings, **changes), dataset=data)
        out[name] = {"images_per_s": _steady_images_per_s(result), "wall_s": time.perf_counter() - started}
        print(f"  {name}: {out[name]['images_per_s']:,.0f} images/s ({out[name]['wall_s']:.0f} s)", flush=True)


def sharing(settings: dict[str, Any], images: int, shape: tuple[int, int, int], counts: tuple[int, ...], gpu: bool,
            out: dict[str, Any], budget: Budget) -> None:
    import ray

    ray.init(num_cpus=max(counts) + 1, num_gpus=1 if gpu else 0, include_dashboard=False,
             log_to_driver=False, configure_logging=False)

    @ray.remote
    def one_trial(config_values: dict[str, Any], n_images: int, shape: tuple[int, int, int]) -> float:
        sys.path.insert(0, str(REPO))
        from bench.gpu_data import cifar_shaped
        from hpscape.workers.train import TrialConfig, resolve_device, train_trial

        config = TrialConfig(**config_values)
        data = cifar_shaped(n_images, resolve_device(config.device), shape=shape)
        result = train_trial(config, dataset=data)
        return _steady_images_per_s(result)

    try:
        for k in counts:
            if budget.left() < 60:
                out[str(k)] = {"skipped": "the 8-minute budget ran out"}
                continue
            values = _config(settings, precision="bf16" if gpu else "fp32", channels_last=gpu).model_dump()
            share = {"num_gpus": 1 / k} if gpu else {"num_cpus": 1}
            started = time.perf_counter()
            speeds = ray.get([one_trial.options(**share).remote(values, images, shape)
                              for _ in range(k)])
            out[str(k)] = {"trials": k, "per_trial": speeds, "aggregate_images_per_s": sum(speeds),
                           "wall_s": time.perf_counter() - started}
            print(f"  {k} trial(s) sharing: {sum(speeds):,.0f} images/s in all", flush=True)
    finally:
        ray.shutdown()


def _decoupled_fig2_variant() -> str:
    """Figure 2's first decoupled variant (SGDW), read from the preset rather than written here."""
    from hpscape.landscapes import get_preset, get_variant

    return next(v for v in get_preset("fig2").variants if get_variant(v).decoupled)


def agreement(settings: dict[str, Any], data, out: dict[str, Any]) -> None:
    from hpscape.workers.train import train_trial

    cell = {"variant": _decoupled_fig2_variant(), "lr": 2.0**-3, "weight_decay": 0.001, "epochs": 2, "seed": 0}
    runs = {}
    for precision in ("fp32", "bf16"):
        result = train_trial(_config(settings, precision=precision, channels_last=precision == "bf16", **cell),
                             dataset=data)
        runs[precision] = [{"epoch": m.epoch, "train_loss": m.train_loss, "test_error": m.test_error}
                           for m in result.history]
    worst = max(abs(b["train_loss"] - a["train_loss"]) / max(abs(a["train_loss"]), 1e-12)
                for a, b in zip(runs["fp32"], runs["bf16"]))
    out.update({"cell": cell, "runs": runs, "max_relative_train_loss_difference": worst,
                "tolerance": AGREEMENT_TOLERANCE, "within": worst <= AGREEMENT_TOLERANCE})
    print(f"  bf16 vs fp32: training losses differ by at most {100 * worst:.2f} % (tolerance "
          f"{100 * AGREEMENT_TOLERANCE:.0f} %)", flush=True)


def report(results: dict[str, Any]) -> str:
    lines = [f"# GPU check: {results['device']}, torch {results['torch']}", "",
             f"{results['model']}, batch {results['batch_size']}, {results['data']}", "",
             "| measurement | value | target |", "|---|---|---|"]
    tp = results.get("throughput", {})
    eager = tp.get("eager fp32", {}).get("images_per_s")
    fast = next((row["images_per_s"] for name, row in tp.items() if name.startswith(FAST)), None)
    if eager:
        lines.append(f"| one trial, eager fp32 | {eager:,.0f} images/s | |")
    if fast:
        name = next(name for name in tp if name.startswith(FAST))
        lines.append(f"| one trial, {name} | {fast:,.0f} images/s | >= "
                     f"{TARGET_IMAGES_PER_S:,} images/s |")
    if eager and fast:
        lines.append(f"| fast path / eager fp32 | {fast / eager:.2f}x | >= {TARGET_RATIO:.0f}x |")
    for k, row in results.get("sharing", {}).items():
        if "skipped" in row:
            lines.append(f"| {k} trial(s) sharing the GPU | skipped: {row['skipped']} | |")
        else:
            share = f"1/{k} GPU each, bf16 + channels_last" if results["gpu"] else "1 CPU each, smoke run"
            lines.append(f"| {k} trial(s) sharing the {'GPU' if results['gpu'] else 'machine'} ({share}) | "
                         f"{row['aggregate_images_per_s']:,.0f} images/s in all | |")
    agree = results.get("agreement", {})
    if "within" in agree:
        lines.append(f"| bf16 vs fp32, 2 epochs of one fig2 cell: largest training-loss difference | "
                     f"{100 * agree['max_relative_train_loss_difference']:.2f} % | <= "
                     f"{100 * AGREEMENT_TOLERANCE:.0f} % |")
    for name, why in results.get("skipped", {}).items():
        lines.append(f"| {name} | skipped: {why} | |")
    if fast:
        lines += ["", f"Price a sweep with it: `hpscape run --preset cifar-overnight --plan --throughput {fast:.0f}` "
                  "(for 26 2x64d; 2x32d is faster, so this over-estimates cifar-overnight)."]
    lines.append(f"\nTotal wall time: {results['wall_s']:.0f} s.")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None, help="where cifar-10-python.tar.gz is (optional)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "gpu_check")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="run every phase on the CPU with a tiny model and a few images (tests the code)")
    args = parser.parse_args()

    started = time.monotonic()
    budget = Budget(BUDGET_S)
    import torch

    from bench.gpu_data import cifar_or_shaped, cifar_shaped

    gpu = not args.cpu_smoke
    if gpu and not torch.cuda.is_available():
        _no_gpu("torch.cuda.is_available() is False" + ("" if torch.version.cuda else
                                                         f": torch {torch.__version__} is a CPU build"))
    device = torch.device("cuda" if gpu else "cpu")
    model = "shake_shake_26_2x64d" if gpu else "shake_shake_8_2x8d"
    images = 25_600 if gpu else 256
    shape = (3, 32, 32) if gpu else (3, 8, 8)
    settings: dict[str, Any] = {"model": model, "batch_size": 128 if gpu else 64, "epochs": 3, "device": str(device),
                                "variant": _decoupled_fig2_variant(), "lr": 0.05, "weight_decay": 5e-4,
                                "telemetry": False}
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if gpu else "CPU (smoke run: tiny model)",
        "torch": torch.__version__, "gpu": gpu, "model": model, "batch_size": settings["batch_size"],
        "data": f"random CIFAR-shaped images ({images} per epoch) for throughput", "skipped": {},
    }
    print("1/3 throughput of one trial", flush=True)
    results["throughput"] = {}
    throughput(settings, cifar_shaped(images, device, shape=shape), results["throughput"], compile_model=gpu)
    print("2/3 trials sharing the GPU", flush=True)
    results["sharing"] = {}
    if budget.left() > 120:
        sharing({**settings, "epochs": 2}, images // 2, shape, (1, 2, 4) if gpu else (1, 2), gpu, results["sharing"],
                budget)
    else:
        results["skipped"]["sharing"] = "the 8-minute budget ran out"
    print("3/3 bf16 against fp32 on one fig2 cell", flush=True)
    if budget.left() > 60:
        data, what = cifar_or_shaped(args.data_dir, device, tiny=not gpu)
        results["agreement"] = {"data": what}
        agreement(settings, data, results["agreement"])
    else:
        results["skipped"]["agreement"] = "the 8-minute budget ran out"
    results["wall_s"] = time.monotonic() - started
    text = report(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(text)
    print(f"written: {args.out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
