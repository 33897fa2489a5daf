"""UFO attention against the formula written per query and per value channel: a product of a unit
query and a unit column of Kᵀ V, scaled by the two γ."""

from __future__ import annotations

import torch

from trevo.components.multihead import split_heads
from trevo.testing import build_mixer


def test_ufo_is_a_cosine_between_the_query_and_each_column_of_ktv():
    m = build_mixer("ufo_attention", False)
    with torch.no_grad():
        m.gamma.copy_(torch.rand_like(m.gamma) + 0.5)
    x = torch.randn(1, 6, 16, dtype=torch.float64)
    q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
    out = torch.zeros_like(q)
    for h in range(4):
        kv = sum(torch.outer(k[0, h, j], v[0, h, j]) for j in range(6))  # [Dk, Dv]
        for i in range(6):
            for c in range(4):
                col = kv[:, c]
                out[0, h, i, c] = m.gamma[0, h, 0, 0] * m.gamma[1, h, 0, 0] * (q[0, h, i] @ col) / (
                    q[0, h, i].norm() * col.norm())
    torch.testing.assert_close(m(x), m.out_proj(out.transpose(1, 2).flatten(2)), rtol=1e-10, atol=1e-12)
