"""NesT block attention: dense attention with a block-diagonal mask; the aggregation spreads a block's
influence exactly to the pixels within two steps of it (3 × 3 convolution, then 3 × 3 pooling)."""

from __future__ import annotations

import torch

from trevo.components.multihead import split_heads
from trevo.ops.attention import naive_softmax_attention
from trevo.testing import build_mixer


def test_block_attention_is_dense_attention_with_a_block_diagonal_mask():
    m = build_mixer("nest_block_attention", False, window=2, aggregate=False)
    H, W = 4, 6
    x = torch.randn(2, H * W, 16, dtype=torch.float64)
    block = torch.tensor([(p // W) // 2 * 10 + (p % W) // 2 for p in range(H * W)])
    same = block[:, None] == block[None, :]
    bias = torch.zeros(H * W, H * W, dtype=torch.float64).masked_fill(~same, float("-inf"))
    q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
    ref = m.out_proj(naive_softmax_attention(q, k, v, causal=False, bias=bias[None]).transpose(1, 2).flatten(2))
    torch.testing.assert_close(m(x, layout=(H, W)), ref, rtol=1e-10, atol=1e-12)


def test_aggregation_reaches_exactly_two_pixels_beyond_a_block():
    H = W = 8
    for aggregate, reach in ((False, 0), (True, 2)):
        m = build_mixer("nest_block_attention", False, window=2, aggregate=aggregate)
        x = torch.randn(1, H * W, 16, dtype=torch.float64)
        x2 = x.clone()
        changed = [r * W + c for r in (2, 3) for c in (4, 5)]  # the block at rows 2-3, columns 4-5
        x2[0, changed] += torch.randn(len(changed), 16, dtype=torch.float64)
        moved = (m(x, layout=(H, W)) - m(x2, layout=(H, W))).abs().amax(-1)[0] > 1e-12
        for p in range(H * W):
            r, c = divmod(p, W)
            dist = max(max(2 - r, r - 3, 0), max(4 - c, c - 5, 0))  # Chebyshev distance to the block
            assert moved[p] == (dist <= reach), (aggregate, r, c)
