"""Train one (variant, learning rate, weight decay) cell and print its metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hpscape.landscapes.variants import DEFAULT_VARIANT, VARIANT_NAMES
from hpscape.landscapes.vocabulary import DATASETS, SCHEDULES, validate_model_name
from hpscape.service.cli._common import console, describe_validation_error, fail_usage
from hpscape.service.settings import load_settings

_OPTION_NAMES = {
    "lr": "--lr",
    "weight_decay": "--weight-decay",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "label_noise": "--label-noise",
    "seed": "--seed",
    "momentum": "--momentum",
    "beta1": "--beta1",
    "beta2": "--beta2",
    "eps": "--eps",
    "rho": "--rho",
    "train_limit": "--train-limit",
}
# Choices in --help come from the registries (hpscape.landscapes), the only lists of them.
_VARIANTS = " | ".join(VARIANT_NAMES)
_DATASETS = " | ".join(DATASETS)
_SCHEDULES = " | ".join(SCHEDULES)


def train(
    lr: Annotated[float, typer.Option(help="Initial learning rate alpha.")],
    weight_decay: Annotated[float, typer.Option(help="Weight decay lambda (decoupled) "
                                                     "or L2 factor lambda' (sgd, adam).")],
    variant: Annotated[str, typer.Option(help=_VARIANTS)] = DEFAULT_VARIANT,
    dataset: Annotated[str, typer.Option(help=f"{_DATASETS} (digits is bundled)")] = "digits",
    model: Annotated[str, typer.Option(help="A registered model, see `hpscape models`.")] = "shake_shake_8_2x16d",
    epochs: Annotated[int, typer.Option(help="Epochs to train.")] = 10,
    batch_size: Annotated[int, typer.Option(help="Minibatch size.")] = 128,
    schedule: Annotated[str, typer.Option(help=_SCHEDULES)] = "cosine",
    normalized_decay: Annotated[bool, typer.Option(help="Treat --weight-decay as lambda_norm "
                                                        "(paper App. B.1).")] = False,
    label_noise: Annotated[float, typer.Option(help="Fraction of training labels randomized.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed (init, data order, augmentation, label noise).")] = 0,
    momentum: Annotated[float, typer.Option(help="SGD family: momentum mu.")] = 0.9,
    beta1: Annotated[float, typer.Option(help="Adam and AMSGrad: beta1.")] = 0.9,
    beta2: Annotated[float, typer.Option(help="Adam and AMSGrad: beta2.")] = 0.999,
    eps: Annotated[float | None, typer.Option(help="Adaptive families: epsilon (default: the family's).")] = None,
    rho: Annotated[float, typer.Option(help="RMSProp: rho.")] = 0.99,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda | cuda:N (default HPSCAPE_DEVICE).")] = None,
    fast: Annotated[bool, typer.Option(help="GPU fast path: bf16 autocast, channels_last, torch.compile.")] = False,
    train_limit: Annotated[int | None, typer.Option(help="Use only the first N training images.")] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option(help="Checkpoint every epoch here; "
                                                             "resume if one exists.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Dataset directory (default HPSCAPE_DATA_DIR).")] = None,
) -> None:
    """Train one (variant, learning rate, weight decay) cell and print its metrics."""
    settings = load_settings()
    if variant not in VARIANT_NAMES:
        fail_usage(f"--variant {variant!r} is not known; choose one of {_VARIANTS}")
    if schedule not in SCHEDULES:
        fail_usage(f"--schedule {schedule!r} is not known; choose one of {_SCHEDULES}")
    if dataset not in DATASETS:
        fail_usage(f"--dataset {dataset!r} is not known; choose one of {_DATASETS}")
    try:
        validate_model_name(model)
    except ValueError as exc:
        fail_usage(f"--model: {exc}")
    # Heavy imports (torch) only when the command runs.
    from hpscape.workers.data import DatasetUnavailableError
    from hpscape.workers.train import TrialConfig, train_trial

    values = dict(
        dataset=dataset, model=model, variant=variant, lr=lr, weight_decay=weight_decay, epochs=epochs,
        batch_size=batch_size, schedule=schedule, normalized_decay=normalized_decay, label_noise=label_noise,
        seed=seed, momentum=momentum, beta1=beta1, beta2=beta2, eps=eps, rho=rho, device=device or settings.device,
        train_limit=train_limit,
        data_dir=str(data_dir or settings.data_dir),
    )
    try:
        config = TrialConfig.fast(**values) if fast else TrialConfig(**values)
    except ValidationError as exc:
        fail_usage(describe_validation_error(exc, option_names=_OPTION_NAMES))

    table = Table(title=f"{variant}  lr={lr:g}  wd={weight_decay:g}  {model} on {dataset}")
    for column in ("epoch", "test err %", "test loss", "train loss", "train err %", "s/epoch", "img/s"):
        table.add_column(column, justify="right")

    progress = Progress(
        TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[last]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task("train", total=epochs, epoch=0, epochs=epochs, last="")

        def on_step(step: int, steps: int) -> None:
            done = progress.tasks[task].fields["epoch"]
            progress.update(task, completed=done + step / steps)

        def on_epoch(m) -> None:
            table.add_row(
                str(m.epoch), f"{100 * m.test_error:.2f}", f"{m.test_loss:.4f}", f"{m.train_loss:.4f}",
                f"{100 * m.train_error:.2f}", f"{m.epoch_seconds:.2f}", f"{m.images_per_s:,.0f}",
            )
            progress.update(task, completed=m.epoch, epoch=m.epoch, last=f"test err {100 * m.test_error:.2f}%")

        try:
            result = train_trial(config, on_epoch=on_epoch, on_step=on_step, checkpoint_dir=checkpoint_dir)
        except (ValueError, DatasetUnavailableError) as exc:  # bad names, a foreign checkpoint, data not there
            progress.stop()
            fail_usage(str(exc))
    console.print(table)
    if result.diverged:
        console.print(f"[bold yellow]diverged[/] at epoch {result.epochs_done}: the loss became NaN/inf "
                      "(try a smaller --lr or --weight-decay)")
    console.print(f"done in {result.wall_s:.1f} s")
