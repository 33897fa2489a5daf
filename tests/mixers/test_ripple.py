"""Ripple attention: stick-breaking weights by hand, Chebyshev rings by hand, and the prefix (summed-area)
and local (window + global) forms against a loop over query and key positions."""

from __future__ import annotations

import pytest
import torch

from trevo.ops.ripple import chebyshev_rings, ring_weights, ripple_local, ripple_prefix


def test_stick_breaking_by_hand():
    w = ring_weights(torch.zeros(1, 3))  # σ = 1/2: 1/2, 1/4, 1/8 and the rest 1/8
    torch.testing.assert_close(w, torch.tensor([[0.5, 0.25, 0.125, 0.125]]))
    assert torch.allclose(ring_weights(torch.randn(4, 5)).sum(-1), torch.ones(4))


def test_rings_by_hand():
    rings = chebyshev_rings(3, 3)
    assert rings[4].view(3, 3).tolist() == [[1, 1, 1], [1, 0, 1], [1, 1, 1]]  # around the centre
    assert rings[0].view(3, 3).tolist() == [[0, 1, 2], [1, 1, 2], [2, 2, 2]]  # around a corner


@pytest.mark.parametrize("form", [ripple_prefix, ripple_local])
def test_fast_forms_equal_the_loop(form):
    torch.manual_seed(0)
    hgt, wid = 4, 5
    q, k = (torch.rand(2, 2, hgt * wid, 3, dtype=torch.float64) + 0.1 for _ in range(2))
    v = torch.randn(2, 2, hgt * wid, 2, dtype=torch.float64)
    logits = torch.randn(2, 2, dtype=torch.float64)
    alpha = ring_weights(logits)
    want = torch.zeros_like(v)
    for i in range(hgt * wid):
        num, den = 0, 0
        for j in range(hgt * wid):
            r = max(abs(i // wid - j // wid), abs(i % wid - j % wid))
            w = alpha[:, min(r, 2)][None, :, None] * (q[:, :, i] * k[:, :, j]).sum(-1, keepdim=True)
            num, den = num + w * v[:, :, j], den + w
        want[:, :, i] = num / den
    torch.testing.assert_close(form(q, k, v, logits, (hgt, wid)), want)
