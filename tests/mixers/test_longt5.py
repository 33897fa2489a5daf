"""LongT5 TGlobal: the segmented computation equals, query by query, one softmax over the keys within
the window and the global tokens LN(sum of each block)."""

from __future__ import annotations

import math

import torch

from trevo.ops.longt5 import block_sums
from trevo.registry import build


def test_tglobal_equals_its_definition_with_padding():
    torch.manual_seed(0)
    mixer = build("mixer", "longt5_transient_global", {"window": 3, "block_size": 3, "n_heads": 2},
                  d_model=8, causal=False).double()
    t = 11
    x = torch.randn(1, t, 8, dtype=torch.float64)
    real = torch.ones(1, t, dtype=torch.bool)
    real[0, 9:] = False
    got = mixer(x, padding_mask=real)
    k, v = mixer.kv_proj(x).chunk(2, dim=-1)
    q = mixer.q_proj(x)
    blocks = [list(range(s, min(s + 3, 9))) for s in range(0, 9, 3)]  # real tokens only: 3 blocks
    g = mixer.global_norm(torch.stack([x[0, b].sum(0) for b in blocks]))
    kg, vg = mixer.kv_proj(g).chunk(2, dim=-1)
    want = torch.zeros(t, 8, dtype=torch.float64)
    for i in range(9):
        near = [j for j in range(9) if abs(i - j) <= 2]
        for h in range(2):
            sl = slice(4 * h, 4 * h + 4)
            keys = torch.cat([k[0, near, sl], kg[:, sl]])
            vals = torch.cat([v[0, near, sl], vg[:, sl]])
            want[i, sl] = torch.softmax(keys @ q[0, i, sl] / math.sqrt(4), 0) @ vals
    torch.testing.assert_close(got[0, :9], mixer.out_proj(want)[:9])


def test_block_sums_by_hand():
    x = torch.arange(10.0).view(1, 5, 2)
    sums, real = block_sums(x, 2, torch.tensor([[True, True, True, False, False]]))
    torch.testing.assert_close(sums[0], torch.tensor([[2.0, 4.0], [4.0, 5.0], [0.0, 0.0]]))
    assert real[0].tolist() == [True, True, False]
