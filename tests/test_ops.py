"""The ops against independent references: naive formulas, float64 loops, hand-checked cases."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.ops.attention import chunked_softmax_attention, naive_softmax_attention, sdpa_attention
from trevo.ops.linear_attention import linear_attention_parallel, linear_attention_recurrent
from trevo.ops.rwkv4 import wkv4_chunked, wkv4_init_state, wkv4_recurrent

torch.manual_seed(0)


@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("tq,tk", [(13, 13), (5, 13), (1, 9)])
def test_softmax_attention_forms_agree_with_naive(causal, tq, tk):
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


def wkv_by_definition(w, u, k, v):
    """RWKV-4 eq. 14 summed literally in float64 (no stabilisation; small inputs only)."""
    B, T, C = k.shape
    out = torch.zeros(B, T, C, dtype=torch.float64)
    for t in range(T):
        num = torch.exp(u + k[:, t]) * v[:, t]
        den = torch.exp(u + k[:, t])
        for i in range(t):
            e = torch.exp(-(t - 1 - i) * w + k[:, i])
            num, den = num + e * v[:, i], den + e
        out[:, t] = num / den
    return out


@pytest.mark.parametrize("chunk", [None, 1, 4, 7])
def test_wkv4_forms_equal_the_definition(chunk):
    B, T, C = 2, 11, 5
    w, u = torch.rand(C, dtype=torch.float64) + 0.1, torch.randn(C, dtype=torch.float64)
    k, v = torch.randn(B, T, C, dtype=torch.float64), torch.randn(B, T, C, dtype=torch.float64)
    ref = wkv_by_definition(w, u, k, v)
    state = wkv4_init_state(B, C, "cpu", torch.float64)
    torch.testing.assert_close(wkv4_recurrent(w, u, k, v, state)[0], ref)
    torch.testing.assert_close(wkv4_chunked(w, u, k, v, state, chunk)[0], ref)


def test_wkv4_is_stable_for_large_keys_and_long_sequences():
    B, T, C = 1, 300, 4
    w = torch.tensor([1e-4, 0.5, 5.0, 50.0])
    u = torch.zeros(C)
    k = torch.randn(B, T, C) * 30 + 60  # exp(90) overflows float32
    v = torch.randn(B, T, C)
    state = wkv4_init_state(B, C, "cpu", torch.float32)
    rec = wkv4_recurrent(w, u, k, v, state)[0]
    chk = wkv4_chunked(w, u, k, v, state, 16)[0]
    assert torch.isfinite(rec).all() and torch.isfinite(chk).all()
    torch.testing.assert_close(chk, rec, rtol=1e-4, atol=1e-4)
    # A weighted average of the values: bounded by their range.
    assert (rec.abs() <= v.abs().max() + 1e-4).all()


def test_linear_attention_forms_and_definition():
    B, H, T, D = 2, 2, 9, 3
    q, k = torch.rand(B, H, T, D, dtype=torch.float64), torch.rand(B, H, T, D, dtype=torch.float64)
    v = torch.randn(B, H, T, 4, dtype=torch.float64)
    ref = torch.zeros(B, H, T, 4, dtype=torch.float64)
    for t in range(T):
        weights = (q[:, :, t:t + 1] * k[:, :, :t + 1]).sum(-1)  # [B,H,t+1]
        ref[:, :, t] = (weights[..., None] * v[:, :, :t + 1]).sum(2) / weights.sum(-1, keepdim=True)
    S, z = torch.zeros(B, H, D, 4, dtype=torch.float64), torch.zeros(B, H, D, dtype=torch.float64)
    torch.testing.assert_close(linear_attention_parallel(q, k, v, causal=True, eps=0), ref)
    torch.testing.assert_close(linear_attention_recurrent(q, k, v, S, z, eps=0)[0], ref)
    bidir = (q @ k.transpose(-1, -2)) @ v / (q @ k.transpose(-1, -2)).sum(-1, keepdim=True)
    torch.testing.assert_close(linear_attention_parallel(q, k, v, causal=False, eps=0), bidir)
