"""Collaborative attention equals its formula per head (shared query/key projections, a mixing vector per
head), and with block-indicator mixing vectors it is ordinary multi-head attention."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.registry import create

D, T, H = 16, 6, 4


@pytest.mark.parametrize("causal", [True, False])
def test_equals_the_formula_per_head(causal):
    torch.manual_seed(0)
    m = create("mixer", "collaborative_attention", d_model=D, causal=causal, n_heads=H, expand_k=0.75).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k = m.q_proj(x), m.k_proj(x)  # [B, T, 12]: shared by every head
    v = m.v_proj(x).view(2, T, H, D // H)
    out = torch.zeros(2, T, H, D // H, dtype=torch.float64)
    for b in range(2):
        for h in range(H):
            for i in range(T):
                keys = range(i + 1 if causal else T)
                s = torch.stack([(q[b, i] * m.mixing[h] * k[b, j]).sum() / math.sqrt(12) for j in keys])
                out[b, i, h] = sum(w * v[b, j, h] for w, j in zip(torch.softmax(s, 0), keys, strict=True))
    for form in ("sdpa", "chunk"):
        m.form = form
        torch.testing.assert_close(m(x), m.out_proj(out.flatten(2)))


def test_block_indicator_mixing_is_multi_head_attention():
    torch.manual_seed(0)
    m = create("mixer", "collaborative_attention", d_model=D, causal=True, n_heads=H, expand_k=1.0).double()
    mha = create("mixer", "softmax_attention", d_model=D, causal=True, n_heads=H).double()
    with torch.no_grad():
        # m_h = √H on head h's block of d_k / H coordinates: (q ⊙ m_h)·k/√d_k = q_h·k_h/√(d_k/H)
        m.mixing.copy_(math.sqrt(H) * torch.eye(H).repeat_interleave(D // H, dim=1))
        mha.q_proj.weight.copy_(m.q_proj.weight)
        mha.kv_proj.weight.copy_(torch.cat([m.k_proj.weight, m.v_proj.weight]))
        mha.out_proj.weight.copy_(m.out_proj.weight)
    x = torch.randn(2, T, D, dtype=torch.float64)
    torch.testing.assert_close(m(x), mha(x))
