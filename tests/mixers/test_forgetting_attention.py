"""FoX equals its definition written per head in float64, softmax_j(q_i·k_j/√d + Σ_{l=j+1}^{i} log f_l)
with f_t = σ(w_fᵀx_t + b_f), in both forms and with shared key/value heads; a gate of 1 is plain
causal softmax attention, a gate of 0 erases the past (o_i = v_i)."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.attention import naive_softmax_attention
from trevo.registry import create

D, T = 16, 7


def _build(**options):
    torch.manual_seed(0)
    return create("mixer", "forgetting_attention", d_model=D, causal=True, chunk_size=3, **options).double()


def _projections(m, x):
    B = x.shape[0]
    q = m.q_proj(x).view(B, T, m.n_heads, m.head_dim)
    k, v = (t.view(B, T, m.n_kv_heads, m.head_dim) for t in m.kv_proj(x).chunk(2, dim=-1))
    return q, k, v


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_equals_the_forget_gated_logits_per_head(n_kv_heads):
    m = _build(n_heads=4, n_kv_heads=n_kv_heads)
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k, v = _projections(m, x)
    f = torch.sigmoid(m.forget_proj(x)).detach()  # [B, T, H]
    out = torch.zeros(2, T, m.n_heads, m.head_dim, dtype=torch.float64)
    for b in range(2):
        for h in range(m.n_heads):
            g = h // (m.n_heads // n_kv_heads)
            for i in range(T):
                scores = torch.stack([q[b, i, h] @ k[b, j, g] / math.sqrt(m.head_dim)
                                      + sum(math.log(f[b, t, h]) for t in range(j + 1, i + 1)) for j in range(i + 1)])
                out[b, i, h] = torch.softmax(scores, 0) @ v[b, :i + 1, g]
    expected = m.out_proj(out.flatten(2))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-12)


def test_a_gate_of_one_is_softmax_attention_and_a_gate_of_zero_erases_the_past():
    m = _build(n_heads=2)
    x = torch.randn(2, T, D, dtype=torch.float64)
    q, k, v = (t.transpose(1, 2) for t in _projections(m, x))
    with torch.no_grad():
        m.forget_proj.weight.zero_()
        m.forget_proj.bias.fill_(60.0)  # f = σ(60): log f ≈ −1e-26
    attention = naive_softmax_attention(q, k, v, causal=True).transpose(1, 2).flatten(2)
    torch.testing.assert_close(m(x), m.out_proj(attention), rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        m.forget_proj.bias.fill_(-60.0)  # f ≈ 1e-26: every earlier key is weighted by e^{−60} or less
    torch.testing.assert_close(m(x), m.out_proj(v.transpose(1, 2).flatten(2)), rtol=1e-10, atol=1e-12)


def test_the_state_holds_the_cumulative_log_gates_of_the_cached_tokens():
    m = _build(n_heads=2)
    x = torch.randn(1, T, D, dtype=torch.float64)
    _, state = m.prefill(x)
    log_f = torch.nn.functional.logsigmoid(m.forget_proj(x)).transpose(1, 2)
    torch.testing.assert_close(state["forget"], log_f.cumsum(-1))
    assert state["k"].shape == (1, 2, T, m.head_dim)
