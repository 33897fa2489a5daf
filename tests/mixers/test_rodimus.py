"""Rodimus: the mixer equals a float64 loop of its data-dependent tempered selection,
S_t = diag(exp(−g_t τ_t)) S_{t−1} + (ℓ2norm(k_t) g_t^τ_t) v_tᵀ, in every form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.rodimus import Rodimus


def test_rodimus_equals_its_ddts_loop():
    torch.manual_seed(0)
    d, T = 8, 15
    m = Rodimus(d, d_state=5, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    u = m.up_proj(x)
    pad = torch.cat([torch.zeros(2, m.conv.conv_size - 1, u.shape[-1], dtype=torch.float64), u], dim=1)
    shifted = F.silu(torch.stack([(pad[:, t:t + m.conv.conv_size] * m.conv.weight[:, 0].T).sum(1) + m.conv.bias
                                  for t in range(T)], dim=1))
    q, k = m.qk_proj(shifted).chunk(2, dim=-1)
    g, tau = F.softplus(m.g_proj(shifted)), torch.sigmoid(m.tau_proj(shifted))
    v = torch.sigmoid(m.input_gate(u)) * u
    S = torch.zeros(2, 5, u.shape[-1], dtype=torch.float64)
    outs = []
    for t in range(T):
        khat = k[:, t] / k[:, t].norm(dim=-1, keepdim=True) * g[:, t] ** tau[:, t]
        S = torch.exp(-g[:, t] * tau[:, t])[:, :, None] * S + khat[:, :, None] * v[:, t, None, :]
        outs.append(torch.einsum("bk,bkv->bv", q[:, t], S) / 5 ** 0.5)
    o = torch.stack(outs, dim=1) + m.residual_weight * shifted
    expected = m.down_proj(m.norm(o * F.silu(m.gate_proj(x))))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
