"""Tests for workers.optim: update rules of PROTOCOL section 2, schedules, state round-trips."""

from __future__ import annotations

import copy
import io
import math
import pickle
from collections.abc import Callable

import pytest
import torch

from hpscape.workers.optim import (
    SCHEDULES,
    VARIANTS,
    build_optimizer,
    build_scheduler,
    normalized_weight_decay,
    schedule_multiplier,
)

F64 = torch.float64
SHAPES = [(3, 4), (5,), (2, 2, 3)]
# Small schedule geometry so every schedule changes within a few steps:
# cosine over 8 steps; step drops at 4 and 6; warm restarts with periods 2, 4, 8 (restarts at 2 and 6).
SCHED_KW = dict(total_steps=8, steps_per_epoch=2, t0_epochs=1, t_mult=2)

OptFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]


def _make_params(dtype: torch.dtype = F64) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(1234)
    return [torch.nn.Parameter(torch.randn(s, generator=gen, dtype=F64).to(dtype)) for s in SHAPES]


def _set_grads(params: list[torch.nn.Parameter], gen: torch.Generator) -> None:
    # Gradient of a quadratic 0.5*0.3*theta^2 plus random linear noise: depends on theta, so L2 vs
    # decoupled differences feed back into later steps.
    for p in params:
        noise = torch.randn(p.shape, generator=gen, dtype=F64).to(p.dtype)
        p.grad = 0.3 * p.detach() + noise


def _trajectory(
    make_opt: OptFactory,
    *,
    schedule: str = "cosine",
    steps: int = 6,
    params: list[torch.nn.Parameter] | None = None,
) -> list[list[torch.Tensor]]:
    params = _make_params() if params is None else params
    opt = make_opt(params)
    sched = build_scheduler(schedule, opt, **SCHED_KW)
    gen = torch.Generator().manual_seed(99)
    traj = []
    for _ in range(steps):
        _set_grads(params, gen)
        opt.step()
        sched.step()
        traj.append([p.detach().clone() for p in params])
    return traj


def _assert_traj_close(a, b, *, rtol: float = 1e-12, atol: float = 1e-14) -> None:
    assert len(a) == len(b)
    for step, (xs, ys) in enumerate(zip(a, b)):
        for x, y in zip(xs, ys):
            assert torch.allclose(x, y, rtol=rtol, atol=atol), f"step {step}: max diff {(x - y).abs().max()}"


def _assert_traj_equal(a, b) -> None:
    assert len(a) == len(b)
    for step, (xs, ys) in enumerate(zip(a, b)):
        for x, y in zip(xs, ys):
            assert torch.equal(x, y), f"step {step}: max diff {(x - y).abs().max()}"


def _traj_differs(a, b) -> bool:
    return any(not torch.allclose(x, y, rtol=1e-6, atol=1e-9) for xs, ys in zip(a, b) for x, y in zip(xs, ys))


# ------------------------------------------------------------------------------------------
# Paper equivalences and torch references
# ------------------------------------------------------------------------------------------


def test_proposition1_sgdw_equals_sgd_with_rescaled_l2() -> None:
    alpha, lam = 0.1, 0.02
    sgdw = _trajectory(lambda p: build_optimizer("sgdw", p, lr=alpha, weight_decay=lam, momentum=0.0))
    sgd = _trajectory(lambda p: build_optimizer("sgd", p, lr=alpha, weight_decay=lam / alpha, momentum=0.0))
    _assert_traj_close(sgdw, sgd)
    # The unscaled L2 factor must give a different trajectory, or the check above proves nothing.
    sgd_same_lam = _trajectory(lambda p: build_optimizer("sgd", p, lr=alpha, weight_decay=lam, momentum=0.0))
    assert _traj_differs(sgdw, sgd_same_lam)


def test_momentum_zero_keeps_no_buffer() -> None:
    params = _make_params()
    for variant in ("sgd", "sgdw"):
        opt = build_optimizer(variant, params, lr=0.1, weight_decay=0.01, momentum=0.0)
        _set_grads(params, torch.Generator().manual_seed(0))
        opt.step()
        assert all(len(opt.state[p]) == 0 for p in params), variant


def test_paper_adamw_equals_torch_adamw_with_rescaled_decay() -> None:
    alpha, lam = 0.01, 0.05
    ours = _trajectory(lambda p: build_optimizer("adamw", p, lr=alpha, weight_decay=lam))
    ref = _trajectory(lambda p: torch.optim.AdamW(p, lr=alpha, weight_decay=lam / alpha))
    _assert_traj_close(ours, ref)
    ref_same_lam = _trajectory(lambda p: torch.optim.AdamW(p, lr=alpha, weight_decay=lam))
    assert _traj_differs(ours, ref_same_lam)


