"""Telemetry (hpscape.workers.telemetry): which weights are scale-invariant, what each measurement returns on steps
whose answer is known, and a real run whose effective step settles at the equilibrium docs/science.md predicts."""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import asdict

import numpy as np
import pytest
import torch
from torch import nn

from hpscape.landscapes.variants import get_variant
from hpscape.landscapes.vocabulary import DATASET_SIZES, HISTORY_FIELDS
from hpscape.workers.mechanism import effective_decay
from hpscape.workers.models import create_model
from hpscape.workers.optim import build_optimizer, build_scheduler
from hpscape.workers.telemetry import (
    Telemetry,
    histogram_epochs,
    last_layer,
    network_stages,
    scale_invariant_layers,
)
from hpscape.workers.train import EpochMetrics, TrialConfig, train_trial

TELEMETRY_FIELDS = ("weight_norm", "weight_norm_stages", "weight_norm_last", "angular_update",
                    "angular_update_theory", "grad_norm", "decay_share")


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a sweep worker runs: one core per trial, one reduction order
    yield
    torch.set_num_threads(threads)


def _layers(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _invariant_numerically(model: nn.Module, layer: nn.Module, images: torch.Tensor) -> bool:
    """Does scaling `layer`'s weight by 3 leave the training-mode output unchanged? (The definition itself.)

    BatchNorm's eps is set near 0 in both copies, so that only a real dependence on the scale shows.
    """
    index = next(i for i, m in enumerate(model.modules()) if m is layer)
    model = copy.deepcopy(model)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eps = 1e-12
    scaled = copy.deepcopy(model)
    with torch.no_grad():
        list(scaled.modules())[index].weight.mul_(3.0)
    model.train()
    scaled.train()
    with torch.random.fork_rng():
        torch.manual_seed(1)  # the same Shake-Shake coefficients for both
        reference = model(images)
        torch.manual_seed(1)
        other = scaled(images)
    return torch.allclose(reference, other, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------ which weights are scale-invariant


@pytest.mark.parametrize(("name", "head_invariant"), [("shake_shake_8_2x16d_bnhead", True),
                                                      ("shake_shake_8_2x16d", False)])
def test_the_data_flow_finds_exactly_the_scale_invariant_weights(name, head_invariant):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=1)
    images = torch.randn(16, 1, 8, 8)
    found = scale_invariant_layers(model, images[:2])
    head = last_layer(model, images[:2])
    assert isinstance(head, nn.Linear) and head.out_features == 10
    # Every convolution feeds a BatchNorm (the shortcut's two 1x1 convolutions through a concatenation); the head is
    # invariant only when it batch-normalizes the logits.
    convolutions = [m for m in _layers(model) if isinstance(m, nn.Conv2d)]
    assert {id(m) for m in found} == {id(m) for m in convolutions} | ({id(head)} if head_invariant else set())
    for layer in _layers(model):  # ... and the definition agrees, layer by layer
        assert _invariant_numerically(model, layer, images) == any(layer is m for m in found)
    assert len(network_stages(model)) == 4, "stem and three stages"


def test_an_output_that_also_feeds_a_sum_is_not_scale_invariant():
    class Toy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Conv2d(1, 2, 1), nn.Conv2d(1, 2, 1)
            self.joint = nn.BatchNorm2d(4)  # a and b concatenated, then normalized: both invariant
            self.c = nn.Conv2d(4, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.joint(torch.cat([self.a(x), self.b(x)], dim=1))
            z = self.c(y)
            return self.bn(z) + z  # c also feeds a sum: scaling it changes the output

    model = Toy()
    assert [id(m) for m in scale_invariant_layers(model, torch.randn(2, 1, 3, 3))] == [id(model.a), id(model.b)]


def test_tracing_changes_nothing_in_the_model():
    model = create_model("shake_shake_8_2x16d_bnhead", num_classes=10, in_channels=1).train()
    before = copy.deepcopy(model.state_dict())
    images = torch.randn(2, 1, 8, 8)
    rng = torch.get_rng_state()
    scale_invariant_layers(model, images)
    assert model.training and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "BatchNorm statistics untouched"


# ------------------------------------------------------------------------ the measurements on known steps


class _Normalized(nn.Module):
    def __init__(self, dim: int = 4096):
        super().__init__()
        self.linear = nn.Linear(dim, 1, bias=False)
        self.norm = nn.BatchNorm1d(1)

    def forward(self, x):
        return self.norm(self.linear(x))


@pytest.mark.parametrize("angle", [1e-4, 1e-2, 0.3])
def test_the_angle_is_exact_down_to_small_steps(angle):
    # Turn the weight by a known angle and shrink it by as much (decay and rotation are of one size at equilibrium):
    # the measured angle is that angle, even at 1e-4 rad, where arccos of a float32 cosine (1 - 5e-9) reads 0 or 3e-4.
    torch.manual_seed(0)
    model = _Normalized()
    telemetry = Telemetry(model, torch.randn(2, 4096), variant="sgdw", lr=0.1)
    weight = model.linear.weight
    telemetry.start_epoch()
    for _ in range(3):
        with torch.no_grad():
            w = weight.detach().double()
            u = torch.randn_like(w)
            u -= (u * w).sum() / (w * w).sum() * w
            u *= w.norm() / u.norm()
            weight.copy_(((1 - angle) * (math.cos(angle) * w + math.sin(angle) * u)).float())
        for p in model.parameters():
            p.grad = torch.ones_like(p)
        telemetry.after_backward()
        telemetry.after_step(0.1, 0.0)
    measured = telemetry.finish_epoch()
    assert measured.angular_update == pytest.approx(angle, rel=1e-3)
    assert measured.weight_norm == pytest.approx(weight.norm().item(), rel=1e-6)
    assert measured.weight_norm_last == measured.weight_norm, "the last layer is that weight"
    assert measured.grad_norm == pytest.approx(math.sqrt(4096 + 2), rel=1e-6), "all parameters, BN's too"


@pytest.mark.parametrize("variant", ["sgd", "sgdw", "adamw", "adamw-torch"])
def test_the_decay_share_splits_the_step_as_documented(variant):
    # One step from a zero momentum buffer with a known gradient g: SGDW's step is -lr*g - eta*lambda*theta (so the
    # share is eta*lambda*|theta| / (lr*|g|)); SGD + L2's is |lambda' * theta| / |g|; the Adam family's gradient step
    # is the bias-corrected first Adam step, lr * g / (|g| + eps) per coordinate.
    torch.manual_seed(0)
    model = _Normalized(64)
    alpha, eta, decay = 0.2, 0.5, 0.03
    optimizer = build_optimizer(variant, model.parameters(), lr=alpha, weight_decay=decay)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", alpha)
        group["lr"] = alpha * eta
    telemetry = Telemetry(model, torch.randn(2, 64), variant=variant, lr=alpha)
    theta = torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])
    telemetry.start_epoch()
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    g = torch.cat([p.grad.reshape(-1) for p in model.parameters()])
    telemetry.after_backward()
    optimizer.step()
    telemetry.after_step(alpha * eta, decay)
    share = telemetry.finish_epoch().decay_share
    lr_t = alpha * eta
    expected = {
        "sgd": decay * theta.norm() / g.norm(),
        "sgdw": eta * decay * theta.norm() / (lr_t * g.norm()),
        "adamw": eta * decay * theta.norm() / (lr_t * (g / (g.abs() + 1e-8)).norm()),
        "adamw-torch": lr_t * decay * theta.norm() / (lr_t * (g / (g.abs() + 1e-8)).norm()),
    }[variant]
    assert share == pytest.approx(expected.item(), rel=1e-4)


