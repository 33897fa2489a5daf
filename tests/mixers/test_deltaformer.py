"""DeltaFormer's layer against a float64 loop of its two softmax stages (the correction with κ(k_t, k_j),
then attention over the corrected values), with RoPE, built from the layer's own projections."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.multihead import merge_heads, split_heads
from trevo.components.rotary import apply_rotary
from trevo.registry import build

D, H, T = 16, 2, 9


@pytest.mark.parametrize("form", ["chunk", "quadratic", "recurrent"])
def test_layer_equals_the_two_stage_softmax_loop(form):
    torch.manual_seed(0)
    rope = build("position", "rope", {}, d_model=D // H, max_len=T)
    m = build("mixer", "deltaformer", {"n_heads": H, "chunk_size": 4, "form": form}, d_model=D, causal=True,
              position=rope).double()
    x = torch.randn(2, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    q, k = apply_rotary(split_heads(m.q_proj(x), H)), apply_rotary(split_heads(m.k_proj(x), H))
    v = split_heads(m.v_proj(x), H)
    beta = torch.sigmoid(m.b_proj(x)).transpose(1, 2)
    s = 1 / math.sqrt(D // H)
    us, os = [], []
    for t in range(T):
        u = v[:, :, t]
        if t:
            w = torch.softmax((k[:, :, :t] @ k[:, :, t, :, None])[..., 0] * s, dim=-1)
            u = u - beta[:, :, t, None] * (w[..., None] * torch.stack(us, 2)).sum(2)
        us.append(u)
        w = torch.softmax((k[:, :, :t + 1] @ q[:, :, t, :, None])[..., 0] * s, dim=-1)
        os.append((w[..., None] * torch.stack(us, 2)).sum(2))
    torch.testing.assert_close(m(x), m.out_proj(merge_heads(torch.stack(os, 2))), rtol=1e-9, atol=1e-10)
