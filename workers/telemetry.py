"""Inside each cell: the weights' norms and effective step, measured on the training steps, against the theory.

docs/science.md ("the effective step") explains a landscape by what happens to the *scale-invariant* weights: they
turn by an angle per step that settles at an equilibrium set by the decay (`hpscape.workers.mechanism` has the
formulas). `Telemetry` measures those quantities in a real run, on the steps the trainer takes anyway, so each epoch
of a trial's history says how far its cell is from that picture. docs/telemetry.md defines every field, its unit
and the formulas; in short (the `EpochMetrics` fields of the same names, None where not measured):

- ``weight_norm`` / ``weight_norm_stages`` / ``weight_norm_last``: |all scale-invariant weights|, the same per stage
  (stem first) and |the last layer's weight|, after the epoch's last step;
- ``angular_update``: the mean over the epoch's steps of the angle (radians) that the concatenation of the
  scale-invariant weights turns in one step, as atan2(|d_perp|, |w| + <w, d> / |w|) for the step d (exact down to
  the small angles where arccos of a float32 cosine reads 0);
- ``angular_update_theory``: the mean over the same steps of `predicted_angular_update` at each step's eta_t (None
  for L2 inside an adaptive step, which has no closed form);
- ``grad_norm``: the mean |minibatch loss gradient|, all parameters, before any L2 term;
- ``decay_share``: the mean |decay step| / |gradient step|, all parameters (for L2, |lambda' * theta| / |g|).

Which weights are scale-invariant is read from the network's data flow, not from names (`scale_invariant_layers`):
a convolution or linear layer whose output goes *only* into BatchNorm layers (directly, or through a concatenation
along channels, as in Shake-Shake's shortcut) is invariant to the scale of its weight. In Shake-Shake that is every
convolution, and with the `_bnhead` head the last linear layer too; the paper's linear head is not.

Cost: per step, one copy of the parameters and one of the gradient into flat buffers that are reused, one
subtraction and seven dot products, all on the device; `finish_epoch` reads the device once per epoch, so there is
no host sync per step (`bench/train_throughput.py` prints the on / off ratio). Nothing here changes the training:
the run is bit-identical with telemetry on or off. `weight_samples` gives a few values of each stage's weights for
the sweep's weight histograms (`hpscape.workers.sweep.loggers`), at the epochs `histogram_epochs` picks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hpscape.landscapes.variants import get_variant
from hpscape.workers.mechanism import first_moment, has_closed_form, predicted_angular_update

__all__ = [
    "HISTOGRAM_SAMPLES",
    "EpochTelemetry",
    "Telemetry",
    "histogram_epochs",
    "last_layer",
    "network_stages",
    "scale_invariant_layers",
    "stage_label",
]

# Values per weight histogram: enough for TensorBoard's ~30 bins, small enough that the few epochs that carry them
# add kilobytes, not megabytes, to a trial's Tune results.
HISTOGRAM_SAMPLES = 512

_LAYERS = (nn.modules.conv._ConvNd, nn.Linear)
_NORMS = (nn.modules.batchnorm._BatchNorm,)
# Autograd nodes a layer's output may pass on its way to a BatchNorm without losing the invariance: a concatenation
# (of whole channels, as Shake-Shake's shortcut does) and copies that change only dtype or memory layout.
_PASS_THROUGH = frozenset({"CatBackward0", "ToCopyBackward0", "CloneBackward0"})


@dataclass
class _Trace:
    """What one forward pass showed: the layers in the order they ran, and the autograd nodes around them."""

    order: list[nn.Module]
    produced: dict[Any, list[nn.Module]]  # autograd node of a layer's output -> the layer calls that made it
    norm_nodes: set[Any]  # autograd nodes of the BatchNorm layers' outputs
    output: Tensor


def _trace(model: nn.Module, example: Tensor) -> _Trace:
    """One eval-mode forward of `example` with hooks on the layers and BatchNorms.

    Eval mode leaves BatchNorm's running statistics and the random-number generators alone (Shake-Shake mixes 0.5 /
    0.5 there), so tracing changes nothing in the run; the graph has the same shape as in training.
    """
    trace = _Trace([], {}, set(), example)

    def on_layer(module: nn.Module, _inputs: Any, output: Tensor) -> None:
        trace.order.append(module)
        if output.grad_fn is not None:
            trace.produced.setdefault(output.grad_fn, []).append(module)

    def on_norm(_module: nn.Module, _inputs: Any, output: Tensor) -> None:
        if output.grad_fn is not None:
            trace.norm_nodes.add(output.grad_fn)

    handles = []
    for module in model.modules():
        if isinstance(module, _LAYERS):
            handles.append(module.register_forward_hook(on_layer))
        elif isinstance(module, _NORMS):
            handles.append(module.register_forward_hook(on_norm))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            trace.output = model(example)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return trace


def _invariant_layers(trace: _Trace) -> list[nn.Module]:
    consumers: dict[Any, list[Any]] = {}  # node -> the nodes that read its output (the graph's forward edges)
    seen = {trace.output.grad_fn}
    stack = [trace.output.grad_fn]
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            consumers.setdefault(child, []).append(node)
            if child not in seen:
                seen.add(child)
                stack.append(child)

    def feeds_norms_only(node: Any) -> bool:
        users = consumers.get(node, [])
        return bool(users) and all(
            user in trace.norm_nodes or (user.name() in _PASS_THROUGH and feeds_norms_only(user)) for user in users
        )

    # A layer called more than once counts only if every call qualifies.
    verdict: dict[int, bool] = {}
    for node, modules in trace.produced.items():
        ok = feeds_norms_only(node)
        for module in modules:
            verdict[id(module)] = verdict.get(id(module), True) and ok
    result: list[nn.Module] = []
    for module in trace.order:
        if verdict.get(id(module)) and all(module is not r for r in result):
            result.append(module)
    return result


def scale_invariant_layers(model: nn.Module, example: Tensor) -> list[nn.Module]:
    """The convolution and linear layers to whose weight's scale the network's output is invariant.

    A layer qualifies when every use of its output, followed forward through the autograd graph of one forward pass
    on `example` (a batch of training inputs), ends in a BatchNorm layer, passing at most through a concatenation or a
    dtype / layout copy (`_PASS_THROUGH`); an output that also feeds anything else (a sum, an activation, the logits)
    disqualifies it. Layers are returned in the order they ran. The rule is conservative: positively homogeneous
    operations between a layer and its BatchNorm (a ReLU, a pooling) would keep the invariance too, but are not
    followed; Shake-Shake has none there.
    """
    return _invariant_layers(_trace(model, example))


def last_layer(model: nn.Module, example: Tensor) -> nn.Module:
    """The convolution or linear layer that ran last in a forward pass of `example`: the one computing the logits."""
    order = _trace(model, example).order
    if not order:
        raise ValueError("the model has no convolution or linear layer")
    return order[-1]


def network_stages(model: nn.Module) -> list[nn.Module]:
    """The network's stages, stem first: ``[model.stem, *model.stages]`` where the model has both (Shake-Shake and
    any network built that way), else its top-level children."""
    stem, stages = getattr(model, "stem", None), getattr(model, "stages", None)
    if isinstance(stem, nn.Module) and isinstance(stages, nn.Sequential):
        return [stem, *stages]
    return list(model.children())


def stage_label(index: int) -> str:
    """The name of `network_stages`' entry `index` in logs: 'stem', then 'stage1', 'stage2', ..."""
    return "stem" if index == 0 else f"stage{index}"