def test_adaptive_l2_has_no_theory_and_says_none():
    model = _Normalized(64)
    telemetry = Telemetry(model, torch.randn(2, 64), variant="adam", lr=0.01)
    telemetry.start_epoch()
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    telemetry.after_backward()
    telemetry.after_step(0.01, 0.001)
    measured = telemetry.finish_epoch()
    assert measured.angular_update_theory is None and measured.angular_update is not None


# ------------------------------------------------------------------------ in the trainer

TINY = dict(dataset="synthetic", model="shake_shake_8_2x16d_bnhead", batch_size=64, device="cpu", seed=3,
            train_limit=128, epochs=3)


def test_every_epoch_records_every_field_finite(one_thread):
    result = train_trial(TrialConfig(**TINY, variant="sgdw", lr=0.05, weight_decay=5e-3))
    assert set(TELEMETRY_FIELDS) <= set(HISTORY_FIELDS), "the vocabulary lists the new keys"
    for metrics in result.history:
        row = asdict(metrics)
        assert set(HISTORY_FIELDS) <= set(row)
        for name in TELEMETRY_FIELDS:
            values = row[name] if name == "weight_norm_stages" else [row[name]]
            assert values and all(isinstance(v, float) and math.isfinite(v) for v in values), (name, row[name])
        assert len(row["weight_norm_stages"]) == 4
        # The stages and the head hold every scale-invariant weight: their squares add up to the total.
        assert sum(v * v for v in row["weight_norm_stages"]) + row["weight_norm_last"] ** 2 == pytest.approx(
            row["weight_norm"] ** 2, rel=1e-5)


