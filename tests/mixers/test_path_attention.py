"""PaTH attention equals its definition with the mixer's own w_t (short convolution, L2-normalised)
and β_t = 2σ(·): scores q_iᵀ H_i ⋯ H_{j+1} k_j / √d as explicit d×d products, with and without the
FoX gate (PaTH-FoX), in every form; β = 0 makes it softmax attention without positions."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trevo.components.multihead import split_heads
from trevo.ops.attention import naive_softmax_attention
from trevo.registry import create

D, T = 8, 7


def _build(**options):
    torch.manual_seed(0)
    return create("mixer", "path_attention", d_model=D, causal=True, n_heads=2, chunk_size=3, w_low_rank_dim=3,
                  **options).double()


@pytest.mark.parametrize("forget_gate", [False, True])
def test_equals_the_explicit_householder_products(forget_gate):
    m = _build(forget_gate=forget_gate)
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k, v = (split_heads(t, 2) for t in m.qkv_proj(x).chunk(3, dim=-1))
    w = F.normalize(split_heads(m.w_conv(m.w_proj(x))[0], 2), dim=-1)
    beta = 2 * torch.sigmoid(m.beta_proj(x)).transpose(1, 2)
    log_f = F.logsigmoid(m.forget_proj(x)).transpose(1, 2) if forget_gate else torch.zeros(2, 2, T)
    dh = m.head_dim
    eye = torch.eye(dh, dtype=torch.float64)
    out = torch.zeros(2, 2, T, dh, dtype=torch.float64)
    for b in range(2):
        for h in range(2):
            Hm = [eye - beta[b, h, t] * torch.outer(w[b, h, t], w[b, h, t]) for t in range(T)]
            for i in range(T):
                scores = []
                for j in range(i + 1):
                    M = eye
                    for t in range(i, j, -1):
                        M = M @ Hm[t]
                    scores.append(q[b, h, i] @ M @ k[b, h, j] / math.sqrt(dh) + log_f[b, h, j + 1:i + 1].sum())
                out[b, h, i] = torch.softmax(torch.stack(scores), 0) @ v[b, h, :i + 1]
    expected = m.out_proj(out.transpose(1, 2).flatten(2))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-12)


def test_beta_zero_is_softmax_attention_without_positions():
    m = _build()
    with torch.no_grad():
        m.beta_proj.weight.zero_()
        m.beta_proj.bias.fill_(-80.0)  # β = 2σ(−80) ≈ 4e-35: every H_t = I
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k, v = (split_heads(t, 2) for t in m.qkv_proj(x).chunk(3, dim=-1))
    expected = m.out_proj(naive_softmax_attention(q, k, v, causal=True).transpose(1, 2).flatten(2))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-12)


def test_bad_options_are_clear_errors():
    from trevo.errors import IncompatibleError
    with pytest.raises(IncompatibleError, match="conv_size"):
        create("mixer", "path_attention", d_model=D, causal=True, conv_size=0)
