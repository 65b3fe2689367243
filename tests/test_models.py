"""Tests for the Shake-Shake model registry (PROTOCOL.md section 4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from hpscape.workers.models import (
    ShakeShake,
    ShakeShakeBlock,
    count_parameters,
    create_model,
    list_models,
    register_model,
    shake_shake_image,
)
from hpscape.workers.models.registry import _MODEL_REGISTRY
from hpscape.workers.models.shake_shake import _shake_shake_image_mix

EXPECTED_NAMES = {
    f"shake_shake_{depth}_2x{width}d{head}"
    for depth in (8, 14, 20, 26, 32)
    for width in (8, 16, 32, 64, 96)
    for head in ("", "_bnhead")
}


# ---------------------------------------------------------------- registry


def test_list_models_is_exactly_the_registered_family() -> None:
    names = list_models()
    assert set(names) == EXPECTED_NAMES
    assert names == sorted(names)


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_model_forward_backward_on_digits_sized_input(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_channels=1).train()
    out = model(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without finite gradients: {missing[:5]}"


def test_bnhead_output_ignores_the_scale_of_every_weight() -> None:
    # The point of the _bnhead models: decay can only act through the effective step, never through the logit scale.
    torch.manual_seed(0)
    model = create_model("shake_shake_8_2x16d_bnhead", num_classes=10, in_channels=1).train()
    x = torch.randn(16, 1, 8, 8)
    torch.manual_seed(1)
    before = model(x)
    with torch.no_grad():
        model.fc.linear.weight.mul_(7.0)
        # The last block's output BNs (both branches and the skip) set the scale of the features the head sees.
        last = model.stages[-1][-1]
        for bn in (last.branch1[-1], last.branch2[-1], last.shortcut.bn):
            bn.weight.mul_(3.0)
            bn.bias.mul_(3.0)
    torch.manual_seed(1)
    after = model(x)
    assert torch.allclose(before, after, atol=2e-3), (before - after).abs().max()  # BN eps: not exact
    assert not any(name.endswith("bias") and "fc" in name for name, _ in model.named_parameters())
    # The paper's head does depend on it.
    plain = create_model("shake_shake_8_2x16d", num_classes=10, in_channels=1).train()
    torch.manual_seed(1)
    y0 = plain(x)
    with torch.no_grad():
        plain.fc.weight.mul_(7.0)
    torch.manual_seed(1)
    assert not torch.allclose(y0, plain(x), atol=1e-3)


def test_bnhead_trains_on_a_one_image_batch_and_evaluates_with_running_stats() -> None:
    torch.manual_seed(0)
    model = create_model("shake_shake_8_2x8d_bnhead", num_classes=10, in_channels=1).train()
    out = model(torch.randn(1, 1, 8, 8))  # a short last batch of one image must not crash
    assert out.shape == (1, 10) and torch.isfinite(out).all()
    out.sum().backward()
    model.eval()
    single = model(torch.randn(1, 1, 8, 8))
    assert single.shape == (1, 10) and torch.isfinite(single).all()


def test_cifar_sized_forward_backward_26_2x32d() -> None:
    torch.manual_seed(0)
    model = create_model("shake_shake_26_2x32d").train()
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 10)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    # Stage resolutions 32 -> 16 -> 8 as in the paper.
    shapes = []
    h = model.stem(x)
    for stage in model.stages:
        h = stage(h)
        shapes.append(tuple(h.shape[1:]))
    assert shapes == [(32, 32, 32), (64, 16, 16), (128, 8, 8)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [("shake_shake_26_2x32d", 2.92e6), ("shake_shake_26_2x64d", 11.65e6), ("shake_shake_26_2x96d", 26.2e6)],
)
def test_parameter_counts_match_the_paper(name: str, expected: float) -> None:
    n = count_parameters(create_model(name, num_classes=10, in_channels=3))
    assert abs(n - expected) / expected < 0.01, f"{name}: {n} parameters, expected about {expected:.0f}"


def test_num_classes_and_in_channels_are_honoured() -> None:
    model = create_model("shake_shake_8_2x16d", num_classes=7, in_channels=5)
    assert model.stem[0].in_channels == 5
    assert model.fc.out_features == 7 and model.fc.in_features == 64
    assert model(torch.randn(2, 5, 12, 12)).shape == (2, 7)


def test_unknown_name_lists_close_matches_and_pattern() -> None:
    with pytest.raises(ValueError, match="unknown model name") as info:
        create_model("shake_shake_26_2x63d")
    message = str(info.value)
    assert "shake_shake_26_2x63d" in message
    assert "shake_shake_26_2x64d" in message  # the closest valid name is suggested
    assert "shake_shake_{depth}_{branches}x{width}d" in message
    assert "list_models()" in message


@pytest.mark.parametrize(("kwargs", "field"),
                         [({"num_classes": 0}, "num_classes"), ({"in_channels": -1}, "in_channels")])
def test_invalid_sizes_are_rejected(kwargs: dict[str, int], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        create_model("shake_shake_8_2x16d", **kwargs)


def test_register_model_decorator_and_duplicate_name() -> None:
    name = "_test_tiny_model"
    try:

        @register_model
        def _test_tiny_model(num_classes: int, in_channels: int) -> nn.Module:
            return nn.Conv2d(in_channels, num_classes, 1)

        assert name in list_models()
        model = create_model(name, num_classes=4, in_channels=2)
        assert isinstance(model, nn.Conv2d) and model.out_channels == 4 and model.in_channels == 2
        with pytest.raises(ValueError, match="already registered"):
            register_model(name)(_test_tiny_model)
    finally:
        _MODEL_REGISTRY.pop(name, None)


@pytest.mark.parametrize(("depth", "branches"), [(25, 2), (2, 2), (26, 3)])
def test_invalid_architecture_is_rejected(depth: int, branches: int) -> None:
    with pytest.raises(ValueError, match=r"depth must be 6n\+2|exactly 2 branches"):
        ShakeShake(depth=depth, width=16, branches=branches)


# ---------------------------------------------------------------- layout and init


def test_block_layout_and_skip_paths() -> None:
    down = ShakeShakeBlock(16, 32, stride=2)
    assert [type(m) for m in down.branch1] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert down.branch1[1].stride == (2, 2) and down.branch1[4].stride == (1, 1)
    assert down.branch1[1].bias is None and down.branch1[4].bias is None
    assert down.shortcut.conv1.out_channels == 16 and down.shortcut.conv2.out_channels == 16
    assert down.shortcut.conv1.weight is not down.shortcut.conv2.weight
    assert isinstance(ShakeShakeBlock(32, 32, stride=1).shortcut, nn.Identity)
    assert not isinstance(ShakeShakeBlock(16, 32, stride=1).shortcut, nn.Identity)


def _unit_shortcut(stride: int) -> nn.Module:
    """A 1 -> 2 channel skip whose 1x1 convs are the identity and whose BN (eval, running mean 0, var 1) is too."""
    down = ShakeShakeBlock(1, 2, stride=stride).shortcut
    with torch.no_grad():
        down.conv1.weight.fill_(1.0)
        down.conv2.weight.fill_(1.0)
    return down.eval()


def test_shortcut_path2_reads_the_pixel_up_and_left_of_path1() -> None:
    # Gastaldi's SpatialZeroPadding(1, -1, 1, -1) (PROTOCOL section 4): output (i, j) of path 2 reads x[2i-1, 2j-1],
    # zeros in its first row and column. A 6x6 ramp x[r, c] = 6r + c - 3; the negatives check the ReLU first.
    down = _unit_shortcut(stride=2)
    x = (torch.arange(36.0) - 3.0).reshape(1, 1, 6, 6)
    out = down(x) * math.sqrt(1 + down.bn.eps)  # undo BN's 1/sqrt(var + eps)
    # Path 1 reads x[2i, 2j]: x[0, 0] = -3 and x[0, 2] = -1 are cut to 0 by the ReLU.
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 0.0, 1.0], [9.0, 11.0, 13.0], [21.0, 23.0, 25.0]]),
                               rtol=0, atol=1e-5)
    # Path 2 reads x[2i-1, 2j-1]: x[1, 1] = 4, x[1, 3] = 6, x[3, 1] = 16, x[3, 3] = 18; row 0 and column 0 are padding.
    torch.testing.assert_close(out[0, 1], torch.tensor([[0.0, 0.0, 0.0], [0.0, 4.0, 6.0], [0.0, 16.0, 18.0]]),
                               rtol=0, atol=1e-5)


def test_shortcut_shift_is_one_pixel_right_and_down() -> None:
    # At stride 1 path 2 is the shifted tensor itself: shifted[i, j] = x[i-1, j-1], zero first row and column.
    down = _unit_shortcut(stride=1)
    x = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    out = down(x) * math.sqrt(1 + down.bn.eps)
    torch.testing.assert_close(out[0, 0], x[0, 0], rtol=0, atol=1e-5)
    expected = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, 1.0, 2.0, 3.0], [0.0, 5.0, 6.0, 7.0], [0.0, 9.0, 10.0, 11.0]])
    torch.testing.assert_close(out[0, 1], expected, rtol=0, atol=1e-5)


def test_initialisation_follows_the_lua_code() -> None:
    torch.manual_seed(0)
    model = create_model("shake_shake_26_2x64d")
    # Convs with in != out channels, so fan-in and fan-out give different stds.
    big = model.stages[2][0].branch1[1]  # 128 -> 256 3x3 conv: 295k samples
    expected = math.sqrt(2.0 / (3 * 3 * 256))
    assert abs(big.weight.std().item() - expected) / expected < 0.01
    assert abs(big.weight.mean().item()) < 0.01 * expected
    skip = model.stages[0][0].shortcut.conv1  # 1x1 conv 16 -> 32: fan-out = 32
    expected_skip = math.sqrt(2.0 / 32)
    assert abs(skip.weight.std().item() - expected_skip) / expected_skip < 0.15
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))
    assert torch.equal(model.fc.bias, torch.zeros_like(model.fc.bias))


# ---------------------------------------------------------------- Shake-Shake-Image


def test_explicit_coefficients_forward_a_backward_b() -> None:
    torch.manual_seed(1)
    x1 = torch.randn(3, 4, 5, 5, requires_grad=True)
    x2 = torch.randn(3, 4, 5, 5, requires_grad=True)
    a = torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1, 1)
    b = torch.tensor([0.8, 0.3, 0.05]).view(3, 1, 1, 1)
    y = _shake_shake_image_mix(x1, x2, a, b)
    torch.testing.assert_close(y, a * x1 + (1 - a) * x2)
    y.sum().backward()
    torch.testing.assert_close(x1.grad, b.expand_as(x1))
    torch.testing.assert_close(x2.grad, (1 - b).expand_as(x2))


def _mixing_in_a_training_block(block: ShakeShakeBlock, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``block`` once; return the per-image forward weight a and gradient weight b of branch 1."""
    captured: dict[str, torch.Tensor] = {}

    def _hook(key: str):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
            output.retain_grad()
            captured[key] = output

        return hook

    handles = [block.branch1.register_forward_hook(_hook("x1")), block.branch2.register_forward_hook(_hook("x2"))]
    try:
        y = block(x)
    finally:
        for handle in handles:
            handle.remove()
    x1, x2 = captured["x1"], captured["x2"]
    mixed = (y - block.shortcut(x)).detach()  # = a*x1 + (1-a)*x2
    d, r = (x1 - x2).detach().flatten(1), (mixed - x2.detach()).flatten(1)
    a = (d * r).sum(1) / (d * d).sum(1)  # per-image least squares
    # The forward mixing is one scalar per image (not per pixel or channel).
    torch.testing.assert_close(a.view(-1, 1) * d, r, atol=1e-4, rtol=1e-4)
    y.sum().backward()
    g1, g2 = x1.grad.flatten(1), x2.grad.flatten(1)
    b = g1[:, 0]
    torch.testing.assert_close(g1, b.view(-1, 1).expand_as(g1))
    torch.testing.assert_close(g1 + g2, torch.ones_like(g1))
    return a, b


