"""Sinkformer: one iteration is softmax attention; the iterations are the alternating normalisations
written out; many make rows and columns sum to 1 (over the real tokens)."""

from __future__ import annotations

import math

import torch

from trevo.ops.sinkformer import sinkhorn_attention, sinkhorn_log


def _qkv(t=9):
    torch.manual_seed(0)
    return (torch.randn(2, 2, t, 4, dtype=torch.float64) for _ in range(3))


def test_one_iteration_is_softmax_attention():
    q, k, v = _qkv()
    softmax_attention = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(sinkhorn_attention(q, k, v, 1), softmax_attention)


def test_iterations_are_alternating_normalisations():
    q, k, v = _qkv()
    m = torch.exp(q @ k.transpose(-1, -2) / math.sqrt(4))
    for it in range(4):
        m = m / m.sum(dim=-1 if it % 2 == 0 else -2, keepdim=True)
    torch.testing.assert_close(sinkhorn_attention(q, k, v, 4), m @ v)


def test_many_iterations_are_doubly_stochastic_over_real_tokens():
    q, k, _ = _qkv()
    real = torch.ones(2, 9, dtype=torch.bool)
    real[1, 6:] = False
    valid = real[:, None, :, None] & real[:, None, None, :]
    p = torch.exp(sinkhorn_log(q @ k.transpose(-1, -2), 201, valid))
    torch.testing.assert_close(p[0].sum(-1), torch.ones(2, 9, dtype=torch.float64))
    torch.testing.assert_close(p[0].sum(-2), torch.ones(2, 9, dtype=torch.float64), atol=1e-8, rtol=0)
    torch.testing.assert_close(p[1, :, :6, :6].sum(-2), torch.ones(2, 6, dtype=torch.float64), atol=1e-8, rtol=0)
    assert p[1, :, 6:].sum() == 0 and p[1, :, :, 6:].sum() == 0
