"""FMMformer: near field + far field against a float64 formula written out (banded softmax and the
low-rank kernel sum), and its two limits (a band covering everything is softmax attention)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from trevo.components.multihead import split_heads
from trevo.ops.attention import naive_softmax_attention
from trevo.testing import build_mixer


def _reference(m, x, causal):
    """w₁ · banded softmax + w₂ · (Σ_l φ_l(q)ᵀφ_l(k) v / Σ_l φ_l(q)ᵀφ_l(k)), one (query, key) pair at a time."""
    q, k, v = (split_heads(t, m.n_heads) for t in m.qkv(x).chunk(3, dim=-1))
    B, H, T, D = q.shape
    phis = [lambda a: F.elu(a) + 1, lambda a: F.elu(-a) + 1][:m.n_kernels]
    out = torch.zeros_like(v)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                keys = [j for j in range(T) if (j <= i if causal else True)]
                near_keys = [j for j in keys if abs(i - j) < m.window]
                s = torch.stack([q[b, h, i] @ k[b, h, j] / math.sqrt(D) for j in near_keys])
                a = torch.softmax(s, 0)
                near = sum(a[n] * v[b, h, j] for n, j in enumerate(near_keys))
                kern = torch.stack([sum((p(q[b, h, i]) * p(k[b, h, j])).sum() for p in phis) for j in keys])
                far = sum(kern[n] * v[b, h, j] for n, j in enumerate(keys)) / (kern.sum() + m.eps)
                out[b, h, i] = m.blend[0, h] * near + m.blend[1, h] * far
    return m.out_proj(out.transpose(1, 2).flatten(2))


def test_fmmformer_equals_banded_softmax_plus_low_rank_kernel_sum():
    for causal in (True, False):
        m = build_mixer("fmmformer", causal, window=3, n_kernels=2)
        with torch.no_grad():
            m.blend.copy_(torch.tensor([[0.7, -1.3, 0.4, 2.0], [1.5, 0.2, -0.6, 0.9]], dtype=torch.float64))
        x = torch.randn(2, 9, 16, dtype=torch.float64)
        torch.testing.assert_close(m(x), _reference(m, x, causal), rtol=1e-10, atol=1e-12)


def test_a_band_covering_the_sequence_and_no_far_field_is_softmax_attention():
    m = build_mixer("fmmformer", True, window=12)
    with torch.no_grad():
        m.blend[0].fill_(1.0)
        m.blend[1].zero_()
    x = torch.randn(2, 12, 16, dtype=torch.float64)
    q, k, v = (split_heads(t, m.n_heads) for t in m.qkv(x).chunk(3, dim=-1))
    ref = m.out_proj(naive_softmax_attention(q, k, v, causal=True).transpose(1, 2).flatten(2))
    torch.testing.assert_close(m(x), ref, rtol=1e-10, atol=1e-12)


def test_generation_state_is_bounded_by_the_window():
    m = build_mixer("fmmformer", True, window=3)
    _, state = m.prefill(torch.randn(1, 15, 16, dtype=torch.float64))
    assert state["k"].shape[2] == 2 and state["S"].shape == (1, 4, 8, 4)
