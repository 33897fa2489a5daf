"""Hedgehog: the mixer equals normalised linear attention through its feature maps, pairwise in float64
(the softmax-mimicry objective: tests/ops/test_hedgehog.py)."""

from __future__ import annotations

import torch

from trevo.components.mixers.hedgehog import Hedgehog


def phi(x, W, b):
    """exp([z, −z]) / Σ exp([z, −z]) with z = x W + b, written out."""
    z = x @ W + b
    e = torch.cat([z.exp(), (-z).exp()], dim=-1)
    return e / e.sum(-1, keepdim=True)


def test_hedgehog_equals_normalised_linear_attention_through_its_maps():
    torch.manual_seed(0)
    d, H, T = 16, 2, 19
    m = Hedgehog(d, n_heads=H, chunk_size=8).double()
    with torch.no_grad():
        m.map_weight.add_(0.3 * torch.randn_like(m.map_weight))
        m.map_bias.normal_()
    x = torch.randn(2, T, d, dtype=torch.float64)
    q, k, v = (t.unflatten(-1, (H, -1)).transpose(1, 2) for t in m.qkv(x).chunk(3, dim=-1))
    fq = torch.stack([phi(q[:, h], m.map_weight[0, h], m.map_bias[0, h]) for h in range(H)], dim=1)
    fk = torch.stack([phi(k[:, h], m.map_weight[1, h], m.map_bias[1, h]) for h in range(H)], dim=1)
    A = (fq @ fk.transpose(-1, -2)).tril()
    o = (A @ v) / (A.sum(-1, keepdim=True) + m.eps)
    expected = m.out_proj(o.transpose(1, 2).flatten(2))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


