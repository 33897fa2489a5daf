"""Neighborhood attention against dense attention with a brute-force neighbourhood mask and bias."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.multihead import split_heads
from trevo.errors import IncompatibleError
from trevo.ops.attention import naive_softmax_attention
from trevo.testing import build_mixer


def _mask_and_bias(H, W, k, table):
    """The T × T mask of each query's k × k nearest pixels (the window shifted inside the image), by loops."""
    T = H * W
    mask = torch.zeros(T, T, dtype=torch.bool)
    bias = torch.zeros(table.shape[0], T, T, dtype=table.dtype)
    for i in range(H):
        for j in range(W):
            r0 = min(max(i - k // 2, 0), H - k)
            c0 = min(max(j - k // 2, 0), W - k)
            for r in range(r0, r0 + k):
                for c in range(c0, c0 + k):
                    mask[i * W + j, r * W + c] = True
                    bias[:, i * W + j, r * W + c] = table[:, r - i + k - 1, c - j + k - 1]
    return mask, bias


@pytest.mark.parametrize("H,W,k", [(4, 4, 3), (5, 7, 3), (6, 5, 5)])
def test_matches_dense_attention_with_a_brute_force_neighbourhood_mask(H, W, k):
    m = build_mixer("neighborhood_attention", False, window=k)
    x = torch.randn(2, H * W, 16, dtype=torch.float64)
    real = torch.ones(2, H * W, dtype=torch.bool)
    real[1, -4:] = False
    mask, bias = _mask_and_bias(H, W, k, m.bias_table.detach())
    assert (mask.sum(1) == k * k).all()
    q, kk, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
    add = bias.masked_fill(~mask, -math.inf)[None]
    ref = naive_softmax_attention(q, kk, v, causal=False, bias=add,
                                  key_padding_mask=real)
    ref = m.out_proj(ref.transpose(1, 2).flatten(2))
    torch.testing.assert_close(m(x, padding_mask=real, layout=(H, W)), ref, rtol=1e-10, atol=1e-12)


def test_a_window_larger_than_the_image_is_a_clear_error():
    m = build_mixer("neighborhood_attention", False, window=5)
    with pytest.raises(IncompatibleError, match="window=5 exceeds the 4×4 image"):
        m(torch.randn(1, 16, 16, dtype=torch.float64), layout=(4, 4))
