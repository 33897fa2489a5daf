"""Norms against their formulas."""

from __future__ import annotations

import math

import torch

from trevo.registry import create


def test_rmsnorm_and_scalenorm_formulas():
    x = torch.tensor([[3.0, 4.0]])
    torch.testing.assert_close(create("norm", "rmsnorm", d_model=2, eps=0.0)(x),
                               x / math.sqrt(12.5))
    torch.testing.assert_close(create("norm", "scalenorm", d_model=2)(x), math.sqrt(2) * x / 5)
    ln = create("norm", "layernorm", d_model=2)(x)
    torch.testing.assert_close(ln, torch.tensor([[-1.0, 1.0]]), atol=1e-4, rtol=0)
