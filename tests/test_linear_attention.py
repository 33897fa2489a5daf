"""Linear attention on the engine: the φ = elu + 1 formula, causal and bidirectional, in every form."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.linear_attention import LinearAttention


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
    for impl in ("chunk", "parallel", "recurrent"):
        m.impl = impl
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


def test_bidirectional_equals_the_formula_and_ignores_padding():
    torch.manual_seed(1)
    m = LinearAttention(16, causal=False, n_heads=4).double()
    x = torch.randn(1, 9, 16, dtype=torch.float64)
    mask = torch.tensor([[True] * 6 + [False] * 3])
    torch.testing.assert_close(m(x, padding_mask=mask)[:, :6], explicit(m, x, False, mask)[:, :6],
                               rtol=1e-10, atol=1e-10)


def test_auto_is_recurrent_for_one_token_and_chunk_otherwise():
    m = LinearAttention(16, causal=True)
    assert m.pick_form(1) == "recurrent" and m.pick_form(100) == "chunk"
