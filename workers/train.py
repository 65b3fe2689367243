"""Train and evaluate one (variant, learning rate, weight decay) cell, top to bottom in one place.

`train_trial` is the only entry point: the CLI's `hpscape train`, the Ray Tune trainable and the benchmarks all call it.
It checkpoints after every epoch (atomically) and resumes from the checkpoint it finds, bit-identically on CPU. Each
epoch also records what the scale-invariant weights did (their norms, the angle they turn per step against its
equilibrium, the gradient's norm and the decay's share of the step: `hpscape.workers.telemetry`).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hpscape.landscapes.record import DIVERGED_LOSS, DIVERGED_VALUE
from hpscape.landscapes.variants import DEFAULT_VARIANT, get_variant
from hpscape.workers.data import DeviceDataset, load_dataset, normalized, steps_per_epoch, test_batches, train_batches
from hpscape.workers.models import create_model
from hpscape.workers.optim import build_optimizer, build_scheduler
from hpscape.workers.optim.decay import scheduled_weight_decay
from hpscape.workers.optim.schedules import restart_period_epochs
from hpscape.workers.telemetry import Telemetry, histogram_epochs

CHECKPOINT_FILE = "checkpoint.pt"
_EVAL_BATCH = 1000  # evaluation has no gradients, so big batches are cheap and cut Python overhead


class TrialConfig(BaseModel):
    """Everything that determines one training run; two equal configs give the same result on CPU."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # What is trained on what.
    dataset: str = "digits"
    model: str = "shake_shake_8_2x16d"
    label_noise: float = Field(default=0.0, ge=0.0, lt=1.0)  # fraction of training labels randomized (docs/science.md)
    train_limit: int | None = Field(default=None, ge=1)  # keep only the first N training images (tests, benchmarks)
    # The landscape cell.
    variant: str = DEFAULT_VARIANT  # a name of hpscape.landscapes.variants.VARIANTS
    lr: float = Field(gt=0.0, allow_inf_nan=False)  # alpha, the initial learning rate
    weight_decay: float = Field(ge=0.0, allow_inf_nan=False)  # lambda (decoupled) or lambda' (L2), raw per step
    # weight_decay is lambda_norm: lambda = lambda_norm * sqrt(b / (B * T)), for the decoupled variants only (an L2 or
    # torch-AdamW factor stays raw); T is `epochs`, or the current restart period T_i under warm_restarts.
    normalized_decay: bool = False
    # The schedule (docs/science.md, "Figure 2": batch 128, cosine per iteration, momentum 0.9).
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=1)
    schedule: str = "cosine"
    # "step": the epochs after which the lr is multiplied by step_gamma (an epoch-m milestone drops it from epoch m+1
    # on); None drops at 50 % and 75 % of the iterations. A milestone past `epochs` is never reached (a sweep over
    # epochs checks its milestones against the longest trial only).
    step_milestones: tuple[int, ...] | None = None
    step_gamma: float = Field(default=0.1, gt=0.0, le=1.0, allow_inf_nan=False)
    restart_period: int = Field(default=10, ge=1)  # warm_restarts: T_0, the first period, in epochs
    restart_mult: int = Field(default=2, ge=1)  # warm_restarts: T_mult, each period this many times the one before
    # The optimizer's own hyperparameters (docs/science.md, "The update rules"); each family reads its own and
    # ignores the others.
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)  # SGD family: heavy ball, dampening 0, no Nesterov
    beta1: float = Field(default=0.9, ge=0.0, lt=1.0)  # Adam / AMSGrad first moment
    beta2: float = Field(default=0.999, ge=0.0, lt=1.0)  # Adam / AMSGrad second moment
    eps: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)  # None: the family's (1e-8; AdaGrad 1e-10)
    rho: float = Field(default=0.99, ge=0.0, lt=1.0)  # RMSProp's squared-gradient average
    seed: int = Field(default=0, ge=0)
    # Where and how fast; none of these changes the mathematics, only the arithmetic precision.
    device: str = "auto"  # auto picks cuda when available
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16 autocast for the forward/backward; weights stay fp32
    channels_last: bool = False  # NHWC memory layout, faster convolutions on tensor cores
    compile: bool = False  # torch.compile the model (minutes of warm-up; pays off over long runs on GPU)
    data_dir: str | None = None  # where cifar-10-python.tar.gz lives (HPSCAPE_DATA_DIR at the edges)
    # Measure the weights' norms and effective step each epoch (hpscape.workers.telemetry); off only to time its cost.
    telemetry: bool = True

    @field_validator("step_milestones")
    @classmethod
    def _milestones(cls, value: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("step_milestones must list at least one epoch, or be None for drops at 50 % and 75 %")
        if value[0] < 1 or any(b <= a for a, b in zip(value, value[1:])):
            raise ValueError(f"step_milestones must be increasing epochs >= 1, got {list(value)}")
        return value

    @classmethod
    def fast(cls, **values: Any) -> TrialConfig:
        """The GPU fast path: bf16 autocast, channels_last and torch.compile."""
        return cls(**{"precision": "bf16", "channels_last": True, "compile": True, **values})


@dataclass
class EpochMetrics:
    epoch: int
    test_error: float
    test_loss: float
    train_loss: float
    train_error: float
    epoch_seconds: float
    images_per_s: float
    lr_t: float = math.nan  # the learning rate of the epoch's last step (alpha * eta_t); NaN in 0.1 checkpoints
    diverged: bool = False
    # Telemetry (hpscape.workers.telemetry defines each): None where not measured (telemetry off, a checkpoint
    # written before it existed, a value that was not finite, or no closed form for angular_update_theory).
    weight_norm: float | None = None  # |all scale-invariant weights| after the epoch's last step
    weight_norm_stages: list[float | None] | None = None  # the same per stage, stem first
    weight_norm_last: float | None = None  # |the last layer's weight|
    angular_update: float | None = None  # mean angle (radians) per step of the scale-invariant weights
    angular_update_theory: float | None = None  # mean over the steps of the equilibrium at each step's eta_t
    grad_norm: float | None = None  # mean over the steps of |loss gradient|, all parameters
    decay_share: float | None = None  # mean over the steps of |decay step| / |gradient step|


@dataclass
class TrialResult:
    config: dict[str, Any]
    epochs_done: int
    diverged: bool
    history: list[EpochMetrics] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def final(self) -> EpochMetrics:
        return self.history[-1]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "final": asdict(self.final) if self.history else None}


