"""Gated linear attention: the key-wise gate α_t = σ(·)^(1/τ) and S_t = (α_tᵀ1) ⊙ S_{t−1} + k_tᵀ v_t."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.gla import GatedLinearAttention, gla_log_gate


def test_gate_is_sigmoid_to_the_one_over_tau():
    z = torch.tensor([-3.0, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(gla_log_gate(z, 16.0).exp(), torch.sigmoid(z) ** (1 / 16))


def test_gla_equals_its_gated_outer_product_recurrence():
    torch.manual_seed(0)
    d, H, T = 16, 2, 13
    m = GatedLinearAttention(d, causal=True, n_heads=H, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    dk, dv = m.d_k // H, d // H
    q, k = m.q_proj(x).view(2, T, H, dk), m.k_proj(x).view(2, T, H, dk)
    v = m.v_proj(x).view(2, T, H, dv)
    alpha = torch.sigmoid(m.gate_up(m.gate_down(x))).pow(1 / 16).view(2, T, H, dk)
    S = torch.zeros(2, H, dk, dv, dtype=torch.float64)
    outs = []
    for t in range(T):
        S = alpha[:, t, :, :, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S) * dk ** -0.5)
    o = torch.stack(outs, dim=1)  # [B, T, H, dv]
    expected = m.out_proj(F.silu(m.r_proj(x)) * m.head_norm(o).flatten(2))
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
