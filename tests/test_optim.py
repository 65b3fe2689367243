"""Tests for hpscape.workers.optim: update rules of PROTOCOL section 2, schedules, state round-trips."""

from __future__ import annotations

import copy
import io
import math
import pickle
from collections.abc import Callable

import pytest
import torch

from hpscape.landscapes.variants import FAMILIES, VARIANT_NAMES, VARIANTS
from hpscape.landscapes.vocabulary import SCHEDULES
from hpscape.workers.optim import (
    FAMILY_OPTIMIZERS,
    WarmRestartsMultiplier,
    build_optimizer,
    build_scheduler,
    normalized_weight_decay,
    schedule_multiplier,
)
from hpscape.workers.optim.decay import NORMALIZED_DECAY_FORMS, scheduled_weight_decay
from hpscape.workers.optim.schedules import restart_period_epochs

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


DECOUPLED = [name for name, variant in VARIANTS.items() if variant.decay == "decoupled"]


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
    # beta2 = 0.5 so that v shrinks on some steps and v_max differs from v (see the test right below).
    "amsgrad": (
        lambda p: build_optimizer("amsgrad", p, lr=0.01, weight_decay=0.01, betas=(0.9, 0.5)),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01, betas=(0.9, 0.5), amsgrad=True),
    ),
    "amsgrad-foreach": (
        lambda p: build_optimizer("amsgrad", p, lr=0.01, weight_decay=0.01, betas=(0.9, 0.5)),
        lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.01, betas=(0.9, 0.5), amsgrad=True, foreach=True),
    ),
    "amsgrad-defaults": (
        lambda p: build_optimizer("amsgrad", p, lr=0.01, weight_decay=0.01),
        lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=True),
    ),
    # torch calls RMSProp's rho `alpha`.
    "rmsprop": (
        lambda p: build_optimizer("rmsprop", p, lr=0.01, weight_decay=0.01, rho=0.9),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.01),
    ),
    "rmsprop-foreach": (
        lambda p: build_optimizer("rmsprop", p, lr=0.01, weight_decay=0.01, rho=0.9),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8, weight_decay=0.01, foreach=True),
    ),
    "rmsprop-defaults": (
        lambda p: build_optimizer("rmsprop", p, lr=0.01, weight_decay=0.01),
        lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.01),
    ),
    "adagrad": (
        lambda p: build_optimizer("adagrad", p, lr=0.1, weight_decay=0.01),
        lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10, weight_decay=0.01),
    ),
    "adagrad-foreach": (
        lambda p: build_optimizer("adagrad", p, lr=0.1, weight_decay=0.01),
        lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10, weight_decay=0.01, foreach=True),
    ),
    "adagrad-no-decay": (  # torch's foreach path takes its other numerator branch without decay
        lambda p: build_optimizer("adagrad", p, lr=0.1, weight_decay=0.0),
        lambda p: torch.optim.Adagrad(p, lr=0.1, eps=1e-10, foreach=True),
    ),
}


@pytest.mark.parametrize("schedule", ["cosine", "warm_restarts"])
@pytest.mark.parametrize("case", sorted(REFERENCES))
def test_matches_torch_reference_exactly(case: str, schedule: str) -> None:
    ours, ref = REFERENCES[case]
    _assert_traj_equal(_trajectory(ours, schedule=schedule), _trajectory(ref, schedule=schedule))


def test_amsgrad_reference_case_exercises_the_maximum() -> None:
    # If v never shrank, AMSGrad would equal Adam and the "amsgrad" reference case would not test v_max.
    amsgrad = _trajectory(REFERENCES["amsgrad"][0])
    adam = _trajectory(lambda p: build_optimizer("adam", p, lr=0.01, weight_decay=0.01, betas=(0.9, 0.5)))
    assert _traj_differs(amsgrad, adam)


MIXED_DTYPE_REFERENCES: dict[str, tuple[OptFactory, OptFactory]] = {
    "adam": REFERENCES["adam"],
    "amsgrad": REFERENCES["amsgrad"],
    "rmsprop": REFERENCES["rmsprop"],
    "adagrad": REFERENCES["adagrad-foreach"],
}


