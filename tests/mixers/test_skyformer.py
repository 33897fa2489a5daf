"""Skyformer: the Nyström form is exact when the landmarks cover every query and key (against the
Gaussian-kernel attention computed pair by pair), and improves as landmarks are added."""

from __future__ import annotations

import math

import torch

from trevo.ops.skyformer import kernelized_attention, skyformer_attention


def _pairwise(q, k, v):
    B, H, T, D = q.shape
    out = torch.zeros_like(v)
    for b in range(B):
        for h in range(H):
            for i in range(T):
                for j in range(T):
                    kappa = math.exp(-((q[b, h, i] - k[b, h, j]).square().sum().item()) / (2 * math.sqrt(D)))
                    out[b, h, i] += kappa * v[b, h, j]
    return out


def test_kernelized_attention_is_the_gaussian_kernel_pair_by_pair():
    q, k, v = (torch.randn(1, 2, 6, 4, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(kernelized_attention(q, k, v), _pairwise(q, k, v), rtol=1e-12, atol=1e-12)


def test_nystrom_is_exact_when_landmarks_cover_every_query_and_key():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 2, 7, 4, dtype=torch.float64) for _ in range(3))
    real = torch.ones(2, 7, dtype=torch.bool)
    real[1, 5:] = False
    exact = kernelized_attention(q, k, v, key_padding_mask=real)
    approx = skyformer_attention(q, k, v, n_landmarks=14, ridge=1e-12, key_padding_mask=real)
    torch.testing.assert_close(approx, exact, rtol=1e-6, atol=1e-6)


def test_more_landmarks_approximate_better():
    torch.manual_seed(1)
    q, k, v = (0.5 * torch.randn(1, 1, 64, 8, dtype=torch.float64) for _ in range(3))
    exact = kernelized_attention(q, k, v)
    errors = [(skyformer_attention(q, k, v, n_landmarks=m, ridge=1e-10) - exact).norm().item() for m in (4, 16, 64)]
    assert errors[0] > errors[1] > errors[2], errors
