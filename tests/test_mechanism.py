"""The mechanism behind Figure 2 (PROTOCOL §5): scale-invariant weights reach an angular-update equilibrium that depends
on alpha*lambda' for SGD+L2 and on lambda alone for decoupled decay. Deterministic, about a second per case."""

from __future__ import annotations

import pytest

from hpscape.workers.mechanism import predicted_angular_update, simulate_angular_update

CASES = [  # (variant, alpha, lambda): two alphas per variant, so the test sees what alpha does
    ("sgd", 0.1, 0.04),
    ("sgd", 0.4, 0.01),
    ("sgdw", 0.1, 0.004),
    ("sgdw", 1.0, 0.004),
    ("adamw", 0.01, 0.004),
    ("adamw", 0.001, 0.004),
]


@pytest.mark.parametrize(("variant", "lr", "weight_decay"), CASES)
def test_measured_angular_update_matches_the_equilibrium_formula(variant, lr, weight_decay):
    measured = simulate_angular_update(variant, lr=lr, weight_decay=weight_decay)
    predicted = predicted_angular_update(variant, lr=lr, weight_decay=weight_decay)
    assert measured == pytest.approx(predicted, rel=0.05), (
        f"{variant}: measured {measured:.5f}, formula {predicted:.5f}")


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