EpochCallback = Callable[[EpochMetrics], None]
StepCallback = Callable[[int, int], None]  # (step within epoch, steps per epoch)
ResumeCallback = Callable[[list[EpochMetrics]], None]
WeightsCallback = Callable[[int, dict[str, Any]], None]  # (epoch, Telemetry.weight_samples())


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available here; use --device cpu (or auto)")
    return device


def train_trial(
    config: TrialConfig,
    *,
    on_epoch: EpochCallback | None = None,
    on_step: StepCallback | None = None,
    on_resume: ResumeCallback | None = None,
    on_weights: WeightsCallback | None = None,
    checkpoint_dir: str | Path | None = None,
    dataset: DeviceDataset | None = None,
) -> TrialResult:
    """Train `config` to its last epoch (or until it diverges); resume from `checkpoint_dir` if it holds a checkpoint.

    `on_epoch` is called after each epoch's checkpoint is on disk, so a crash inside it loses nothing; after a resume,
    `on_resume` receives the epochs restored from the checkpoint (a crash may have cut off their `on_epoch`).
    `dataset` lets a caller reuse tensors already on the device; it must be what `config` would load. With telemetry
    on, `on_weights` gets samples of the weights (for histograms) at the epochs `histogram_epochs` picks, just before
    that epoch's `on_epoch`.
    """
    started = time.perf_counter()
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)  # model init and the Shake-Shake coefficients draw from the global RNG
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

    data = dataset or load_dataset(
        config.dataset,
        device=device,
        data_dir=config.data_dir,
        label_noise=config.label_noise,
        seed=config.seed,
        train_limit=config.train_limit,
    )
    model = create_model(config.model, num_classes=data.num_classes, in_channels=data.in_channels).to(device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)

    steps = steps_per_epoch(data.train_size, config.batch_size)
    decay_at, decay_varies = _decay_schedule(config, data.train_size, steps)
    optimizer = build_optimizer(
        config.variant, model.parameters(), lr=config.lr, weight_decay=decay_at(0), momentum=config.momentum,
        betas=(config.beta1, config.beta2), eps=config.eps, rho=config.rho,
    )
    scheduler = build_scheduler(
        config.schedule, optimizer, total_steps=config.epochs * steps, steps_per_epoch=steps,
        milestones=_milestone_fractions(config), gamma=config.step_gamma, t0_epochs=config.restart_period,
        t_mult=config.restart_mult,
    )
    data_rng = torch.Generator(device=device).manual_seed(config.seed)  # shuffling and augmentation
    telemetry = (
        Telemetry(model, normalized(data, data.train_x[:2]), variant=config.variant, lr=config.lr,
                  momentum=config.momentum, beta1=config.beta1)
        if config.telemetry else None
    )

    history: list[EpochMetrics] = []
    start_epoch = 0
    checkpoint_path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None
    if checkpoint_path is not None and checkpoint_path.exists():
        start_epoch, history = _load_checkpoint(checkpoint_path, config, model, optimizer, scheduler, data_rng)
        if on_resume is not None:
            on_resume(list(history))
        if history and history[-1].diverged:
            return TrialResult(config.model_dump(), start_epoch, True, history, time.perf_counter() - started)
    # The checkpoint's param groups carry the decay of the step it stopped at; set it from the rule all the same.
    _set_weight_decay(optimizer, decay_at(start_epoch * steps))

    forward = torch.compile(model) if config.compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")

    for epoch in range(start_epoch + 1, config.epochs + 1):
        epoch_started = time.perf_counter()
        model.train()
        # Sums stay on the device: one host sync per epoch instead of one per step.
        loss_sum = torch.zeros((), device=device)
        wrong_sum = torch.zeros((), device=device, dtype=torch.long)
        if telemetry is not None:
            telemetry.start_epoch()
        for step, (images, labels) in enumerate(train_batches(data, config.batch_size, data_rng), start=1):
            if decay_varies:  # normalized decay under warm restarts: lambda follows the current period T_i
                _set_weight_decay(optimizer, decay_at((epoch - 1) * steps + step - 1))
            images = images.contiguous(memory_format=memory_format)
            with autocast:
                logits = forward(images)
            loss = F.cross_entropy(logits.float(), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            last_lr = optimizer.param_groups[0]["lr"]
            if telemetry is not None:
                telemetry.after_backward()
            optimizer.step()
            if telemetry is not None:
                telemetry.after_step(last_lr, optimizer.param_groups[0]["weight_decay"])
            scheduler.step()
            loss_sum += loss.detach() * labels.numel()
            wrong_sum += (logits.detach().argmax(1) != labels).sum()
            if on_step is not None:
                on_step(step, steps)
        train_loss = loss_sum.item() / data.train_size
        train_error = wrong_sum.item() / data.train_size
        measured = asdict(telemetry.finish_epoch()) if telemetry is not None else {}
        train_seconds = time.perf_counter() - epoch_started

        if math.isfinite(train_loss):
            test_loss, test_error = evaluate(forward, data, memory_format=memory_format, autocast=autocast)
        else:
            test_loss, test_error = math.nan, math.nan
        diverged = not (math.isfinite(train_loss) and math.isfinite(test_loss))
        if diverged:  # defined values, so the landscape can mark the cell instead of crashing on NaN
            train_loss, test_loss, test_error = DIVERGED_LOSS, DIVERGED_LOSS, DIVERGED_VALUE
        metrics = EpochMetrics(
            epoch=epoch,
            test_error=test_error,
            test_loss=test_loss,
            train_loss=train_loss,
            train_error=train_error,
            lr_t=last_lr,
            epoch_seconds=time.perf_counter() - epoch_started,
            images_per_s=data.train_size / train_seconds,
            diverged=diverged,
            **measured,
        )
        history.append(metrics)
        if checkpoint_path is not None:
            _save_checkpoint(checkpoint_path, config, epoch, history, model, optimizer, scheduler, data_rng)
        if on_weights is not None and telemetry is not None and epoch in histogram_epochs(config.epochs):
            on_weights(epoch, telemetry.weight_samples())
        if on_epoch is not None:
            on_epoch(metrics)
        if diverged:
            break

    return TrialResult(
        config=config.model_dump(),
        epochs_done=history[-1].epoch if history else 0,
        diverged=bool(history and history[-1].diverged),
        history=history,
        wall_s=time.perf_counter() - started,
    )


def _decay_schedule(config: TrialConfig, train_size: int, steps: int) -> tuple[Callable[[int], float], bool]:
    """The raw decay factor of iteration t (0-based), and whether it changes during the run.

    Normalized decay (decoupled variants only, see `scheduled_weight_decay`) uses T = the run's epochs, except under
    warm restarts, where T is the current period T_i in epochs: lambda is recomputed at each restart (paper B.2).
    """
    restarts = config.schedule == "warm_restarts"
    decay_form = get_variant(config.variant).decay

    def decay_at(step: int) -> float:
        period = (
            restart_period_epochs(step, steps_per_epoch=steps, t0_epochs=config.restart_period,
                                  t_mult=config.restart_mult)
            if restarts else config.epochs
        )
        return scheduled_weight_decay(
            config.weight_decay, decay_form=decay_form, normalized=config.normalized_decay,
            batch_size=config.batch_size, train_size=train_size, period_epochs=period,
        )

    varies = restarts and decay_at(0) != decay_at(config.epochs * steps - 1)
    return decay_at, varies


def _set_weight_decay(optimizer: torch.optim.Optimizer, weight_decay: float) -> None:
    for group in optimizer.param_groups:
        group["weight_decay"] = weight_decay


def _milestone_fractions(config: TrialConfig) -> tuple[float, ...]:
    """The step schedule's milestones as fractions of the run (what `build_scheduler` takes).

    Epoch m becomes m / epochs, i.e. iteration m * steps_per_epoch: the lr drops from epoch m + 1 on. Milestones
    past the run's epochs are never reached and are left out; None keeps the 50 % and 75 % of the iterations.
    """
    if config.step_milestones is None:
        return (0.5, 0.75)
    return tuple(m / config.epochs for m in config.step_milestones if m <= config.epochs)


@torch.no_grad()
def evaluate(
    forward: Callable[[torch.Tensor], torch.Tensor],
    data: DeviceDataset,
    *,
    memory_format: torch.memory_format = torch.contiguous_format,
    autocast: torch.autocast | None = None,
) -> tuple[float, float]:
    """Test loss and test error of the model in eval mode (Shake-Shake mixes 0.5/0.5 there)."""
    module = getattr(forward, "_orig_mod", forward)
    was_training = getattr(module, "training", False)
    if hasattr(module, "eval"):
        module.eval()
    loss_sum = torch.zeros((), device=data.test_x.device)
    wrong_sum = torch.zeros((), device=data.test_x.device, dtype=torch.long)
    for images, labels in test_batches(data, _EVAL_BATCH):
        images = images.contiguous(memory_format=memory_format)
        if autocast is not None:
            with autocast:
                logits = forward(images)
        else:
            logits = forward(images)
        loss_sum += F.cross_entropy(logits.float(), labels, reduction="sum")
        wrong_sum += (logits.argmax(1) != labels).sum()
    if was_training:
        module.train()
    return loss_sum.item() / data.test_size, wrong_sum.item() / data.test_size


def _rng_state(data_rng: torch.Generator) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "data": data_rng.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _save_checkpoint(path, config, epoch, history, model, optimizer, scheduler, data_rng) -> None:
    payload = {
        "config": config.model_dump(),
        "epoch": epoch,
        "history": [asdict(m) for m in history],
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(data_rng),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a crash mid-write leaves the previous checkpoint intact


def _load_checkpoint(path, config, model, optimizer, scheduler, data_rng) -> tuple[int, list[EpochMetrics]]:
    payload = torch.load(path, map_location="cpu", weights_only=False)
    # A field the checkpoint's version did not have yet took its default then.
    defaults = {name: f.default for name, f in TrialConfig.model_fields.items() if not f.is_required()}
    saved = {k: v for k, v in {**defaults, **payload["config"]}.items() if k not in _SPEED_ONLY_FIELDS}
    wanted = {k: v for k, v in config.model_dump().items() if k not in _SPEED_ONLY_FIELDS}
    if saved != wanted:
        differing = sorted(k for k in wanted if saved.get(k) != wanted[k])
        raise ValueError(
            f"checkpoint {path} belongs to a different trial (fields differ: {', '.join(differing)}); "
            "delete it or point checkpoint_dir elsewhere"
        )
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    scheduler.load_state_dict(payload["scheduler"])
    rng = payload["rng"]
    torch.set_rng_state(rng["torch"])
    data_rng.set_state(rng["data"])  # generator states are CPU byte tensors on every device
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    history = [EpochMetrics(**m) for m in payload["history"]]
    return payload["epoch"], history


# A checkpoint may be resumed on another device or with other speed settings, and with telemetry on or off (it only
# watches); the trial itself is the same.
_SPEED_ONLY_FIELDS = frozenset({"device", "precision", "channels_last", "compile", "data_dir", "telemetry"})
