"""Block-sparse attention equals softmax attention under the dense pattern mask (an independent
computation: the full score matrix with the mask of ``trevo.ops.sparse_patterns``), and never forms
a T × T score tensor."""

from __future__ import annotations

import pytest
import torch

from trevo.ops import sparse_attention as S
from trevo.ops.sparse_patterns import fixed_mask, sliding_window_mask, strided_mask


def dense(q, k, v, allowed, padding_mask):
    if padding_mask is not None:  # a padded query keeps its own key
        allowed = (allowed & (padding_mask[:, None, :] | torch.eye(q.shape[2], dtype=torch.bool)))[:, None]
    scores = (q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5).masked_fill(~allowed, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


CASES = [(T, causal, padded, w) for T in (1, 5, 19, 70, 150) for causal in (True, False)
         for padded in (False, True) for w in (1, 3, 4, 16) if not (causal and padded)]


@pytest.mark.parametrize("T,causal,padded,w", CASES)
def test_sparse_patterns_equal_dense_masked_attention(T, causal, padded, w):
    g = torch.Generator().manual_seed(T * 7 + w)
    q, k, v = (torch.randn(2, 3, T, 8, generator=g, dtype=torch.float64) for _ in range(3))
    pad = None
    if padded:
        pad = torch.ones(2, T, dtype=torch.bool)
        pad[1, max(1, T - 4):] = False
    pos = torch.arange(T)
    summary = max(1, w // 2)
    for got, allowed in (
            (S.sliding_window_attention(q, k, v, w, causal=causal, padding_mask=pad),
             sliding_window_mask(pos, pos, w, causal=causal)),
            (S.strided_attention(q, k, v, w, causal=causal, padding_mask=pad),
             strided_mask(pos, pos, w, causal=causal)),
            (S.fixed_attention(q, k, v, w, summary, causal=causal, padding_mask=pad),
             fixed_mask(pos, pos, w, summary, causal=causal))):
        torch.testing.assert_close(got, dense(q, k, v, allowed, pad), rtol=1e-10, atol=1e-10)


def test_no_score_tensor_is_quadratic_in_the_length(monkeypatch):
    T, w = 1024, 32
    largest = []
    real = S._partial

    def recording(q, k, v, allowed):
        largest.append(q.shape[-2] * k.shape[-2] * q.shape[:-2].numel())
        return real(q, k, v, allowed)

    monkeypatch.setattr(S, "_partial", recording)
    q = k = v = torch.randn(1, 1, T, 4)
    S.sliding_window_attention(q, k, v, w, causal=True)
    assert max(largest) <= T * 2 * S.MIN_BLOCK  # the band: blocks against their neighbours
    largest.clear()
    S.strided_attention(q, k, v, w, causal=True)
    assert max(largest) <= T * max(2 * S.MIN_BLOCK, T // w)  # the band and the columns of T/w rows