def test_training_block_draws_independent_per_image_coefficients() -> None:
    torch.manual_seed(2)
    block = ShakeShakeBlock(8, 16, stride=2).train()
    x = torch.randn(6, 8, 6, 6, requires_grad=True)
    a, b = _mixing_in_a_training_block(block, x)
    assert ((a > 0) & (a < 1)).all() and ((b > 0) & (b < 1)).all()
    assert (a - b).abs().min() > 1e-4, "backward mixing must be drawn independently of the forward one"
    assert a.std() > 0.05 and b.std() > 0.05, "coefficients must differ between images"
    a2, _ = _mixing_in_a_training_block(block, x.detach().requires_grad_())
    assert (a - a2).abs().max() > 1e-3, "coefficients must be drawn fresh on every forward pass"


def test_training_noise_uses_the_global_torch_rng() -> None:
    model = create_model("shake_shake_8_2x16d", in_channels=1).train()
    x = torch.randn(4, 1, 8, 8)
    state = torch.get_rng_state()
    y1 = model(x)
    y_other = model(x)
    torch.set_rng_state(state)
    y2 = model(x)
    assert torch.equal(y1, y2)
    assert not torch.allclose(y1, y_other)


def test_eval_is_deterministic_and_mixes_half_half() -> None:
    torch.manual_seed(3)
    x1, x2 = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    assert torch.equal(shake_shake_image(x1, x2, training=False), 0.5 * (x1 + x2))

    block = ShakeShakeBlock(8, 8, stride=1)
    block.train()(torch.randn(4, 8, 5, 5))  # move the BN running stats off their defaults
    block.eval()
    x = torch.randn(4, 8, 5, 5)
    with torch.no_grad():
        expected = x + 0.5 * (block.branch1(x) + block.branch2(x))
        torch.testing.assert_close(block(x), expected)

    model = create_model("shake_shake_8_2x16d", in_channels=1).eval()
    inp = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(inp), model(inp))


# ---------------------------------------------------------------- memory format, autocast, compile


def test_channels_last_matches_contiguous_in_eval() -> None:
    torch.manual_seed(4)
    model = create_model("shake_shake_26_2x32d").eval()
    twin = create_model("shake_shake_26_2x32d")
    twin.load_state_dict(model.state_dict())
    twin = twin.to(memory_format=torch.channels_last).eval()
    assert twin.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        got = twin(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_autocast_bfloat16_on_cpu() -> None:
    torch.manual_seed(5)
    model = create_model("shake_shake_8_2x32d", in_channels=1).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.randn(4, 1, 8, 8))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()
    out.float().square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_traces_without_graph_breaks() -> None:
    # aot_eager traces forward and backward graphs without needing a C++ compiler.
    model = create_model("shake_shake_8_2x16d", in_channels=1).train()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out = compiled(torch.randn(2, 1, 8, 8))
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