REFERENCES: dict[str, tuple[OptFactory, OptFactory]] = {
    "adamw-torch": (
        lambda p: build_optimizer("adamw-torch", p, lr=0.01, weight_decay=0.1),
        lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1),
    ),
    "sgd": (
        lambda p: build_optimizer("sgd", p, lr=0.05, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01),
    ),
    "sgd-foreach": (
        lambda p: build_optimizer("sgd", p, lr=0.05, weight_decay=0.01),
        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=0.01, foreach=True),
    ),
    "adam": (
        lambda p: build_optimizer("adam", p, lr=0.01, weight_decay=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01),
    ),
    "adam-foreach": (
        lambda p: build_optimizer("adam", p, lr=0.01, weight_decay=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01, foreach=True),
    ),
}


@pytest.mark.parametrize("schedule", ["cosine", "warm_restarts"])
@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_matches_torch_reference_exactly(case: str, schedule: str) -> None:
    ours, ref = REFERENCES[case]
    _assert_traj_equal(_trajectory(ours, schedule=schedule), _trajectory(ref, schedule=schedule))


def test_mixed_dtypes_in_one_group_match_torch_adam() -> None:
    def mixed() -> list[torch.nn.Parameter]:
        ps = _make_params()
        ps[1] = torch.nn.Parameter(ps[1].detach().float())
        return ps

    ours = _trajectory(lambda p: build_optimizer("adam", p, lr=0.01, weight_decay=0.01), params=mixed())
    ref = _trajectory(lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01), params=mixed())
    assert ours[-1][1].dtype == torch.float32
    _assert_traj_equal(ours, ref)


# ------------------------------------------------------------------------------------------
# Hand-computed two-step examples (plain Python floats, formulas of PROTOCOL section 2)
# ------------------------------------------------------------------------------------------

THETA0, G1, G2 = 1.5, 0.4, -0.7
ALPHA, WD, MU, B1, B2, EPS = 0.1, 0.05, 0.9, 0.9, 0.999, 1e-8
# Cosine over 3 steps: eta_0 = 1, eta_1 = 0.5*(1 + cos(pi/3)) = 0.75.
ETAS = (1.0, 0.75)


def _hand_sgd(decoupled: bool) -> float:
    theta, v = THETA0, 0.0
    for g, eta in zip((G1, G2), ETAS):
        old = theta
        if not decoupled:
            g = g + WD * old
        v = MU * v + g
        theta = old - ALPHA * eta * v
        if decoupled:
            theta -= eta * WD * old
    return theta


def _hand_adam(mode: str) -> float:
    theta, m, s = THETA0, 0.0, 0.0
    for t, (g, eta) in enumerate(zip((G1, G2), ETAS), start=1):
        old = theta
        if mode == "adam":
            g = g + WD * old
        if mode == "adamw-torch":
            old = old * (1 - ALPHA * eta * WD)  # torch decays first, with lr_t = alpha*eta_t
        m = B1 * m + (1 - B1) * g
        s = B2 * s + (1 - B2) * g * g
        m_hat, s_hat = m / (1 - B1**t), s / (1 - B2**t)
        theta = old - ALPHA * eta * m_hat / (math.sqrt(s_hat) + EPS)
        if mode == "adamw":
            theta -= eta * WD * old
    return theta


HAND = {
    "sgd": lambda: _hand_sgd(False),
    "sgdw": lambda: _hand_sgd(True),
    "adam": lambda: _hand_adam("adam"),
    "adamw": lambda: _hand_adam("adamw"),
    "adamw-torch": lambda: _hand_adam("adamw-torch"),
}


@pytest.mark.parametrize("variant", VARIANTS)
def test_two_step_hand_computed(variant: str) -> None:
    theta = torch.nn.Parameter(torch.tensor([THETA0], dtype=F64))
    opt = build_optimizer(variant, [theta], lr=ALPHA, weight_decay=WD, momentum=MU, betas=(B1, B2), eps=EPS)
    sched = build_scheduler("cosine", opt, total_steps=3, steps_per_epoch=1)
    for g, eta in zip((G1, G2), ETAS):
        assert opt.param_groups[0]["lr"] == pytest.approx(ALPHA * eta, rel=1e-15)
        theta.grad = torch.tensor([g], dtype=F64)
        opt.step()
        sched.step()
    expected = HAND[variant]()
    assert theta.item() == pytest.approx(expected, rel=1e-13, abs=0.0)
    # Each variant's rule must be distinguishable from every other one on this example.
    others = {name: fn() for name, fn in HAND.items() if name != variant}
    assert all(abs(expected - other) > 1e-6 for other in others.values())


