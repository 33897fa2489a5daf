"""Banded attention: the gathered-window form equals the masked dense form, and both equal a float64
loop over each query's window."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.banded_attention import banded_attention, banded_attention_quadratic, n_offsets


def _loop(q, k, v, window, causal, weight=None, real=None):
    B, H, tq, D = q.shape
    tk = k.shape[2]
    out = torch.zeros(B, H, tq, v.shape[-1], dtype=q.dtype)
    for b in range(B):
        for h in range(H):
            for i in range(tq):
                p = tk - tq + i
                keys = [j for j in range(tk) if (0 <= p - j < window if causal else abs(p - j) < window)
                        and (real is None or real[b, j])]
                if not keys:
                    continue
                s = torch.stack([q[b, h, i] @ k[b, h, j] / math.sqrt(D) for j in keys])
                e = torch.exp(s - s.max())
                if weight is not None:
                    e = e * torch.stack([weight[h, (window - 1) - (p - j)] for j in keys])
                a = e / e.sum()
                out[b, h, i] = sum(a[n] * v[b, h, j] for n, j in enumerate(keys))
    return out


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_gathered_equals_dense_equals_loop(causal, weighted):
    torch.manual_seed(0)
    B, H, T, D, w = 2, 2, 11, 4, 4
    q, k, v = (torch.randn(B, H, T, D, dtype=torch.float64) for _ in range(3))
    weight = torch.rand(H, n_offsets(w, causal), dtype=torch.float64) if weighted else None
    real = torch.ones(B, T, dtype=torch.bool)
    real[1, 7:] = False
    kpm = None if causal else real
    fast = banded_attention(q, k, v, window=w, causal=causal, offset_weight=weight, key_padding_mask=kpm)
    dense = banded_attention_quadratic(q, k, v, window=w, causal=causal, offset_weight=weight, key_padding_mask=kpm)
    ref = _loop(q, k, v, w, causal, weight, None if causal else real)
    torch.testing.assert_close(fast, dense, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-12)


def test_queries_after_a_cache_see_the_cached_keys():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 2, 3, 4, dtype=torch.float64), *(torch.randn(1, 2, 8, 4, dtype=torch.float64)
                                                              for _ in range(2))
    fast = banded_attention(q, k, v, window=5, causal=True)
    torch.testing.assert_close(fast, _loop(q, k, v, 5, True), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fast, banded_attention_quadratic(q, k, v, window=5, causal=True), rtol=1e-12,
                               atol=1e-12)


def test_a_query_that_sees_no_key_gets_zero_not_nan():
    q = torch.randn(1, 1, 4, 2, dtype=torch.float64)
    real = torch.tensor([[True, False, False, False]])
    out = banded_attention(q, q, q, window=1, causal=False, key_padding_mask=real)
    assert torch.isfinite(out).all() and out[0, 0, 1:].abs().max() == 0


@pytest.mark.parametrize("causal", [True, False])
def test_a_window_longer_than_the_sequence_is_trimmed_exactly(causal):
    torch.manual_seed(2)
    q, k, v = (torch.randn(1, 2, 5, 3, dtype=torch.float64) for _ in range(3))
    w = 9
    weight = torch.rand(2, n_offsets(w, causal), dtype=torch.float64)
    torch.testing.assert_close(banded_attention(q, k, v, window=w, causal=causal, offset_weight=weight),
                               _loop(q, k, v, w, causal, weight), rtol=1e-10, atol=1e-12)
