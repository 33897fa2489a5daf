"""Activations against their formulas."""

from __future__ import annotations

import torch

from trevo.registry import create


def test_activations():
    x = torch.tensor([-2.0, 0.5, 3.0])
    torch.testing.assert_close(create("activation", "relu2")(x), torch.tensor([0.0, 0.25, 9.0]))
    torch.testing.assert_close(create("activation", "silu")(x), x * torch.sigmoid(x))
