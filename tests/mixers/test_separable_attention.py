"""Separable self-attention: the formula of eq. 2-4 by hand, bidirectional and over each prefix."""

from __future__ import annotations

import pytest
import torch

from trevo.registry import build


@pytest.mark.parametrize("causal", [True, False])
def test_equals_the_formula(causal):
    torch.manual_seed(0)
    m = build("mixer", "separable_attention", {"chunk_size": 3}, d_model=6, causal=causal).double()
    x = torch.randn(2, 8, 6, dtype=torch.float64)
    s, k, v = m.score(x)[..., 0], m.key(x), torch.relu(m.value(x))
    want = torch.zeros_like(x)
    for t in range(8):
        upto = t + 1 if causal else 8
        c = torch.softmax(s[:, :upto], dim=1)
        want[:, t] = v[:, t] * (c[..., None] * k[:, :upto]).sum(1)
    torch.testing.assert_close(m(x), m.out_proj(want))


def test_large_scores_stay_finite():
    m = build("mixer", "separable_attention", {"chunk_size": 2}, d_model=4, causal=True)
    with torch.no_grad():
        m.score.weight.mul_(1e4)
    assert torch.isfinite(m(torch.randn(1, 9, 4))).all()
