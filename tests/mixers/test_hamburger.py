"""Hamburger's NMF ham against a numpy implementation of Lee and Seung's multiplicative updates, the
monotone decrease of the factorisation error, and the one-step gradient."""

from __future__ import annotations

import numpy as np
import torch

from trevo.ops.hamburger import ham_nmf, nmf, update_coef


def _numpy_nmf(x, d0, steps, eps=1e-6):
    c = np.exp(x.T @ d0)
    c = c / c.sum(1, keepdims=True)
    d = d0.copy()
    for _ in range(steps):
        c = c * (x.T @ d) / (c @ d.T @ d + eps)
        d = d * (x @ c) / (d @ c.T @ c + eps)
    return d, c


def test_ham_is_the_reconstruction_after_the_multiplicative_updates():
    rng = np.random.default_rng(0)
    x = rng.random((2, 6, 9))
    d0 = rng.random((2, 6, 3))
    out = ham_nmf(torch.from_numpy(x), torch.from_numpy(d0), 4).numpy()
    for n in range(2):
        d, c = _numpy_nmf(x[n], d0[n], 4)
        c = c * (x[n].T @ d) / (c @ d.T @ d + 1e-6)  # the last, differentiable update of C
        np.testing.assert_allclose(out[n], d @ c.T, rtol=1e-10, atol=1e-12)


def test_the_factorisation_error_never_increases():
    torch.manual_seed(0)
    x, d0 = torch.rand(1, 8, 20, dtype=torch.float64), torch.rand(1, 8, 4, dtype=torch.float64)
    errors = []
    for steps in range(1, 12):
        d, c = nmf(x, d0, steps)
        errors.append((x - d @ c.transpose(1, 2)).norm().item())
    assert all(b <= a + 1e-9 for a, b in zip(errors, errors[1:], strict=False)), errors
    assert errors[-1] < 0.9 * errors[0]


def test_one_step_gradient_is_the_gradient_of_the_last_update_only():
    torch.manual_seed(1)
    x = torch.rand(1, 5, 7, dtype=torch.float64, requires_grad=True)
    d0 = torch.rand(1, 5, 3, dtype=torch.float64)
    g = torch.randn(1, 5, 7, dtype=torch.float64)
    (grad,) = torch.autograd.grad((ham_nmf(x, d0, 5) * g).sum(), x)
    d, c = (t.detach() for t in nmf(x.detach(), d0, 5))
    xx = x.detach().clone().requires_grad_(True)
    (one_step,) = torch.autograd.grad(((d @ update_coef(xx, d, c).transpose(1, 2)) * g).sum(), xx)
    torch.testing.assert_close(grad, one_step, rtol=1e-12, atol=1e-12)
    xu = x.detach().clone().requires_grad_(True)
    d, c = nmf(xu, d0, 5)  # the unrolled gradient differs: the truncation is real
    (unrolled,) = torch.autograd.grad(((d @ update_coef(xu, d, c).transpose(1, 2)) * g).sum(), xu)
    assert not torch.allclose(grad, unrolled, rtol=1e-3)