def test_telemetry_only_watches(one_thread):
    config = TrialConfig(**TINY, variant="sgd", lr=0.05, weight_decay=5e-3)
    watched = train_trial(config)
    plain = train_trial(config.model_copy(update={"telemetry": False}))
    measured = ("test_error", "test_loss", "train_loss", "train_error", "lr_t")
    assert [[getattr(m, k) for k in measured] for m in watched.history] == [
        [getattr(m, k) for k in measured] for m in plain.history], "bit-identical training with telemetry on or off"
    assert all(getattr(m, name) is None for m in plain.history for name in TELEMETRY_FIELDS)


def test_an_epoch_recorded_before_telemetry_loads_with_none():
    old = {"epoch": 1, "test_error": 0.5, "test_loss": 1.0, "train_loss": 1.0, "train_error": 0.5,
           "epoch_seconds": 1.0, "images_per_s": 100.0, "lr_t": 0.1, "diverged": False}
    metrics = EpochMetrics(**old)
    assert all(getattr(metrics, name) is None for name in TELEMETRY_FIELDS)


# ------------------------------------------------------------------------ the equilibrium, measured


def _decay_integrals(variant: str, lr: float, weight_decay: float, lrs: list[float]) -> list[float]:
    """Sum of the per-step shrinkage lambda_eff (for L2 through the momentum: lr_t * lambda' / (1 - mu)) up to and
    including each step whose learning rate is in `lrs`: how far the decay has pulled the norm toward equilibrium."""
    amplify = 1 / (1 - 0.9) if get_variant(variant).decay == "l2" else 1.0
    total, out = 0.0, []
    for lr_t in lrs:
        total += amplify * effective_decay(variant, lr=lr, weight_decay=weight_decay, eta=lr_t / lr)
        out.append(total)
    return out


