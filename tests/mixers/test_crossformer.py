"""CrossFormer's short and long distance attention against dense attention whose mask groups the
patches by the paper's rule, with the dynamic position bias of the relative coordinates."""

from __future__ import annotations

import pytest
import torch

from trevo.components.multihead import split_heads
from trevo.ops.attention import naive_softmax_attention
from trevo.registry import build
from trevo.testing import build_mixer


@pytest.mark.parametrize("distance", ["short", "long"])
def test_lsda_is_dense_attention_masked_to_the_groups(distance):
    H, W, G, I = 4, 6, 2, 2
    m = build_mixer("crossformer_attention", False, window=G, stride=I, distance=distance)
    x = torch.randn(2, H * W, 16, dtype=torch.float64)
    T = H * W
    bias = torch.full((4, T, T), float("-inf"), dtype=torch.float64)
    for p in range(T):
        for s in range(T):
            (i, j), (a, b) = divmod(p, W), divmod(s, W)
            if distance == "short" and (i // G, j // G) == (a // G, b // G):
                delta = torch.tensor([i % G - a % G, j % G - b % G], dtype=torch.float64)
            elif distance == "long" and (i % I, j % I) == (a % I, b % I):
                delta = torch.tensor([i // I - a // I, j // I - b // I], dtype=torch.float64)
            else:
                continue
            bias[:, p, s] = m.position_bias.net(delta)
    q, k, v = (split_heads(t, 4) for t in m.qkv(x).chunk(3, dim=-1))
    ref = m.out_proj(naive_softmax_attention(q, k, v, causal=False, bias=bias).transpose(1, 2).flatten(2))
    torch.testing.assert_close(m(x, layout=(H, W)), ref, rtol=1e-10, atol=1e-12)


def test_auto_alternates_short_and_long_with_depth():
    built = [build("mixer", "crossformer_attention", d_model=16, causal=False, layer_idx=i).distance for i in range(4)]
    assert built == ["short", "long", "short", "long"]
