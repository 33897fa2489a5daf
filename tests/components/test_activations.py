"""Activations against their formulas."""

from __future__ import annotations

import math

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