@pytest.mark.parametrize("case", sorted(MIXED_DTYPE_REFERENCES))
def test_mixed_dtypes_in_one_group_match_torch(case: str) -> None:
    def mixed() -> list[torch.nn.Parameter]:
        ps = _make_params()
        ps[1] = torch.nn.Parameter(ps[1].detach().float())
        return ps

    ours, ref = MIXED_DTYPE_REFERENCES[case]
    ours_traj = _trajectory(ours, params=mixed())
    assert ours_traj[-1][1].dtype == torch.float32
    _assert_traj_equal(ours_traj, _trajectory(ref, params=mixed()))


# ------------------------------------------------------------------------------------------
# Hand-computed two-step examples (plain Python floats, formulas of PROTOCOL section 2)
# ------------------------------------------------------------------------------------------

# G2 is small next to G1 so that AMSGrad's v shrinks at step 2 (v_max != v) with beta2 = 0.9.
THETA0, G1, G2 = 1.5, 2.0, -0.1
ALPHA, WD, MU, B1, B2 = 0.1, 0.05, 0.9, 0.9, 0.9
# Not passed to build_optimizer: the builder must take them from the registry.
RHO, EPS, EPS_ADAGRAD = 0.99, 1e-8, 1e-10
# Cosine over 3 steps: eta_0 = 1, eta_1 = 0.5*(1 + cos(pi/3)) = 0.75.
ETAS = (1.0, 0.75)


def _sgd_direction(state: dict, g: float, t: int) -> float:
    state["v"] = MU * state.get("v", 0.0) + g
    return state["v"]


def _adam_direction(state: dict, g: float, t: int, *, amsgrad: bool = False) -> float:
    state["m"] = B1 * state.get("m", 0.0) + (1 - B1) * g
    state["v"] = B2 * state.get("v", 0.0) + (1 - B2) * g * g
    state["v_max"] = max(state.get("v_max", 0.0), state["v"])
    v = state["v_max"] if amsgrad else state["v"]
    return (state["m"] / (1 - B1**t)) / (math.sqrt(v) / math.sqrt(1 - B2**t) + EPS)


def _amsgrad_direction(state: dict, g: float, t: int) -> float:
    return _adam_direction(state, g, t, amsgrad=True)


def _rmsprop_direction(state: dict, g: float, t: int) -> float:
    state["v"] = RHO * state.get("v", 0.0) + (1 - RHO) * g * g
    return g / (math.sqrt(state["v"]) + EPS)


def _adagrad_direction(state: dict, g: float, t: int) -> float:
    state["s"] = state.get("s", 0.0) + g * g
    return g / (math.sqrt(state["s"]) + EPS_ADAGRAD)


# Family -> the direction d of its step theta <- theta - alpha*eta_t*d on the (possibly L2-augmented) gradient g.
HAND_DIRECTIONS: dict[str, Callable[[dict, float, int], float]] = {
    "sgd": _sgd_direction,
    "adam": _adam_direction,
    "amsgrad": _amsgrad_direction,
    "rmsprop": _rmsprop_direction,
    "adagrad": _adagrad_direction,
}


def _hand(variant: str) -> float:
    direction, decay = HAND_DIRECTIONS[VARIANTS[variant].family.name], VARIANTS[variant].decay
    theta, state = THETA0, {}
    for t, (g, eta) in enumerate(zip((G1, G2), ETAS), start=1):
        old = theta
        if decay == "l2":
            g = g + WD * old
        if decay == "torch":
            old = old * (1 - ALPHA * eta * WD)  # torch decays first, with lr_t = alpha*eta_t
        theta = old - ALPHA * eta * direction(state, g, t)
        if decay == "decoupled":
            theta -= eta * WD * old
    return theta


