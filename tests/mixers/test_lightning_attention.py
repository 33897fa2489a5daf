"""Lightning attention: TransNormerLLM's per-head decays, and the mixer equals a float64 loop of
S_t = λ_h S_{t−1} + k_t v_tᵀ (every form, the blockwise chunk form included)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trevo.components.mixers.lightning_attention import LightningAttention, lightning_log_decays


def test_decays_follow_transnormerllm():
    d = lightning_log_decays(4, 0, 4)
    torch.testing.assert_close(d, torch.tensor([0.0, -2.0, -4.0, -6.0], dtype=torch.float64))
    torch.testing.assert_close(lightning_log_decays(4, 2, 4), d / 2)


def test_lightning_attention_equals_its_decayed_loop():
    torch.manual_seed(0)
    d, H, T = 16, 4, 30
    m = LightningAttention(d, n_heads=H, layer_idx=1, n_layers=3, chunk_size=8).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    q, k, v, u = m.qkvu(x).chunk(4, dim=-1)
    q, k = F.silu(q).view(2, T, H, -1), F.silu(k).view(2, T, H, -1)
    v = v.view(2, T, H, -1)
    lam = torch.tensor([math.exp(-(8 / H) * (1 - 1 / 3) * h) for h in range(H)], dtype=torch.float64)
    S = torch.zeros(2, H, d // H, d // H, dtype=torch.float64)
    outs = []
    for t in range(T):
        S = lam[:, None, None] * S + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outs, dim=1).flatten(2)
    expected = m.out_proj(o / (o.square().mean(-1, keepdim=True) + 1e-6).sqrt() * u)
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