class _Sphere(nn.Module):
    """One scale-invariant weight vector and nothing else (BatchNorm without affine parameters)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 1, bias=False)
        self.norm = nn.BatchNorm1d(1, affine=False)

    def forward(self, x):
        return self.norm(self.linear(x))


SPHERE_EPOCHS, SPHERE_STEPS = 20, 100


@functools.cache
def _sphere(variant: str, lr: float, weight_decay: float) -> tuple[tuple[float, ...], ...]:
    """Per epoch (decay integral before it, after it, eta_t at its start, measured angle, predicted angle) of a walk
    on the sphere measured by `Telemetry` under a per-step cosine schedule: the gradient is pure noise orthogonal to
    w, scaled by 1/|w| (what a scale-invariant loss gives when minibatch noise dominates), from |w| = 1."""
    dim = 256
    generator = torch.Generator().manual_seed(0)
    model = _Sphere(dim).double()
    weight = model.linear.weight
    with torch.no_grad():
        weight.copy_(torch.randn(weight.shape, generator=generator, dtype=torch.float64))
        weight /= weight.norm()
    optimizer = build_optimizer(variant, model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = build_scheduler("cosine", optimizer, total_steps=SPHERE_EPOCHS * SPHERE_STEPS,
                                steps_per_epoch=SPHERE_STEPS)
    telemetry = Telemetry(model, torch.randn(4, dim, dtype=torch.float64), variant=variant, lr=lr)
    rows, lrs = [], []
    for _ in range(SPHERE_EPOCHS):
        telemetry.start_epoch()
        eta = optimizer.param_groups[0]["lr"] / lr
        for _ in range(SPHERE_STEPS):
            with torch.no_grad():
                noise = torch.randn(dim, generator=generator, dtype=torch.float64)
                unit = (weight / weight.norm()).reshape(-1)
                weight.grad = ((noise - (noise @ unit) * unit) / weight.norm()).reshape(weight.shape)
            telemetry.after_backward()
            lrs.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            telemetry.after_step(lrs[-1], weight_decay)
            scheduler.step()
        measured = telemetry.finish_epoch()
        integrals = _decay_integrals(variant, lr, weight_decay, lrs)
        before = integrals[-SPHERE_STEPS - 1] if len(integrals) > SPHERE_STEPS else 0.0
        rows.append((before, integrals[-1], eta, measured.angular_update, measured.angular_update_theory))
    return tuple(rows)


SPHERES = [("sgd", 0.1, 0.004), ("sgd", 0.4, 0.004), ("sgdw", 0.1, 0.004), ("sgdw", 0.4, 0.004),
           ("adamw", 0.01, 0.004)]


@pytest.mark.parametrize(("variant", "lr", "weight_decay"), SPHERES)
def test_on_the_sphere_the_angle_settles_at_the_theory_once_the_decay_has_acted(variant, lr, weight_decay):
    rows = _sphere(variant, lr, weight_decay)
    ratios = [round(measured / theory, 3) for _, _, _, measured, theory in rows]
    # Settled: the decay integral past 1.5 before the epoch, and early in the schedule (eta_t >= 0.75), where the
    # equilibrium moves slower than the weights relax to it. Measured (seed 0): within 5 %. By mid-schedule the
    # slowest of these (lambda_eff = 0.004 per step) already trails by 10 %.
    settled = [abs(r - 1) for (before, _, eta, _, _), r in zip(rows, ratios, strict=True)
               if before >= 1.5 and eta >= 0.75]
    assert len(settled) >= 3 and max(settled) < 0.08, f"{variant} alpha={lr}: measured / predicted = {ratios}"
    # Before the decay has acted (integral below 0.8 by the epoch's end), the worst epoch 48-55 % off: the start
    # |w| = 1 is far from the equilibrium norm.
    early = [abs(r - 1) for (_, after, _, _, _), r in zip(rows, ratios, strict=True) if after < 0.8]
    assert not early or max(early) > 0.15, f"{variant} alpha={lr}: no approach ({ratios})"
    # At the end of the schedule eta_t -> 0 stops the relaxation: the weights trail the moving target (docs).
    assert ratios[-1] < 0.5, f"{variant} alpha={lr}: {ratios}"


@pytest.mark.parametrize(("variant", "factor"), [("sgd", 2.0), ("sgdw", 1.0)])
def test_on_the_sphere_four_times_alpha_doubles_sgds_angle_and_leaves_sgdws(variant, factor):
    slow, fast = _sphere(variant, 0.1, 0.004), _sphere(variant, 0.4, 0.004)
    # The prediction, at every epoch (the same eta_t in both runs): exactly 2 for SGD + L2, exactly 1 for SGDW.
    for a, b in zip(slow, fast, strict=True):
        assert b[4] / a[4] == pytest.approx(factor, rel=1e-9)
    # The measured angles, where both runs have settled (as above): 2.01-2.06 and 0.98-1.00 (seed 0).
    measured = [b[3] / a[3] for a, b in zip(slow, fast, strict=True) if min(a[0], b[0]) >= 1.5 and a[2] >= 0.75]
    assert len(measured) >= 3 and all(m == pytest.approx(factor, rel=0.06) for m in measured), measured


# The quick preset's model on digits with its label noise, at a constant schedule (the formula is the equilibrium at
# a fixed eta_t; under cosine the weights trail a moving target). 23 steps per epoch; lambda_eff is 0.03 for each
# (SGDW and AdamW decay by eta_t * lambda, SGD + L2 by lr * lambda' / (1 - mu) = 0.003 / 0.1), 0.12 at SGD's 4 alpha.
QUICK = dict(dataset="digits", model="shake_shake_8_2x16d_bnhead", batch_size=64, device="cpu", label_noise=0.2,
             schedule="constant", epochs=5, seed=0)
REAL = [("sgd", 0.1, 0.03), ("sgdw", 0.1, 0.03), ("adamw", 0.01, 0.03)]


@functools.cache
def _quick_run(variant: str, lr: float, weight_decay: float) -> tuple[list[float], list[float], list[float]]:
    """(integral of lambda_eff before each epoch, measured angles, predicted angles) of a quick-model run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_trial(TrialConfig(**QUICK, variant=variant, lr=lr, weight_decay=weight_decay))
    finally:
        torch.set_num_threads(threads)
    steps = math.ceil(DATASET_SIZES["digits"][0] / QUICK["batch_size"])
    integrals = _decay_integrals(variant, lr, weight_decay, [m.lr_t for m in result.history for _ in range(steps)])
    before = [0.0] + integrals[steps - 1::steps][:-1]
    return before, [m.angular_update for m in result.history], [m.angular_update_theory for m in result.history]


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "lr", "weight_decay"), REAL)
def test_a_real_run_settles_at_the_predicted_angle(variant, lr, weight_decay):
    before, measured, theory = _quick_run(variant, lr, weight_decay)
    ratios = [round(m / t, 3) for m, t in zip(measured, theory, strict=True)]
    # The weights start far from the equilibrium norm (the epochs before the integral reaches 1 turn 1.3-2.6 times
    # slower than predicted) and settle at it once the integral passes 2 (measured 0.5-6 % off, seed 0): later than on
    # the sphere, since the start is farther. 15 % allows for what the formula leaves out: it assumes pure-noise
    # gradients, uncorrelated from step to step, while a real gradient carries signal that the momentum accumulates
    # coherently.
    settled = [abs(r - 1) for b, r in zip(before, ratios, strict=True) if b >= 2.0]
    early = [abs(r - 1) for b, r in zip(before, ratios, strict=True) if b < 1.0]
    assert settled and max(settled) < 0.15, f"{variant}: measured / predicted = {ratios}, integrals {before}"
    assert early and max(early) > 0.2, f"{variant}: no approach from the start ({ratios})"


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "factor"), [("sgd", 2.0), ("sgdw", 1.0)])
def test_a_real_run_at_four_times_alpha_turns_twice_as_fast_for_sgd_only(variant, factor):
    slow, fast = _quick_run(variant, 0.1, 0.03), _quick_run(variant, 0.4, 0.03)
    assert [b / a for a, b in zip(slow[2], fast[2], strict=True)] == pytest.approx([factor] * QUICK["epochs"],
                                                                                   rel=1e-9), "the prediction"
    # Both settled (integral past 2 before the epoch): measured SGD 2.04-2.09, SGDW 1.00-1.07 (seed 0).
    ratios = [b / a for a, b, x, y in zip(slow[1], fast[1], slow[0], fast[0], strict=True) if min(x, y) >= 2.0]
    assert ratios and all(r == pytest.approx(factor, rel=0.15) for r in ratios), ratios