def test_hand_example_engages_amsgrad_maximum() -> None:
    # Step 2's v is below step 1's, so AMSGrad's hand value is not Adam's.
    v1 = (1 - B2) * G1**2
    assert B2 * v1 + (1 - B2) * G2**2 < v1


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_two_step_hand_computed(variant: str) -> None:
    theta = torch.nn.Parameter(torch.tensor([THETA0], dtype=F64))
    opt = build_optimizer(variant, [theta], lr=ALPHA, weight_decay=WD, momentum=MU, betas=(B1, B2))
    sched = build_scheduler("cosine", opt, total_steps=3, steps_per_epoch=1)
    for g, eta in zip((G1, G2), ETAS):
        assert opt.param_groups[0]["lr"] == pytest.approx(ALPHA * eta, rel=1e-15)
        theta.grad = torch.tensor([g], dtype=F64)
        opt.step()
        sched.step()
    expected = _hand(variant)
    assert theta.item() == pytest.approx(expected, rel=1e-13, abs=0.0)
    # Each variant's rule must be distinguishable from every other one on this example.
    others = {name: _hand(name) for name in VARIANT_NAMES if name != variant}
    assert all(abs(expected - other) > 1e-6 for other in others.values()), others


def test_explicit_eps_overrides_the_family_default() -> None:
    theta = torch.nn.Parameter(torch.tensor([THETA0], dtype=F64))
    opt = build_optimizer("adagradw", [theta], lr=ALPHA, weight_decay=WD, eps=0.5)
    theta.grad = torch.tensor([G1], dtype=F64)
    opt.step()
    # s = G1^2, so the step is alpha * G1 / (|G1| + 0.5); the decay at eta_0 = 1 is WD * THETA0.
    expected = THETA0 - ALPHA * G1 / (abs(G1) + 0.5) - WD * THETA0
    assert theta.item() == pytest.approx(expected, rel=1e-15, abs=0.0)


# ------------------------------------------------------------------------------------------
# Decoupling: decay multiplied by eta_t only, never by alpha
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", DECOUPLED)
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


# Powers of two (and 0), so lr_t = alpha*m and eta_t = lr_t/alpha are exact for any alpha and the checks below
# can be bitwise; 1.0 after 0.25 is a restart.
LAMBDA_MULTIPLIERS = (1.0, 0.5, 0.25, 1.0, 0.125, 0.0)


@pytest.mark.parametrize("variant", DECOUPLED)
def test_decoupled_decay_factor_per_step_is_one_minus_eta_lambda(variant: str) -> None:
    lam = 0.1
    for alpha in (0.5, 0.003):
        params = _make_params()
        opt = build_optimizer(variant, params, lr=alpha, weight_decay=lam)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: LAMBDA_MULTIPLIERS[t])
        for eta in LAMBDA_MULTIPLIERS[:-1]:
            before = [p.detach().clone() for p in params]
            for p in params:
                p.grad = torch.zeros_like(p)  # no step on g: what remains is the decay alone
            opt.step()
            sched.step()
            for b, p in zip(before, params):
                assert torch.equal(p.detach(), b * (1 - eta * lam)), f"alpha={alpha}, eta_t={eta}"


@pytest.mark.parametrize("variant", DECOUPLED)
def test_decoupled_form_is_the_plain_step_plus_decay(variant: str) -> None:
    # With gradients that do not depend on theta, the W form's increments are the decay-free optimizer's plus
    # -eta_t*lambda*theta_old: the step itself never sees lambda. Checked for two alphas under warm restarts.
    lam, steps = 0.05, 7
    for alpha in (0.2, 0.01):
        noise = torch.Generator().manual_seed(5)
        grads = [[torch.randn(s, generator=noise, dtype=F64) for s in SHAPES] for _ in range(steps)]
        plain_params, decayed_params = _make_params(), _make_params()
        plain = build_optimizer(variant, plain_params, lr=alpha, weight_decay=0.0)
        decayed = build_optimizer(variant, decayed_params, lr=alpha, weight_decay=lam)
        scheds = [build_scheduler("warm_restarts", opt, **SCHED_KW) for opt in (plain, decayed)]
        for t in range(steps):
            eta = schedule_multiplier("warm_restarts", t, **SCHED_KW)
            plain_before = [p.detach().clone() for p in plain_params]
            decayed_before = [p.detach().clone() for p in decayed_params]
            for p, q, g in zip(plain_params, decayed_params, grads[t]):
                p.grad, q.grad = g.clone(), g.clone()
            plain.step()
            decayed.step()
            for sched in scheds:
                sched.step()
            for p0, p1, q0, q1 in zip(plain_before, plain_params, decayed_before, decayed_params):
                expected = q0 + (p1.detach() - p0) - eta * lam * q0
                assert torch.allclose(q1.detach(), expected, rtol=1e-12, atol=1e-14), f"alpha={alpha}, t={t}"


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
    for variant in VARIANT_NAMES:
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
@pytest.mark.parametrize("variant", VARIANT_NAMES)
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


