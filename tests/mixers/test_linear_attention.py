"""Linear attention on the engine: the φ = elu + 1 formula, causal and bidirectional, in every form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.bench.form_table import measured_form
from trevo.components.mixers.linear_attention import LinearAttention
from trevo.ops.linear_attention import linear_attention_quadratic, linear_attention_recurrent


def explicit(m, x, causal, mask=None):
    B, T, d = x.shape
    H, dh = m.n_heads, m.head_dim
    q, k, v = (t.view(B, T, H, dh) for t in m.qkv(x).chunk(3, dim=-1))
    q, k = F.elu(q) + 1, F.elu(k) + 1
    out = torch.zeros(B, T, H, dh, dtype=x.dtype)
    for t in range(T):
        keys = range(t + 1) if causal else range(T)
        keys = [i for i in keys if mask is None or mask[0, i]]
        num = sum((q[:, t] * k[:, i]).sum(-1, keepdim=True) * v[:, i] for i in keys)
        den = sum((q[:, t] * k[:, i]).sum(-1, keepdim=True) for i in keys)
        out[:, t] = num / (den + m.eps)
    return m.out_proj(out.flatten(2))


def test_causal_forms_equal_the_formula():
    torch.manual_seed(0)
    m = LinearAttention(16, causal=True, n_heads=2, chunk_size=4).double()
    x = torch.randn(2, 11, 16, dtype=torch.float64)
    expected = explicit(m, x, causal=True)
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


def test_bidirectional_equals_the_formula_and_ignores_padding():
    torch.manual_seed(1)
    m = LinearAttention(16, causal=False, n_heads=4).double()
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    mask = torch.tensor([[True] * 6 + [False] * 3])
    torch.testing.assert_close(m(x, padding_mask=mask)[:, :6], explicit(m, x, False, mask)[:, :6],
                               rtol=1e-10, atol=1e-10)


def test_auto_is_recurrent_for_one_token_and_the_measured_or_chunk_form_otherwise():
    m = LinearAttention(16, causal=True)
    assert m.form_for(1) == "recurrent"
    assert m.form_for(100) == (measured_form("linear_attention", True, 100) or "chunk")


def test_linear_attention_forms_and_definition():
    torch.manual_seed(0)
    B, H, T, D = 2, 2, 9, 3
    q, k = torch.rand(B, H, T, D, dtype=torch.float64), torch.rand(B, H, T, D, dtype=torch.float64)
    v = torch.randn(B, H, T, 4, dtype=torch.float64)
    ref = torch.zeros(B, H, T, 4, dtype=torch.float64)
    for t in range(T):
        weights = (q[:, :, t:t + 1] * k[:, :, :t + 1]).sum(-1)  # [B,H,t+1]
        ref[:, :, t] = (weights[..., None] * v[:, :, :t + 1]).sum(2) / weights.sum(-1, keepdim=True)
    S, z = torch.zeros(B, H, D, 4, dtype=torch.float64), torch.zeros(B, H, D, dtype=torch.float64)
    torch.testing.assert_close(linear_attention_quadratic(q, k, v, causal=True, eps=0), ref)
    torch.testing.assert_close(linear_attention_recurrent(q, k, v, S, z, eps=0)[0], ref)
    bidir = (q @ k.transpose(-1, -2)) @ v / (q @ k.transpose(-1, -2)).sum(-1, keepdim=True)
    torch.testing.assert_close(linear_attention_quadratic(q, k, v, causal=False, eps=0), bidir)
