"""Hamburger's hams against numpy implementations (Lee and Seung's multiplicative updates for NMF, soft
spherical k-means for VQ and CD, CD's ridge solve), the monotone decrease of NMF's factorisation error,
the one-step gradient, and hand-checked cases: VQ recovers the means of well-separated clusters, CD
reconstructs a matrix whose rank is at most the number of concepts."""

from __future__ import annotations

import numpy as np
import torch

from trevo.ops.hamburger import ham_cd, ham_nmf, ham_vq, nmf, update_coef


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


def _softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _unit(a):
    return a / (np.linalg.norm(a, axis=0, keepdims=True) + 1e-6)


def _numpy_kmeans(x, d, steps, inv_t, normalize_bases):
    for _ in range(steps):
        c = _softmax(inv_t * _unit(x).T @ _unit(d))
        d = x @ (c / (c.sum(0, keepdims=True) + 1e-6))
        if normalize_bases:
            d = _unit(d)
    return d


def test_vq_and_cd_hams_equal_their_numpy_loops():
    rng = np.random.default_rng(2)
    x, d0 = rng.standard_normal((2, 6, 11)), _unit(rng.standard_normal((6, 3)))[None].repeat(2, 0)
    vq = ham_vq(torch.from_numpy(x), torch.from_numpy(d0), 3, 5.0).numpy()
    cd = ham_cd(torch.from_numpy(x), torch.from_numpy(d0), 3, 5.0, 0.1).numpy()
    for n in range(2):
        d = _numpy_kmeans(x[n], d0[n], 3, 5.0, normalize_bases=False)
        np.testing.assert_allclose(vq[n], d @ _softmax(5.0 * _unit(x[n]).T @ _unit(d)).T, rtol=1e-9, atol=1e-12)
        d = _numpy_kmeans(x[n], d0[n], 3, 5.0, normalize_bases=True)
        coef = x[n].T @ d @ np.linalg.inv(d.T @ d + 0.1 * np.eye(3))
        np.testing.assert_allclose(cd[n], d @ coef.T, rtol=1e-9, atol=1e-12)


def test_vq_replaces_each_column_by_the_mean_of_its_cluster():
    rng = np.random.default_rng(3)
    centres = np.eye(4)[:, :2] * 5  # two orthogonal directions
    labels = np.arange(12) % 2
    x = centres[:, labels] + 0.01 * rng.standard_normal((4, 12))
    d0 = centres + 0.3 * rng.standard_normal((4, 2))
    out = ham_vq(torch.from_numpy(x[None]), torch.from_numpy(d0[None]), 4, 100.0).numpy()[0]
    means = np.stack([x[:, labels == k].mean(1) for k in (0, 1)], 1)
    np.testing.assert_allclose(out, means[:, labels], atol=1e-6)


def test_cd_reconstructs_a_matrix_of_rank_at_most_the_number_of_concepts():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((8, 3)) @ rng.standard_normal((3, 20))  # rank 3
    d0 = _unit(rng.standard_normal((8, 3)))
    out = ham_cd(torch.from_numpy(x[None]), torch.from_numpy(d0[None]), 2, 1.0, 1e-9).numpy()[0]
    np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-6)
    ridge = ham_cd(torch.from_numpy(x[None]), torch.from_numpy(d0[None]), 2, 1.0, 10.0).numpy()[0]
    assert np.linalg.norm(ridge) < np.linalg.norm(x)  # the ridge shrinks the fit: the β term is really there
