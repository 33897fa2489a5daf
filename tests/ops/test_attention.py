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


def test_biased_attention_chunks_equal_one_block_and_empty_rows_are_zero():
    from trevo.ops.attention import biased_softmax_attention
    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 9, 4, dtype=torch.float64) for _ in range(3))
    bias = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    bias[:, :, 2] = float("-inf")  # query 2 sees no key at all

    def score_bias(start, stop):
        return bias[..., start:stop]

    ref = torch.softmax(q @ k.transpose(-1, -2) / 2 + bias, dim=-1).nan_to_num(0.0) @ v
    for chunk in (None, 2, 4, 20):
        out = biased_softmax_attention(q, k, v, causal=False, score_bias=score_bias, chunk_size=chunk)
        torch.testing.assert_close(out, ref)
    causal = biased_softmax_attention(q, k, v, causal=True, chunk_size=4)
    torch.testing.assert_close(causal, naive_softmax_attention(q, k, v, causal=True))


def test_scaled_sdpa_uses_the_given_scale_and_aligns_the_causal_mask():
    from trevo.ops.attention import scaled_sdpa_attention
    torch.manual_seed(3)
    q, k, v = torch.randn(1, 2, 3, 4, dtype=torch.float64), *(torch.randn(1, 2, 7, 4, dtype=torch.float64)
                                                                 for _ in range(2))
    out = scaled_sdpa_attention(q, k, v, causal=True, scale=0.3)
    torch.testing.assert_close(out, naive_softmax_attention(q * 0.3 * 2, k, v, causal=True))  # naive divides by √4


@pytest.mark.parametrize("form", ["sparse", "quadratic"])
def test_selected_block_attention_equals_a_loop_over_the_chosen_keys(form):
    from trevo.ops.attention import selected_block_attention
    torch.manual_seed(4)
    B, H, tq, tk, D, bs = 2, 2, 6, 11, 4, 3
    q, k, v = torch.randn(B, H, tq, D, dtype=torch.float64), *(torch.randn(B, H, tk, D, dtype=torch.float64)
                                                                 for _ in range(2))
    n_blocks = -(-tk // bs)
    idx = torch.stack([torch.randperm(n_blocks)[:2] for _ in range(B * H * tq)]).view(B, H, tq, 2)
    idx[0, 0, 0, 1] = -1  # an empty slot
    out = selected_block_attention(q, k, v, idx, bs, form=form)
    for b in range(B):
        for h in range(H):
            for r in range(tq):
                pos = tk - tq + r
                keys = [j for j in range(pos + 1) if j // bs in idx[b, h, r].tolist()]
                if not keys:
                    torch.testing.assert_close(out[b, h, r], torch.zeros(D, dtype=torch.float64))
                    continue
                w = torch.softmax(torch.stack([q[b, h, r] @ k[b, h, j] / 2 for j in keys]), 0)
                torch.testing.assert_close(out[b, h, r], sum(wi * v[b, h, j] for wi, j in zip(w, keys, strict=True)))


def test_selected_block_attention_sparse_form_has_the_quadratic_gradients():
    """Distinct blocks per query (some after it, some empty slots), scores far below 0: the sparse form's
    values and gradients equal the dense masked reference's."""
    from trevo.ops.attention import selected_block_attention
    torch.manual_seed(5)
    B, H, tq, tk, D, bs = 2, 3, 9, 14, 4, 4
    q = torch.randn(B, H, tq, D, dtype=torch.float64, requires_grad=True)
    k = (torch.randn(B, H, tk, D, dtype=torch.float64) - 30).requires_grad_()  # q·k ≈ −60 · Σq: far from 0
    v = torch.randn(B, H, tk, D, dtype=torch.float64, requires_grad=True)
    n_blocks = -(-tk // bs)
    idx = torch.stack([torch.randperm(n_blocks)[:3] for _ in range(B * H * tq)]).view(B, H, tq, 3)
    idx[0, 1, 2, 0] = idx[1, 0, 4, 2] = -1
    w = torch.randn(B, H, tq, D, dtype=torch.float64)
    results = []
    for form in ("sparse", "quadratic"):
        out = selected_block_attention(q, k, v, idx, bs, form=form)
        results.append((out, *torch.autograd.grad((out * w).sum(), (q, k, v))))
    for name, a, b in zip(("out", "dq", "dk", "dv"), *results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=lambda m, name=name: f"{name}: {m}")
