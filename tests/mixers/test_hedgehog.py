"""Hedgehog: the mixer equals normalised linear attention through its feature maps (pairwise, float64),
and training the maps on the attention-distillation loss makes them mimic softmax attention better
than the fixed elu + 1 map (the paper's softmax-mimicry property)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.hedgehog import Hedgehog
from trevo.ops.hedgehog import attention_distillation_loss, hedgehog_features


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


def test_trained_maps_mimic_softmax_attention_better_than_elu():
    torch.manual_seed(1)
    d, T = 8, 24
    q, k = torch.randn(16, T, d) * 1.5, torch.randn(16, T, d) * 1.5
    W = torch.eye(d).repeat(2, 1, 1, 1).requires_grad_(True)  # [q | k, H = 1, d, d]
    b = torch.zeros(2, 1, d, requires_grad=True)
    opt = torch.optim.Adam([W, b], lr=0.03)

    def loss():
        fq, fk = hedgehog_features(q[:, None], W[0], b[0]), hedgehog_features(k[:, None], W[1], b[1])
        return attention_distillation_loss(q[:, None], k[:, None], fq, fk)

    start = loss().item()
    for _ in range(150):
        opt.zero_grad()
        value = loss()
        value.backward()
        opt.step()
    elu = attention_distillation_loss(q, k, F.elu(q) + 1, F.elu(k) + 1).item()
    end = loss().item()
    assert end < start - 0.1 and end < elu - 0.2, (start, end, elu)  # measured: 1.85 -> 1.63, elu + 1: 2.09
