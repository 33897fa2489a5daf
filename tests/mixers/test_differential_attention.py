"""Differential attention equals its definition per head in float64: (softmax(Q₁K₁ᵀ/√d) − λ
softmax(Q₂K₂ᵀ/√d)) V, per-head RMSNorm, × (1 − λ_init), W_O, with λ = exp(λ_q1·λ_k1) − exp(λ_q2·λ_k2) +
λ_init and λ_init = 0.8 − 0.6·exp(−0.3·(l − 1)); causal and bidirectional with padding, both forms."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.registry import build, create

D, T = 16, 7


def test_lambda_init_follows_the_layer_depth():
    values = [build("mixer", "differential_attention", {}, d_model=D, causal=True, layer_idx=i).lambda_init
              for i in (0, 1, 5)]
    expected = [0.2, 0.8 - 0.6 * math.exp(-0.3), 0.8 - 0.6 * math.exp(-1.5)]
    assert all(abs(a - b) < 1e-12 for a, b in zip(values, expected, strict=True))


@pytest.mark.parametrize("causal", [True, False])
def test_equals_the_difference_of_two_softmax_maps(causal):
    torch.manual_seed(0)
    m = create("mixer", "differential_attention", d_model=D, causal=causal, n_heads=2, chunk_size=3,
               layer_idx=2).double()
    x = torch.randn(2, T, D, dtype=torch.float64)
    mask = None if causal else torch.tensor([[True] * T, [True] * 5 + [False] * 2])
    h, d = 2, m.head_dim
    q, k = m.q_proj(x).view(2, T, 2 * h, d), m.k_proj(x).view(2, T, 2 * h, d)
    v = m.v_proj(x).view(2, T, h, 2 * d)
    lam_init = 0.8 - 0.6 * math.exp(-0.3 * 2)  # the third layer
    with torch.no_grad():
        lam = math.exp(float(m.lambda_q1 @ m.lambda_k1)) - math.exp(float(m.lambda_q2 @ m.lambda_k2)) + lam_init
    out = torch.zeros(2, T, h, 2 * d, dtype=torch.float64)
    for b in range(2):
        keys = [j for j in range(T) if mask is None or mask[b, j]]
        for i in range(T):
            seen = [j for j in keys if not causal or j <= i]
            for hh in range(h):
                s1 = torch.stack([q[b, i, 2 * hh] @ k[b, j, 2 * hh] for j in seen])
                s2 = torch.stack([q[b, i, 2 * hh + 1] @ k[b, j, 2 * hh + 1] for j in seen])
                a1, a2 = torch.softmax(s1 / math.sqrt(d), 0), torch.softmax(s2 / math.sqrt(d), 0)
                o = (a1 - lam * a2) @ v[b, seen, hh]
                o = o / torch.sqrt(o.pow(2).mean() + 1e-5) * m.head_norm.weight
                out[b, i, hh] = o * (1 - lam_init)
    expected = m.out_proj(out.flatten(2))
    real = torch.ones(2, T, dtype=torch.bool) if mask is None else mask
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x, padding_mask=mask)[real], expected[real], rtol=1e-10, atol=1e-12)


def test_a_width_without_two_sub_heads_per_head_is_a_clear_error():
    with pytest.raises(IncompatibleError, match="2·n_heads"):
        create("mixer", "differential_attention", d_model=12, causal=True, n_heads=4)
