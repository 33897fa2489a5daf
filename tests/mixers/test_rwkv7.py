"""RWKV-7's time-mix against a float64 loop of the paper's equations (§4) in its own row-vector layout —
S_t = S_{t−1}(diag(w_t) − κ̂_tᵀ(a_t ⊙ κ̂_t)) + v_tᵀ k̃_t, wkv_t = S_t r_t — from the layer's parameters."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trevo.registry import build

D, H, T = 16, 2, 10
Dh = D // H


@pytest.mark.parametrize("form", ["chunk", "quadratic", "recurrent"])
def test_time_mix_equals_the_papers_recurrence(form):
    torch.manual_seed(0)
    m = build("mixer", "rwkv7", {"n_heads": H, "chunk_size": 4, "decay_low_rank_dim": 4, "a_low_rank_dim": 4,
                                 "gate_low_rank_dim": 4, "form": form}, d_model=D, causal=True,
              layer_idx=1, n_layers=3).double()
    with torch.no_grad():  # LoRA A starts at zero; give every data-dependent path a nonzero part
        for lora in (m.w_lora, m.a_lora, m.g_lora):
            lora.A.normal_(0, 0.5)
    x = torch.randn(2, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    S = torch.zeros(2, H, Dh, Dh, dtype=torch.float64)  # [value, key] per head, as the paper writes it
    prev = torch.zeros(2, D, dtype=torch.float64)
    ys = []
    for t in range(T):
        xt = x[:, t]
        mix = {n: xt + (prev - xt) * m.mu[n] for n in ("r", "w", "k", "v", "a", "g")}
        prev = xt
        r, k, v = m.r_proj(mix["r"]), m.k_proj(mix["k"]), m.v_proj(mix["v"])
        w = torch.exp(-math.exp(-0.5) * torch.sigmoid(m.w_lora.bias + torch.tanh(mix["w"] @ m.w_lora.A) @ m.w_lora.B))
        a = torch.sigmoid(m.a_lora.bias + (mix["a"] @ m.a_lora.A) @ m.a_lora.B)
        g = torch.sigmoid(mix["g"] @ m.g_lora.A) @ m.g_lora.B
        kappa = F.normalize((k * m.k_k).view(2, H, Dh), dim=-1)
        k_tilde = (k * (1 + (a - 1) * m.k_a)).view(2, H, Dh)
        a, w, r, v = (z.view(2, H, Dh) for z in (a, w, r, v))
        G = torch.diag_embed(w) - kappa[..., :, None] * (a * kappa)[..., None, :]
        S = S @ G + v[..., :, None] * k_tilde[..., None, :]
        wkv = (S @ r[..., None])[..., 0]
        normed = m.g_norm(wkv.reshape(2, D))
        bonus = ((r * k_tilde * m.r_k).sum(-1, keepdim=True) * v).reshape(2, D)
        ys.append(m.o_proj((normed + bonus) * g))
    torch.testing.assert_close(m(x), torch.stack(ys, dim=1), rtol=1e-9, atol=1e-10)