# ------------------------------------------------------------------------ weight histograms


def test_weight_samples_are_strided_capped_and_leave_the_run_alone(one_thread):
    torch.manual_seed(0)
    model = create_model("shake_shake_8_2x16d_bnhead", num_classes=10, in_channels=1)
    images = torch.randn(2, 1, 8, 8)
    telemetry = Telemetry(model, images, variant="sgdw", lr=0.1)
    rng = torch.get_rng_state()
    samples = telemetry.weight_samples(limit=200)
    assert torch.equal(torch.get_rng_state(), rng)
    assert list(samples) == ["stem", "stage1", "stage2", "stage3", "last"]
    stem = torch.cat([p.detach().reshape(-1) for p in telemetry.invariant_weights[:1]])
    assert samples["stem"].tolist() == pytest.approx(stem.tolist()), "the stem's one convolution has 144 < 200 values"
    for name in ("stage1", "stage2", "stage3"):
        assert samples[name].shape == (200,) and samples[name].dtype == np.float32
    last = last_layer(model, images).weight.detach().reshape(-1)
    assert samples["last"].tolist() == pytest.approx(last[torch.linspace(0, last.numel() - 1, 200).long()].tolist())
    assert histogram_epochs(100) == {1, 25, 50, 75, 100} and histogram_epochs(3) == {1, 2, 3}
    with pytest.raises(ValueError, match="count must be at least 2"):
        histogram_epochs(10, count=1)


def test_the_trainer_hands_out_samples_only_at_histogram_epochs(one_thread):
    seen: list[tuple[int, list[str]]] = []
    config = TrialConfig(**{**TINY, "epochs": 5}, variant="sgdw", lr=0.05, weight_decay=5e-3)
    sampled = train_trial(config, on_weights=lambda epoch, samples: seen.append((epoch, sorted(samples))))
    assert [epoch for epoch, _ in seen] == sorted(histogram_epochs(5)) == [1, 2, 4, 5]
    assert all(names == sorted(["stem", "stage1", "stage2", "stage3", "last"]) for _, names in seen)
    plain = train_trial(config)
    assert [m.test_loss for m in sampled.history] == [m.test_loss for m in plain.history], "sampling only reads"


def test_channels_last_weights_are_measured_alike(one_thread):
    # channels_last convolution weights are read through a permuted flat view of their storage; the measurements
    # agree with the contiguous run up to the convolutions' own rounding.
    config = TrialConfig(**TINY, variant="sgdw", lr=0.05, weight_decay=5e-3)
    plain = train_trial(config).final
    nhwc = train_trial(config.model_copy(update={"channels_last": True})).final
    for name in ("weight_norm", "weight_norm_last", "angular_update", "angular_update_theory", "grad_norm",
                 "decay_share"):
        assert getattr(nhwc, name) == pytest.approx(getattr(plain, name), rel=1e-3), name
    assert nhwc.weight_norm_stages == pytest.approx(plain.weight_norm_stages, rel=1e-3)
