"""LightNet's additive recurrence: the mixer equals S_t = Σ_{i<=t} (exp(k_i) / Σ_{j<=t} exp(k_j)) v_i-outer
written out per t (a softmax over the past per key channel), in every form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.lightnet import LightNet


def test_lightnet_equals_the_softmax_over_the_past_per_channel():
    torch.manual_seed(0)
    d, H, T = 16, 2, 17
    m = LightNet(d, n_heads=H, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64) * 2
    q, k, v = (t.view(2, T, H, -1) for t in m.qkv(x).chunk(3, dim=-1))
    outs = []
    for t in range(T):
        w = torch.softmax(k[:, :t + 1], dim=1)  # [B, t+1, H, Dk]: over time, per channel
        S = torch.einsum("bihk,bihv->bhkv", w, v[:, :t + 1])
        outs.append(torch.einsum("bhk,bhkv->bhv", F.silu(q[:, t]), S) * (d // H) ** -0.5)
    o = torch.stack(outs, dim=1).flatten(2)
    expected = m.out_proj(m.norm(o) * F.silu(m.gate(x)))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