# ------------------------------------------------------------------------------------------
# Decoupling: decay multiplied by eta_t only, never by alpha
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["sgdw", "adamw"])
def test_decoupled_decay_independent_of_alpha(variant: str) -> None:
    lam, steps = 0.1, 5
    finals = []
    for alpha in (0.5, 0.01):
        params = _make_params()
        opt = build_optimizer(variant, params, lr=alpha, weight_decay=lam)
        sched = build_scheduler("cosine", opt, **SCHED_KW)
        for _ in range(steps):
            for p in params:
                p.grad = torch.zeros_like(p)
            opt.step()
            sched.step()
        finals.append([p.detach().clone() for p in params])
    _assert_traj_equal([finals[0]], [finals[1]])
    shrink = math.prod(1 - lam * schedule_multiplier("cosine", t, **SCHED_KW) for t in range(steps))
    for p0, p in zip(_make_params(), finals[0]):
        assert torch.allclose(p, p0.detach() * shrink, rtol=1e-13, atol=0)


def test_torch_adamw_decay_depends_on_alpha() -> None:
    # Contrast case: torch's AdamW multiplies the decay by lr_t, so alpha re-enters.
    finals = []
    for alpha in (0.5, 0.01):
        params = _make_params()
        opt = build_optimizer("adamw-torch", params, lr=alpha, weight_decay=0.1)
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        finals.append(params[0].detach().clone())
    assert not torch.allclose(finals[0], finals[1])


def test_params_without_grad_are_untouched() -> None:
    for variant in VARIANTS:
        params = _make_params()
        before = params[1].detach().clone()
        opt = build_optimizer(variant, params, lr=0.1, weight_decay=0.1)
        _set_grads(params, torch.Generator().manual_seed(0))
        params[1].grad = None
        opt.step()
        assert torch.equal(params[1].detach(), before), variant
        assert len(opt.state[params[1]]) == 0, variant
        assert not torch.equal(params[0].detach(), _make_params()[0].detach()), variant


def test_initial_lr_is_recorded_and_drives_eta() -> None:
    params = _make_params()
    opt = build_optimizer("sgdw", params, lr=0.2, weight_decay=0.1, momentum=0.0)
    assert opt.param_groups[0]["initial_lr"] == 0.2
    # A manual lr change (any scheduler would do this) halves eta_t, so the decay halves too.
    opt.param_groups[0]["lr"] = 0.1
    for p in params:
        p.grad = torch.zeros_like(p)
    before = params[0].detach().clone()
    opt.step()
    assert torch.allclose(params[0].detach(), before * (1 - 0.5 * 0.1), rtol=1e-15, atol=0)


# ------------------------------------------------------------------------------------------
# Checkpointing
# ------------------------------------------------------------------------------------------


def _roundtrip(obj: dict) -> dict:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=True)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_roundtrip_mid_run(variant: str, schedule: str) -> None:
    k, total = 3, 7

    def make(params):
        opt = build_optimizer(variant, params, lr=0.05, weight_decay=0.02)
        return opt, build_scheduler(schedule, opt, **SCHED_KW)

    def advance(params, opt, sched, gen, n):
        for _ in range(n):
            _set_grads(params, gen)
            opt.step()
            sched.step()

    params = _make_params()
    opt, sched = make(params)
    gen = torch.Generator().manual_seed(7)
    advance(params, opt, sched, gen, total)
    uninterrupted = [p.detach().clone() for p in params]

    params = _make_params()
    opt, sched = make(params)
    gen = torch.Generator().manual_seed(7)
    advance(params, opt, sched, gen, k)
    saved = _roundtrip(
        {
            "params": [p.detach().clone() for p in params],
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "gen": gen.get_state(),
        }
    )
    del params, opt, sched, gen

    params = [torch.nn.Parameter(t.clone()) for t in saved["params"]]
    opt, sched = make(params)
    opt.load_state_dict(saved["opt"])
    sched.load_state_dict(saved["sched"])
    gen = torch.Generator()
    gen.set_state(saved["gen"])
    advance(params, opt, sched, gen, total - k)
    for x, y in zip(params, uninterrupted):
        assert torch.equal(x.detach(), y), f"max diff {(x.detach() - y).abs().max()}"


# ------------------------------------------------------------------------------------------
# Schedules and normalized decay
# ------------------------------------------------------------------------------------------


