"""RetNet retention: the decay matrix D_nm = γ^(n−m) and the multi-scale γ_h = 1 − 2^(−5−h)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trevo.components.mixers.retnet import Retention, retnet_decays
from trevo.components.rotary import apply_rotary


def test_multi_scale_decays_are_the_papers():
    assert retnet_decays(3).tolist() == [1 - 1 / 32, 1 - 1 / 64, 1 - 1 / 128]


def test_retention_is_qk_times_the_decay_matrix_times_v():
    torch.manual_seed(0)
    d, H, T = 16, 2, 11
    m = Retention(d, causal=True, n_heads=H, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    pos = torch.zeros((), dtype=torch.long)
    dh = d // H
    q = apply_rotary(m.q_proj(x).view(2, T, H, dh).transpose(1, 2), pos)
    k = apply_rotary(m.k_proj(x).view(2, T, H, dh).transpose(1, 2), pos) / math.sqrt(dh)
    v = m.v_proj(x).view(2, T, H, dh).transpose(1, 2)
    heads = []
    for h, gamma in enumerate(retnet_decays(H).tolist()):
        D = torch.tensor([[gamma ** (n - j) if n >= j else 0.0 for j in range(T)] for n in range(T)],
                         dtype=torch.float64)
        heads.append(((q[:, h] @ k[:, h].transpose(-1, -2)) * D) @ v[:, h])
    o = torch.stack(heads, dim=1).transpose(1, 2).reshape(2 * T, d)
    y = F.group_norm(o, H, m.group_norm.weight, m.group_norm.bias, m.group_norm.eps).view(2, T, d)
    expected = m.out_proj(F.silu(m.g_proj(x)) * y)
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)

