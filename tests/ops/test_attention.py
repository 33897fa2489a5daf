"""Softmax attention (trevo.ops.attention): the SDPA and chunked (online-softmax) forms equal the naive
formula with biases and key padding; the naive formula on a hand-checked case."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.attention import chunked_softmax_attention, naive_softmax_attention, sdpa_attention


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("tq,tk", [(13, 13), (5, 13), (1, 9)])
def test_softmax_attention_forms_agree_with_naive(causal, tq, tk):
    torch.manual_seed(0)
    q = torch.randn(2, 3, tq, 8, dtype=torch.float64)
    k, v = torch.randn(2, 3, tk, 8, dtype=torch.float64), torch.randn(2, 3, tk, 8, dtype=torch.float64)
    bias = -torch.rand(3, tq, tk, dtype=torch.float64)
    kpm = torch.ones(2, tk, dtype=torch.bool)
    kpm[1, -2:] = False
    for kw in ({}, {"bias": bias}, {"key_padding_mask": kpm}):
        ref = naive_softmax_attention(q, k, v, causal=causal, **kw)
        torch.testing.assert_close(sdpa_attention(q, k, v, causal=causal, **kw), ref)
        torch.testing.assert_close(chunked_softmax_attention(q, k, v, causal=causal, chunk_size=4, **kw), ref)


def test_naive_attention_hand_checked():
    # One query, two keys with scores 0 and log(3)·sqrt(d)/sqrt(d): weights 1/4, 3/4.
    d = 4
    q = torch.zeros(1, 1, 1, d, dtype=torch.float64)
    q[..., 0] = math.log(3) * math.sqrt(d)
    k = torch.zeros(1, 1, 2, d, dtype=torch.float64)
    k[..., 1, 0] = 1.0
    v = torch.tensor([[[[1.0, 0, 0, 0], [0, 1.0, 0, 0]]]], dtype=torch.float64)
    out = naive_softmax_attention(q, k, v, causal=False)
    torch.testing.assert_close(out[0, 0, 0, :2], torch.tensor([0.25, 0.75], dtype=torch.float64))


def test_residual_score_attention_adds_the_previous_scores_before_the_softmax():
    from trevo.ops.attention import residual_score_attention

    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, dtype=torch.float64) for _ in range(3))
    out, scores = residual_score_attention(q, k, v, None, causal=True)
    torch.testing.assert_close(out, naive_softmax_attention(q, k, v, causal=True), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(scores, q @ k.transpose(-1, -2) / 2, rtol=1e-12, atol=1e-12)  # √4 = 2, no mask
    previous = torch.randn(2, 3, 5, 5, dtype=torch.float64)
    out, total = residual_score_attention(q, k, v, previous, causal=False)
    torch.testing.assert_close(total, scores + previous, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, torch.softmax(scores + previous, -1) @ v, rtol=1e-12, atol=1e-12)
