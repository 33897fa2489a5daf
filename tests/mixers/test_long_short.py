"""Long-Short attention: the blocked computation equals the definition query by query (window keys and
dynamic-projection keys, DualLN, one softmax), in both directions."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trevo.ops.long_short import long_short_attention, long_short_attention_quadratic


def _setup(t=14):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, t, 4, dtype=torch.float64) for _ in range(3))
    proj = torch.randn(2, 4, 3, dtype=torch.float64)
    ln_l, ln_g = nn.LayerNorm(4).double(), nn.LayerNorm(4).double()
    with torch.no_grad():
        for ln in (ln_l, ln_g):
            ln.weight.uniform_(0.5, 1.5)
            ln.bias.uniform_(-0.5, 0.5)
    return q, k, v, proj, ln_l, ln_g


@pytest.mark.parametrize("causal", [True, False])
def test_blocked_equals_the_definition(causal):
    q, k, v, proj, ln_l, ln_g = _setup()
    got = long_short_attention(q, k, v, proj, 4, ln_l, ln_g, causal=causal)
    torch.testing.assert_close(got, long_short_attention_quadratic(q, k, v, proj, 4, ln_l, ln_g, causal=causal))


def test_causal_output_ignores_the_future():
    q, k, v, proj, ln_l, ln_g = _setup()
    y = long_short_attention(q, k, v, proj, 4, ln_l, ln_g, causal=True)
    k2, v2 = k.clone(), v.clone()
    k2[:, :, 9:] += 5
    v2[:, :, 9:] -= 3
    torch.testing.assert_close(long_short_attention(q, k2, v2, proj, 4, ln_l, ln_g, causal=True)[:, :, :9],
                               y[:, :, :9])
