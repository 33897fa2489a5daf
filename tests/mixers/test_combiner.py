"""Combiner-Fixed: the blocked computation equals the factorised attention written query by query;
regions of one token, or one region, are exact softmax attention."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.combiner import combiner_attention


def _qkv(t=10):
    torch.manual_seed(0)
    return (torch.randn(1, 2, t, 4, dtype=torch.float64) for _ in range(3))


@pytest.mark.parametrize("causal", [True, False])
def test_equals_the_factorisation_query_by_query(causal):
    q, k, v = _qkv()
    c, t = 3, 10
    want = torch.zeros_like(q)
    for h in range(2):
        regions = [list(range(s, min(s + c, t))) for s in range(0, t, c)]
        summary = []
        for r in regions:
            q_r, k_r = q[0, h, r].amax(0), k[0, h, r].amax(0)
            w = torch.softmax(k[0, h, r] @ q_r / math.sqrt(4), 0)
            summary.append((k_r, w @ v[0, h, r]))
        for i in range(t):
            own = i // c
            direct = [j for j in regions[own] if j <= i or not causal]
            others = [r for r in range(len(regions)) if (r < own if causal else r != own)]
            keys = torch.stack([k[0, h, j] for j in direct] + [summary[r][0] for r in others])
            vals = torch.stack([v[0, h, j] for j in direct] + [summary[r][1] for r in others])
            want[0, h, i] = torch.softmax(keys @ q[0, h, i] / math.sqrt(4), 0) @ vals
    torch.testing.assert_close(combiner_attention(q, k, v, c, causal=causal), want)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("block_size", [1, 10])
def test_single_token_regions_or_one_region_are_exact_attention(causal, block_size):
    q, k, v = _qkv()
    exact = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(combiner_attention(q, k, v, block_size, causal=causal), exact)
