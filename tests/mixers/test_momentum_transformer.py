"""Momentum attention against a float64 loop of the heavy-ball recurrence (p_t, s_t), and β = 0 is
linear attention."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.multihead import split_heads
from trevo.testing import build_mixer


def _loop(m, x):
    q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
    q, k = F.elu(q) + 1, F.elu(k) + 1
    B, H, T, D = q.shape
    p = torch.zeros(B, H, D, D, dtype=x.dtype)
    s = torch.zeros_like(p)
    z = torch.zeros(B, H, D, dtype=x.dtype)
    outs = []
    for t in range(T):
        p = m.momentum * p + k[:, :, t, :, None] * v[:, :, t, None, :]
        s = s + m.step_size * p
        z = z + k[:, :, t]
        outs.append((q[:, :, t, :, None] * s).sum(-2) / ((q[:, :, t] * z).sum(-1, keepdim=True) + m.eps))
    return m.out_proj(torch.stack(outs, 2).transpose(1, 2).flatten(2))


def test_momentum_attention_is_the_heavy_ball_recurrence():
    for beta, gamma in ((0.6, 1.0), (0.9, 0.3), (0.0, 1.0)):
        m = build_mixer("momentum_attention", True, momentum=beta, step_size=gamma)
        x = torch.randn(2, 11, 16, dtype=torch.float64)
        torch.testing.assert_close(m(x), _loop(m, x), rtol=1e-9, atol=1e-11)


def test_zero_momentum_is_linear_attention():
    m = build_mixer("momentum_attention", True, momentum=0.0)
    la = build_mixer("linear_attention", True)
    with torch.no_grad():
        la.qkv.weight.copy_(m.qkv.weight)
        la.out_proj.weight.copy_(m.out_proj.weight)
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    torch.testing.assert_close(m(x), la(x), rtol=1e-9, atol=1e-11)
