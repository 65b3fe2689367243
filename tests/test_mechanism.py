"""The mechanism behind Figure 2 (PROTOCOL §5): scale-invariant weights reach an angular-update equilibrium that depends
on alpha*lambda' for SGD+L2 and on lambda alone for decoupled decay. Deterministic, about a second per case."""

from __future__ import annotations

import pytest

from hpscape.landscapes.variants import VARIANTS
from hpscape.workers.mechanism import has_closed_form, predicted_angular_update, simulate_angular_update

CASES = [  # (variant, alpha, lambda, eta_t): two alphas per variant, so the test sees what alpha does
    ("sgd", 0.1, 0.04, 1.0),
    ("sgd", 0.4, 0.01, 1.0),
    ("sgd", 0.4, 0.04, 0.25),  # mid-schedule: lr_t = alpha * eta_t
    ("sgdw", 0.1, 0.004, 1.0),
    ("sgdw", 1.0, 0.004, 1.0),
    ("sgdw", 0.1, 0.016, 0.25),  # the decay step eta_t * lambda follows the schedule
    ("adamw", 0.01, 0.004, 1.0),
    ("adamw", 0.001, 0.004, 1.0),
    ("adamw-torch", 0.01, 0.4, 1.0),  # torch's decay alpha * eta_t * lambda
    ("adamw-torch", 0.01, 1.6, 0.25),
    ("amsgradw", 0.01, 0.004, 1.0),
    ("rmspropw", 0.01, 0.004, 1.0),  # no first moment: sqrt(2 * eta_t * lambda)
]


@pytest.mark.parametrize(("variant", "lr", "weight_decay", "eta"), CASES)
def test_measured_angular_update_matches_the_equilibrium_formula(variant, lr, weight_decay, eta):
    # These cases agree within 0.5 % (seeds 0-3 within 0.1 % of each other); 5 % leaves room for what the formula
    # drops (terms of relative order lambda_eff and the angle squared) and for the walk's start from the unit sphere.
    measured = simulate_angular_update(variant, lr=lr, weight_decay=weight_decay, eta=eta)
    predicted = predicted_angular_update(variant, lr=lr, weight_decay=weight_decay, eta=eta)
    assert measured == pytest.approx(predicted, rel=0.05), (
        f"{variant}: measured {measured:.5f}, formula {predicted:.5f}")


def test_the_prediction_couples_alpha_for_l2_only():
    # At the same eta_t, 4x alpha doubles SGD + L2's equilibrium angle (sqrt(lr_t * lambda')) and leaves SGDW's.
    for eta in (1.0, 0.3):
        sgd = [predicted_angular_update("sgd", lr=lr, weight_decay=0.01, eta=eta) for lr in (0.05, 0.2)]
        sgdw = [predicted_angular_update("sgdw", lr=lr, weight_decay=0.01, eta=eta) for lr in (0.05, 0.2)]
        assert sgd[1] / sgd[0] == pytest.approx(2.0, rel=1e-12)
        assert sgdw[1] == sgdw[0]
        assert predicted_angular_update("sgdw", lr=0.05, weight_decay=0.01, eta=eta) == pytest.approx(
            (2 * eta * 0.01 * 0.1 / 1.9) ** 0.5, rel=1e-12)


def test_only_l2_inside_an_adaptive_step_lacks_a_closed_form():
    for name, variant in VARIANTS.items():
        adaptive_l2 = variant.decay == "l2" and "momentum" not in variant.hyperparameters
        assert has_closed_form(name) is not adaptive_l2, name


def test_sgd_l2_couples_the_knobs_and_decoupled_decay_does_not():
    # SGD+L2: doubling alpha at fixed lambda' turns the weights sqrt(2) times faster ...
    slow = simulate_angular_update("sgd", lr=0.1, weight_decay=0.01)
    fast = simulate_angular_update("sgd", lr=0.2, weight_decay=0.01)
    assert fast / slow == pytest.approx(2**0.5, rel=0.05)
    # ... while SGDW and paper AdamW turn at the same rate whatever alpha is.
    for variant, low, high in (("sgdw", 0.05, 0.8), ("adamw", 0.002, 0.02)):
        a = simulate_angular_update(variant, lr=low, weight_decay=0.004)
        b = simulate_angular_update(variant, lr=high, weight_decay=0.004)
        assert a == pytest.approx(b, rel=0.05), f"{variant}: alpha changed the equilibrium ({a:.5f} vs {b:.5f})"


def test_variants_without_a_closed_form_say_so():
    with pytest.raises(ValueError, match="no closed form for 'adam'"):
        predicted_angular_update("adam", lr=0.01, weight_decay=0.01)