def test_restart_period_epochs_is_the_current_period() -> None:
    # T_0 = 2 epochs of 3 steps, T_mult = 2: periods of 2, 4, 8 epochs start at iterations 0, 6, 18.
    kw = dict(steps_per_epoch=3, t0_epochs=2, t_mult=2)
    assert [restart_period_epochs(t, **kw) for t in (0, 5, 6, 17, 18, 41, 42)] == [2, 2, 4, 4, 8, 8, 16]
    assert restart_period_epochs(100, steps_per_epoch=3, t0_epochs=2, t_mult=1) == 2
    restarts = WarmRestartsMultiplier(period=6, t_mult=2)
    assert [restarts.period_of(t) for t in (0, 5, 6, 17, 18)] == [(0, 0, 6), (0, 5, 6), (1, 0, 12), (1, 11, 12),
                                                                  (2, 0, 24)]
    assert WarmRestartsMultiplier(period=6, t_mult=1).period_of(13) == (2, 1, 6)
    # The periods are the scheduler's: eta_t is 1 exactly where a period starts.
    starts = [t for t in range(60) if schedule_multiplier("warm_restarts", t, total_steps=60, **kw) == 1.0]
    assert starts == [0, 6, 18, 42]
    with pytest.raises(ValueError, match="t0_epochs"):
        restart_period_epochs(0, steps_per_epoch=3, t0_epochs=0)


@pytest.mark.parametrize(("variant", "normalizes"), [(name, VARIANTS[name].decay == "decoupled") for name in VARIANTS])
def test_scheduled_weight_decay_normalizes_decoupled_forms_only(variant: str, normalizes: bool) -> None:
    kw = dict(decay_form=VARIANTS[variant].decay, batch_size=128, train_size=50_000)
    raw = scheduled_weight_decay(0.05, normalized=False, period_epochs=100, **kw)
    assert raw == 0.05
    got = scheduled_weight_decay(0.05, normalized=True, period_epochs=100, **kw)
    expected = normalized_weight_decay(0.05, batch_size=128, train_size=50_000, epochs=100)
    assert got == (expected if normalizes else 0.05)
    assert normalizes == (VARIANTS[variant].decay in NORMALIZED_DECAY_FORMS)


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
    with pytest.raises(ValueError, match="unknown variant 'lion'") as err:
        build_optimizer("lion", _make_params(), lr=0.1, weight_decay=0.0)
    assert all(v in str(err.value) for v in VARIANT_NAMES)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
@pytest.mark.parametrize("kwargs", [dict(lr=-0.1, weight_decay=0.0), dict(lr=0.1, weight_decay=-1e-4)])
def test_negative_hyperparameters_rejected(variant: str, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="lr|weight_decay"):
        build_optimizer(variant, _make_params(), **kwargs)


def test_unknown_schedule_lists_valid_ones() -> None:
    opt = build_optimizer("sgd", _make_params(), lr=0.1, weight_decay=0.0)
    with pytest.raises(ValueError, match="unknown schedule 'linear'") as err:
        build_scheduler("linear", opt, total_steps=10, steps_per_epoch=1)
    assert all(s in str(err.value) for s in SCHEDULES)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        schedule_multiplier("linear", 0, total_steps=10, steps_per_epoch=1)


