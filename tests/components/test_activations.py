"""Activations against their formulas."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.registry import create


def test_activations():
    x = torch.tensor([-2.0, 0.5, 3.0])
    torch.testing.assert_close(create("activation", "relu2")(x), torch.tensor([0.0, 0.25, 9.0]))
    torch.testing.assert_close(create("activation", "silu")(x), x * torch.sigmoid(x))


def test_gelu_tanh_is_the_tanh_approximation():
    """GPT-2's gelu_new: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    x = torch.linspace(-6, 6, 241, dtype=torch.float64)
    reference = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    assert torch.allclose(create("activation", "gelu_tanh")(x), reference, atol=1e-12)
    assert (create("activation", "gelu_tanh")(x) - create("activation", "gelu")(x)).abs().max() > 1e-5


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


# Each activation's formula, written out by hand (the survey's definitions and each paper's constants).
SELU_LAMBDA, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772
FORMULAS = {
    "elu": lambda x: x if x > 0 else math.exp(x) - 1,
    "selu": lambda x: SELU_LAMBDA * (x if x > 0 else SELU_ALPHA * (math.exp(x) - 1)),
    "celu": lambda x: max(0.0, x) + min(0.0, math.exp(x) - 1),
    "hard_sigmoid": lambda x: min(max(x / 6 + 0.5, 0.0), 1.0),
    "hard_swish": lambda x: x * min(max(x + 3, 0.0), 6.0) / 6,
    "softplus": lambda x: math.log(1 + math.exp(x)),
    "leaky_relu": lambda x: x if x > 0 else 0.01 * x,
    "tanh": math.tanh,
    "softsign": lambda x: x / (1 + abs(x)),
    "squareplus": lambda x: (x + math.sqrt(x * x + 4)) / 2,
    "swish": lambda x: x * _sigmoid(x),  # β = 1 at initialisation
    "prelu": lambda x: x if x > 0 else 0.25 * x,
    "snake": lambda x: x + math.sin(x) ** 2,  # α = 1
    "srelu": lambda x: x if x >= 1 else (0.2 * x if x <= 0 else x),
}
POINTS = [-4.0, -2.5, -1.0, -0.3, 0.0, 0.4, 0.5, 1.0, 1.7, 3.0, 5.0]


@pytest.mark.parametrize("name", sorted(FORMULAS))
def test_activation_matches_its_formula_on_a_hand_table(name):
    fn = create("activation", name).double()
    got = fn(torch.tensor(POINTS, dtype=torch.float64))
    for x, y in zip(POINTS, got.tolist(), strict=True):
        assert y == pytest.approx(FORMULAS[name](x), rel=1e-7, abs=1e-12), (name, x)  # float32 parameters


def test_learned_activations_learn_their_parameters():
    x = torch.tensor(POINTS, dtype=torch.float64)
    swish = create("activation", "swish", beta=2.0).double()
    torch.testing.assert_close(swish(x), x * torch.sigmoid(2 * x))
    snake = create("activation", "snake", alpha=3.0).double()
    torch.testing.assert_close(snake(x), x + torch.sin(3 * x) ** 2 / 3)
    srelu = create("activation", "srelu").double()
    with torch.no_grad():
        srelu.t_left.fill_(-1.0), srelu.a_left.fill_(0.5), srelu.t_right.fill_(2.0), srelu.a_right.fill_(3.0)
    expected = [-1 + 0.5 * (v + 1) if v <= -1 else (2 + 3 * (v - 2) if v >= 2 else v) for v in POINTS]
    torch.testing.assert_close(srelu(x), torch.tensor(expected, dtype=torch.float64))
    # every parameter gets a gradient (SReLU off its initialisation, where a_r = 1 makes t_r's zero)
    for fn in (swish, create("activation", "prelu").double(), snake, srelu):
        fn(x).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in fn.parameters()), fn