def test_cosine_schedule_endpoints_and_lr() -> None:
    kw = dict(total_steps=1000, steps_per_epoch=10)
    values = [schedule_multiplier("cosine", t, **kw) for t in range(1001)]
    assert values[0] == 1.0
    assert values[500] == pytest.approx(0.5, abs=1e-12)
    assert values[999] < 1e-4 and values[1000] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in zip(values, values[1:]))
    opt = build_optimizer("sgdw", _make_params(), lr=0.4, weight_decay=0.0)
    sched = build_scheduler("cosine", opt, **kw)
    for t in range(5):
        assert opt.param_groups[0]["lr"] == pytest.approx(0.4 * values[t], rel=1e-14)
        opt.step()
        sched.step()


def test_warm_restarts_jump_back_to_one() -> None:
    kw = dict(total_steps=10_000, steps_per_epoch=5, t0_epochs=10, t_mult=2)
    t0 = 10 * 5
    # (restart iteration, length of the period it starts): periods t0, 2*t0, 4*t0, 8*t0.
    for boundary, period in ((t0, 2 * t0), (t0 * (1 + 2), 4 * t0), (t0 * (1 + 2 + 4), 8 * t0)):
        before = schedule_multiplier("warm_restarts", boundary - 1, **kw)
        assert before < 1e-2
        assert schedule_multiplier("warm_restarts", boundary, **kw) == 1.0
        # Halfway through the period that just started the multiplier is 0.5.
        mid = schedule_multiplier("warm_restarts", boundary + period // 2, **kw)
        assert mid == pytest.approx(0.5, abs=1e-12)
    assert schedule_multiplier("warm_restarts", t0 // 2, **kw) == pytest.approx(0.5, abs=1e-12)
    # t_mult = 1: equal periods.
    assert schedule_multiplier("warm_restarts", 3 * t0, **{**kw, "t_mult": 1}) == 1.0


def test_step_schedule_drops_by_gamma_at_milestones() -> None:
    kw = dict(total_steps=200, steps_per_epoch=2, milestones=(0.5, 0.75), gamma=0.2)
    assert schedule_multiplier("step", 0, **kw) == 1.0
    assert schedule_multiplier("step", 99, **kw) == 1.0
    assert schedule_multiplier("step", 100, **kw) == pytest.approx(0.2)
    assert schedule_multiplier("step", 149, **kw) == pytest.approx(0.2)
    assert schedule_multiplier("step", 150, **kw) == pytest.approx(0.04)
    assert schedule_multiplier("constant", 150, **kw) == 1.0


def test_normalized_weight_decay_matches_paper_ratio() -> None:
    lam = 1e-3
    got = normalized_weight_decay(197.7 * lam, batch_size=128, train_size=50_000, epochs=100)
    assert got == pytest.approx(lam, rel=1e-3)
    # Doubling the epochs shrinks lambda by sqrt(2).
    twice = normalized_weight_decay(197.7 * lam, batch_size=128, train_size=50_000, epochs=200)
    assert got / twice == pytest.approx(math.sqrt(2), rel=1e-12)


def test_scheduler_and_multipliers_pickle() -> None:
    opt = build_optimizer("adamw", _make_params(), lr=0.01, weight_decay=0.1)
    for name in SCHEDULES:
        sched = build_scheduler(name, opt, **SCHED_KW)
        fn = pickle.loads(pickle.dumps(sched.lr_lambdas[0]))
        assert [fn(t) for t in range(20)] == [schedule_multiplier(name, t, **SCHED_KW) for t in range(20)]
        assert copy.deepcopy(sched.state_dict())["lr_lambdas"][0] is not None


# ------------------------------------------------------------------------------------------
# Input validation
# ------------------------------------------------------------------------------------------


def test_unknown_variant_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as err:
        build_optimizer("lion", _make_params(), lr=0.1, weight_decay=0.0)
    assert all(v in str(err.value) for v in VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("kwargs", [dict(lr=-0.1, weight_decay=0.0), dict(lr=0.1, weight_decay=-1e-4)])
def test_negative_hyperparameters_rejected(variant: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="lr|weight_decay"):
        build_optimizer(variant, _make_params(), **kwargs)


def test_unknown_schedule_lists_valid_ones() -> None:
    opt = build_optimizer("sgd", _make_params(), lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError) as err:
        build_scheduler("linear", opt, total_steps=10, steps_per_epoch=1)
    assert all(s in str(err.value) for s in SCHEDULES)
    with pytest.raises(ValueError):
        schedule_multiplier("linear", 0, total_steps=10, steps_per_epoch=1)


def test_decoupled_decay_with_zero_lr_rejected() -> None:
    with pytest.raises(ValueError, match="lr > 0"):
        build_optimizer("sgdw", _make_params(), lr=0.0, weight_decay=0.1)