def histogram_epochs(epochs: int, count: int = 5) -> frozenset[int]:
    """The epochs (1-based) of a run of `epochs` whose weights are sampled for histograms: the first, the last and
    evenly spaced ones between, `count` at most."""
    if count < 2:
        raise ValueError(f"count must be at least 2 (the first and the last epoch), got {count}")
    return frozenset(max(1, round(epochs * k / (count - 1))) for k in range(count)) | {1}


@dataclass(frozen=True)
class EpochTelemetry:
    """What `Telemetry.finish_epoch` returns: the `EpochMetrics` fields of the same names (see the module)."""

    weight_norm: float | None
    weight_norm_stages: list[float | None] | None
    weight_norm_last: float | None
    angular_update: float | None
    angular_update_theory: float | None
    grad_norm: float | None
    decay_share: float | None


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None  # a diverged epoch: None keeps the record valid JSON


def _flat_view(p: Tensor) -> Tensor | None:
    """`p` as one flat view of its storage (so it follows the optimizer's in-place updates), or None if it has none.

    A channels_last weight is flattened in its memory order (N, H, W, C); the order does not matter here, only that it
    is the same at every step.
    """
    t = p.detach()
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).view(-1)
    return None


class _Buffer:
    """One flat copy of the parameters (``after``) and a step (``step``), with the views the dot products read."""

    def __init__(self, size: int, invariant: int, device: torch.device, dtype: torch.dtype) -> None:
        self.after = torch.empty(size, device=device, dtype=dtype)
        self.step = torch.empty(size, device=device, dtype=dtype)
        # (theta_old, d) over the scale-invariant weights, then over the rest, read when this buffer holds theta_old.
        self.parts = (self.after[:invariant], self.step[:invariant], self.after[invariant:], self.step[invariant:])


