"""TransNormer: NormAttention has no denominator and a normalised output; DiagAttention is softmax
attention inside non-overlapping blocks."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.transnormer import DiagAttention, NormAttention


def test_norm_attention_is_rmsnorm_of_the_unnormalised_linear_attention():
    torch.manual_seed(0)
    d, H, T = 16, 2, 9
    for causal in (True, False):
        m = NormAttention(d, causal=causal, n_heads=H, chunk_size=4).double()
        x = torch.randn(2, T, d, dtype=torch.float64)
        q, k, v = (t.view(2, T, H, d // H) for t in m.qkv(x).chunk(3, dim=-1))
        q, k = F.elu(q) + 1, F.elu(k) + 1
        scores = torch.einsum("bthd,bshd->bhts", q, k)
        if causal:
            scores = scores.tril()
        o = torch.einsum("bhts,bshd->bthd", scores, v).flatten(2)
        expected = m.out_proj(o * torch.rsqrt(o.pow(2).mean(-1, keepdim=True) + 1e-6) * m.norm.weight)
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)


def test_diag_attention_is_block_diagonal_softmax():
    torch.manual_seed(1)
    d, T, w = 8, 10, 4
    for causal in (True, False):
        m = DiagAttention(d, causal=causal, n_heads=1, block_size=w).double()
        x = torch.randn(1, T, d, dtype=torch.float64)
        q, k, v = m.qkv(x).chunk(3, dim=-1)
        expected = torch.zeros(1, T, d, dtype=torch.float64)
        for start in range(0, T, w):
            sl = slice(start, min(T, start + w))
            s = q[:, sl] @ k[:, sl].transpose(-1, -2) / d ** 0.5
            if causal:
                n = s.shape[-1]
                s = s.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
            expected[:, sl] = torch.softmax(s, -1) @ v[:, sl]
        torch.testing.assert_close(m(x), m.out_proj(expected), rtol=1e-10, atol=1e-10)
        # a token in another block changes nothing here
        x2 = x.clone()
        x2[:, 0] += 5
        assert torch.equal(m(x)[:, w:], m(x2)[:, w:])


def test_diag_attention_generation_state_never_exceeds_one_block():
    m = DiagAttention(8, causal=True, n_heads=2, block_size=4).double()
    _, state = m.prefill(torch.randn(1, 11, 8, dtype=torch.float64))
    assert state["k"].shape[2] == 4 and int(state["pos"]) == 11
