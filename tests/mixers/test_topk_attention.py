"""Explicit top-k sparse attention: dense attention when k >= length, a per-row loop that keeps only
the k largest scores otherwise, and causal generation from a growing KV cache."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.attention import naive_softmax_attention
from trevo.ops.topk_attention import chunked_topk_attention, topk_attention
from trevo.registry import create

B, H, T, D = 2, 2, 13, 4


def _qkv():
    torch.manual_seed(0)
    return (torch.randn(B, H, T, D, dtype=torch.float64) for _ in range(3))


def _loop(q, k, v, topk, causal, pad=None):
    out = torch.zeros_like(q)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                keys = [j for j in range(T) if (not causal or j <= i) and (pad is None or pad[b, j])]
                s = torch.stack([q[b, h, i] @ k[b, h, j] / math.sqrt(D) for j in keys])
                chosen = [keys[n] for n in sorted(s.argsort(descending=True)[:topk].tolist())]
                w = torch.softmax(torch.stack([q[b, h, i] @ k[b, h, j] / math.sqrt(D) for j in chosen]), 0)
                out[b, h, i] = sum(wj * v[b, h, j] for wj, j in zip(w, chosen, strict=True))
    return out


@pytest.mark.parametrize("causal", [True, False])
def test_equals_dense_attention_when_k_covers_the_length(causal):
    q, k, v = _qkv()
    pad = torch.ones(B, T, dtype=torch.bool)
    pad[1, 9:] = False
    kpm = None if causal else pad
    dense = naive_softmax_attention(q, k, v, causal=causal, key_padding_mask=kpm)
    torch.testing.assert_close(topk_attention(q, k, v, topk=T, causal=causal, key_padding_mask=kpm), dense)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("topk", [1, 3])
def test_equals_a_loop_that_keeps_the_top_k(causal, topk):
    q, k, v = _qkv()
    pad = None if causal else torch.tensor([[True] * T, [True] * 10 + [False] * 3])
    ref = _loop(q, k, v, topk, causal, pad)
    torch.testing.assert_close(topk_attention(q, k, v, topk=topk, causal=causal, key_padding_mask=pad), ref)
    torch.testing.assert_close(chunked_topk_attention(q, k, v, topk=topk, causal=causal, key_padding_mask=pad,
                                                      chunk_size=4), ref)


def test_small_k_differs_from_dense_attention():
    q, k, v = _qkv()
    dense = naive_softmax_attention(q, k, v, causal=False)
    assert (topk_attention(q, k, v, topk=2, causal=False) - dense).abs().max() > 1e-3


def test_causal_generation_grows_the_kv_cache_and_equals_forward():
    torch.manual_seed(0)
    mixer = create("mixer", "topk_attention", d_model=8, causal=True, n_heads=2, topk=3).double()
    x = torch.randn(2, T, 8, dtype=torch.float64)
    y, state = mixer.prefill(x[:, :4])
    ys, sizes = [y], []
    for t in range(4, T):
        y_t, state = mixer.step(x[:, t], state)
        ys.append(y_t[:, None])
        sizes.append(state["k"].shape[2])
    assert sizes == list(range(5, T + 1))
    torch.testing.assert_close(torch.cat(ys, 1), mixer(x))