class Telemetry:
    """Per-epoch measurements of one training run; the trainer calls, for every step::

        telemetry.start_epoch()                 # once per epoch, before its first step
        loss.backward(); telemetry.after_backward()
        optimizer.step(); telemetry.after_step(lr_t, weight_decay)   # the lr and decay this step used
        ...
        telemetry.finish_epoch()                # one host sync: the epoch's EpochTelemetry

    `variant`, `lr` (alpha), `momentum` and `beta1` are the trial's; `example` is a batch of training inputs for
    finding the scale-invariant layers (`scale_invariant_layers`).

    Per step it keeps seven numbers on the device: |g|^2 and the dot products of theta_old and the step d over the
    scale-invariant weights and over the other parameters; `finish_epoch` turns them into the angles and shares in one
    vectorized pass and reads the result once.
    """

    def __init__(
        self,
        model: nn.Module,
        example: Tensor,
        *,
        variant: str,
        lr: float,
        momentum: float = 0.9,
        beta1: float = 0.9,
    ) -> None:
        spec = get_variant(variant)
        self._variant = spec.name
        self._alpha = float(lr)
        self._decay_form = spec.decay
        self._mu = first_moment(spec.name, momentum=momentum, beta1=beta1)
        self._closed_form = has_closed_form(spec.name)

        trace = _trace(model, example)
        if not trace.order:
            raise ValueError("the model has no convolution or linear layer")
        invariant = [m.weight for m in _invariant_layers(trace)]
        if not invariant:
            raise ValueError("the model has no scale-invariant weight (no layer feeds only BatchNorm)")
        invariant_ids = {id(p) for p in invariant}
        # Scale-invariant weights first, so that the first `_n_invariant` entries of the flat copy are theirs.
        others = [p for p in model.parameters() if id(p) not in invariant_ids]
        self._params: list[Tensor] = invariant + others
        self._invariant = invariant
        self._n_invariant = sum(p.numel() for p in invariant)
        self._last = trace.order[-1].weight
        stages = network_stages(model)
        stage_of: dict[int, int] = {}
        for index, stage in enumerate(stages):
            for p in stage.parameters():
                stage_of.setdefault(id(p), index)
        self._n_stages = len(stages)
        self._stage_index = [stage_of.get(id(p), -1) for p in invariant]
        self._device = self._params[0].device
        views = [_flat_view(p) for p in self._params]
        self._views: list[Tensor] | None = views if all(v is not None for v in views) else None  # type: ignore[assignment]
        # Two (theta_old, d) buffers, used in turn: one step's theta_new is written where the next step reads theta_old.
        size = sum(p.numel() for p in self._params)
        dtype = self._params[0].dtype
        self._current = _Buffer(size, self._n_invariant, self._device, dtype)
        self._other = _Buffer(size, self._n_invariant, self._device, dtype)
        self._gradient = torch.empty(size, device=self._device, dtype=dtype)
        self._ready = False
        self._grad_sq: Tensor | None = None
        self._reset()

    @property
    def invariant_weights(self) -> list[Tensor]:
        """The scale-invariant weights, in the order their layers ran."""
        return list(self._invariant)

    def weight_samples(self, limit: int = HISTOGRAM_SAMPLES) -> dict[str, np.ndarray]:
        """At most `limit` evenly spaced values of each stage's scale-invariant weights (keys `stage_label`) and of the
        last layer's weight ('last'), as float32 arrays, for weight histograms.

        Strided, not drawn at random: sampling must not touch the run's random-number generators.
        """
        groups: dict[str, list[Tensor]] = {}
        for weight, stage in zip(self._invariant, self._stage_index, strict=True):
            if stage >= 0:
                groups.setdefault(stage_label(stage), []).append(weight.detach().reshape(-1))
        groups["last"] = [self._last.detach().reshape(-1)]
        samples = {}
        for name, parts in groups.items():
            flat = torch.cat(parts)
            if flat.numel() > limit:
                flat = flat[torch.linspace(0, flat.numel() - 1, limit, device=flat.device).long()]
            samples[name] = flat.float().cpu().numpy()
        return samples

    def _flat_into(self, out: Tensor) -> None:
        if self._views is not None:
            torch.cat(self._views, out=out)
        else:
            torch.cat([p.detach().reshape(-1) for p in self._params], out=out)

    def _reset(self) -> None:
        # Per step, on the device: <w, w>, <w, d>, <d, d> over the scale-invariant weights, the same over the other
        # parameters, and |g|^2 (w = theta_old, d = theta_new - theta_old).
        self._rows: list[Tensor] = []
        self._lrs: list[float] = []
        self._decays: list[float] = []

    def start_epoch(self) -> None:
        self._reset()
        self._flat_into(self._current.after)
        self._ready = True

    def after_backward(self) -> None:
        grads = [p.grad for p in self._params if p.grad is not None]
        if len(grads) == len(self._params):  # the usual case: one copy into a buffer that is reused every step
            torch.cat([g.reshape(-1) for g in grads], out=self._gradient)
            self._grad_sq = torch.dot(self._gradient, self._gradient)
        else:
            flat = torch.cat([g.reshape(-1) for g in grads]) if grads else torch.zeros(1, device=self._device)
            self._grad_sq = torch.dot(flat, flat)

    def after_step(self, lr_t: float, weight_decay: float) -> None:
        """Account for the step just taken with learning rate `lr_t` and raw decay factor `weight_decay`."""
        if not self._ready or self._grad_sq is None:
            raise RuntimeError("Telemetry.start_epoch() and after_backward() must run before after_step()")
        current, other = self._current, self._other
        self._flat_into(other.after)  # theta_new, the next step's theta_old
        torch.sub(other.after, current.after, out=current.step)  # d itself, not theta_new, keeps small steps exact
        w, d, w_rest, d_rest = current.parts
        self._rows.append(torch.stack((
            torch.dot(w, w), torch.dot(w, d), torch.dot(d, d),
            torch.dot(w_rest, w_rest), torch.dot(w_rest, d_rest), torch.dot(d_rest, d_rest),
            self._grad_sq,
        )))
        self._lrs.append(float(lr_t))
        self._decays.append(float(weight_decay))
        self._current, self._other = other, current
        self._grad_sq = None

    def _theory(self) -> float | None:
        if not self._closed_form or not self._lrs:
            return None
        predictions = [
            predicted_angular_update(self._variant, lr=self._alpha, weight_decay=decay, momentum=self._mu,
                                     eta=lr_t / self._alpha)
            for lr_t, decay in zip(self._lrs, self._decays, strict=True)
        ]
        return sum(predictions) / len(predictions)

    def finish_epoch(self) -> EpochTelemetry:
        """The epoch's measurements; reads the device once."""
        norms = torch.stack(torch._foreach_norm([p.detach() for p in self._invariant])).double()
        stage_sq = torch.zeros(self._n_stages, device=self._device, dtype=norms.dtype)
        known = [i for i, s in enumerate(self._stage_index) if s >= 0]
        if known:
            index = torch.tensor([self._stage_index[i] for i in known], device=self._device)
            stage_sq = stage_sq.index_add(0, index, norms[known] ** 2)
        parts = [
            (norms**2).sum().sqrt().reshape(1),
            torch.linalg.vector_norm(self._last.detach()).double().reshape(1),
            stage_sq.sqrt(),
        ]
        steps = len(self._rows)
        if steps:
            rows = torch.stack(self._rows).double()  # (steps, 7)
            ww, wd, dd = rows[:, 0], rows[:, 1], rows[:, 2]
            # The angle of the concatenated scale-invariant weights: atan2(|d_perp|, |w| + <w, d> / |w|).
            norm = ww.sqrt()
            angle = torch.atan2((dd - wd * wd / ww).clamp_min(0.0).sqrt(), norm + wd / norm)
            gradient = rows[:, 6].sqrt()
            decay = torch.tensor(self._decays, device=self._device, dtype=torch.float64)
            theta_sq, theta_d, d_sq = ww + rows[:, 3], wd + rows[:, 4], dd + rows[:, 5]  # all parameters
            if self._decay_form == "l2":
                share = decay * theta_sq.sqrt() / gradient  # |lambda' * theta_old| / |g|
            else:
                lrs = torch.tensor(self._lrs, device=self._device, dtype=torch.float64)
                factor = decay * (lrs / self._alpha if self._decay_form == "decoupled" else lrs)  # lambda_eff
                # |G|^2 = |d + lambda_eff * theta_old|^2, expanded in the dot products.
                step_sq = d_sq + 2 * factor * theta_d + factor**2 * theta_sq
                share = factor * theta_sq.sqrt() / step_sq.clamp_min(0.0).sqrt()
            # A step at lr_t = 0 (a schedule's very end) has no gradient step and no share: left out, not NaN.
            parts.append(torch.stack((angle.mean(), gradient.mean(), share.nanmean())))
        values = torch.cat(parts).tolist()  # the one host sync of the epoch
        weight_norm, last, stage_norms = values[0], values[1], values[2:2 + self._n_stages]
        angle_mean, grad_norm, share_mean = values[2 + self._n_stages:] if steps else (math.nan,) * 3
        return EpochTelemetry(
            weight_norm=_finite(weight_norm),
            weight_norm_stages=[_finite(v) for v in stage_norms],
            weight_norm_last=_finite(last),
            angular_update=_finite(angle_mean),
            angular_update_theory=self._theory(),
            grad_norm=_finite(grad_norm),
            decay_share=_finite(share_mean),
        )
