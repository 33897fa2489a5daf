"""SOFT: the Gaussian kernel by hand, the Newton iterations reach the pseudo-inverse, one landmark per
token reproduces the full kernel, and the Nyström product equals its formula with an exact pinv."""

from __future__ import annotations

import math

import torch

from trevo.ops.nystromformer import segment_means
from trevo.ops.soft import gaussian_kernel, newton_pinv, soft_attention


def test_gaussian_kernel_by_hand():
    a, b = torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 1.0], [0.0, 0.0]])
    torch.testing.assert_close(gaussian_kernel(a, b), torch.tensor([[math.exp(-2 / (2 * math.sqrt(2))), 1.0]]))


def test_newton_reaches_the_pseudo_inverse():
    torch.manual_seed(0)
    x = torch.randn(5, 3, dtype=torch.float64)
    a = gaussian_kernel(x, x)
    torch.testing.assert_close(newton_pinv(a, 60), torch.linalg.pinv(a), atol=1e-8, rtol=1e-6)
    # an empty landmark is an exactly zero row and column: the iterations keep it exactly zero
    padded = torch.zeros(6, 6, dtype=torch.float64)
    padded[:5, :5] = a
    z = newton_pinv(padded, 60)
    assert z[5].abs().sum() == 0 and z[:, 5].abs().sum() == 0
    torch.testing.assert_close(z[:5, :5], torch.linalg.pinv(a), atol=1e-8, rtol=1e-6)


def test_one_landmark_per_token_is_the_full_kernel():
    torch.manual_seed(0)
    q, v = (torch.randn(1, 1, 6, 3, dtype=torch.float64) for _ in range(2))
    torch.testing.assert_close(soft_attention(q, v, 6, n_iter=80), gaussian_kernel(q, q) @ v, atol=1e-7, rtol=1e-6)


def test_nystrom_product_with_exact_pinv():
    torch.manual_seed(0)
    q, v = (torch.randn(2, 2, 12, 3, dtype=torch.float64) for _ in range(2))
    lm, _ = segment_means(q, 4)
    want = gaussian_kernel(q, lm) @ torch.linalg.pinv(gaussian_kernel(lm, lm)) @ gaussian_kernel(lm, q) @ v
    torch.testing.assert_close(soft_attention(q, v, 4, n_iter=60), want, atol=1e-7, rtol=1e-6)