def test_decoupled_decay_with_zero_lr_rejected() -> None:
    with pytest.raises(ValueError, match="lr > 0"):
        build_optimizer("sgdw", _make_params(), lr=0.0, weight_decay=0.1)


@pytest.mark.parametrize(
    ("variant", "kwargs", "match"),
    [
        ("rmsprop", dict(rho=1.0), "rho"),
        ("rmspropw", dict(rho=-0.1), "rho"),
        ("amsgrad", dict(betas=(0.9, 1.0)), "betas"),
        ("adagrad", dict(eps=-1e-10), "eps"),
        ("sgdw", dict(momentum=1.0), "momentum"),
    ],
)
def test_family_hyperparameters_validated(variant: str, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_optimizer(variant, _make_params(), lr=0.1, weight_decay=0.0, **kwargs)


# ------------------------------------------------------------------------------------------
# The builder follows the registry
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_every_registry_variant_builds_and_steps(variant: str) -> None:
    spec = VARIANTS[variant]
    params = _make_params()
    opt = build_optimizer(variant, params, lr=0.01, weight_decay=0.01)
    group = opt.param_groups[0]
    if spec.decay == "torch":
        assert type(opt) is torch.optim.AdamW
    else:
        assert type(opt) is FAMILY_OPTIMIZERS[spec.family.name]
        assert group["decoupled"] is (spec.decay == "decoupled")
    if spec.family.eps is not None:
        assert group["eps"] == spec.family.eps
    _set_grads(params, torch.Generator().manual_seed(3))
    grads_before = [p.grad.clone() for p in params]
    for _ in range(2):
        opt.step()
    for p, p0, g0 in zip(params, _make_params(), grads_before):
        assert torch.isfinite(p).all()
        assert not torch.equal(p.detach(), p0.detach())
        assert torch.equal(p.grad, g0), "the L2 term must not be written into p.grad"


def test_every_registry_family_has_an_optimizer() -> None:
    assert set(FAMILY_OPTIMIZERS) == set(FAMILIES)
    for name, family_class in FAMILY_OPTIMIZERS.items():
        assert family_class.family == name
        if FAMILIES[name].eps is not None:
            # Built directly (not through build_optimizer), a family still takes its epsilon from the registry.
            assert family_class(_make_params(), lr=0.1).param_groups[0]["eps"] == FAMILIES[name].eps, name


# build_optimizer's family arguments, keyed by the registry's axis names (`Family.hyperparameters`):
# (baseline value, a value that changes the trajectory). eps is passed explicitly so its change is visible.
_AXIS_ARGUMENTS = {
    "momentum": (0.9, 0.5),
    "beta1": (0.9, 0.5),
    "beta2": (0.999, 0.9),
    "eps": (1e-8, 0.3),
    "rho": (0.99, 0.5),
}


def _build_kwargs(values: dict[str, float]) -> dict:
    return dict(
        momentum=values["momentum"], betas=(values["beta1"], values["beta2"]), eps=values["eps"], rho=values["rho"]
    )


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_each_variant_reads_exactly_its_registry_hyperparameters(variant: str) -> None:
    reads = set(VARIANTS[variant].hyperparameters)
    assert reads <= set(_AXIS_ARGUMENTS), reads - set(_AXIS_ARGUMENTS)
    baseline = {axis: base for axis, (base, _) in _AXIS_ARGUMENTS.items()}

    def run(values: dict[str, float]):
        kwargs = _build_kwargs(values)
        return _trajectory(lambda p: build_optimizer(variant, p, lr=0.01, weight_decay=0.01, **kwargs), steps=4)

    reference = run(baseline)
    for axis, (_, changed) in _AXIS_ARGUMENTS.items():
        traj = run({**baseline, axis: changed})
        if axis in reads:
            assert _traj_differs(reference, traj), f"{variant} ignores {axis}, which the registry says it reads"
        else:
            _assert_traj_equal(reference, traj)
