"""S4: the Cauchy/Woodbury kernel equals the kernel from powers of the bilinear Ā, the DPLR
initialisation is HiPPO-LegS, the O(N) step is the dense Ā, and the layer equals a float64 loop of the
dense recurrence."""

from __future__ import annotations

import pytest
import torch

from trevo.components.mixers.s4 import S4
from trevo.ops.s4 import (
    B_bar,
    apply_A_bar,
    bilinear_dense,
    c_tilde,
    cauchy_woodbury_kernel,
    kernel_by_powers,
    s4_legs_init,
    state_after,
)
from trevo.ops.ssm import hippo_legs, hippo_legs_normal_eig


def _random_dplr(H: int, N: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = lambda *s: torch.complex(torch.randn(*s, generator=g, dtype=torch.float64),  # noqa: E731
                                 torch.randn(*s, generator=g, dtype=torch.float64))
    lam = torch.complex(-torch.rand(H, N, generator=g, dtype=torch.float64) - 0.05,
                        3 * torch.randn(H, N, generator=g, dtype=torch.float64))
    dt = torch.exp(torch.empty(H, dtype=torch.float64).uniform_(-5, 0, generator=g))
    return lam, 0.5 * c(H, N), c(H, N), c(H, N), dt


@pytest.mark.parametrize("length", [1, 2, 7, 16, 33])
def test_cauchy_woodbury_kernel_equals_powers_of_the_bilinear_A(length):
    lam, P, B, C, dt = _random_dplr(3, 5)
    Abar, Bbar = bilinear_dense(lam, P, B, dt)
    expected = kernel_by_powers(Abar, Bbar, C, length)
    got = cauchy_woodbury_kernel(lam, P, B, c_tilde(C, Abar, length), dt, length)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_bilinear_matrices_against_the_definition():
    """Ā = (I − Δ/2·A)⁻¹(I + Δ/2·A) written out with an explicit inverse of the dense A = Λ − PP*."""
    lam, P, B, _, dt = _random_dplr(2, 4, seed=1)
    A = torch.diag_embed(lam) - P[..., :, None] * P.conj()[..., None, :]
    eye = torch.eye(4, dtype=A.dtype)
    inv = torch.linalg.inv(eye - dt[:, None, None] / 2 * A)
    Abar, Bbar = bilinear_dense(lam, P, B, dt)
    torch.testing.assert_close(Abar, inv @ (eye + dt[:, None, None] / 2 * A), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Bbar, (inv @ (dt[:, None] * B)[..., None])[..., 0], rtol=1e-12, atol=1e-12)
    h = torch.randn(3, 2, 4, dtype=torch.complex128)
    torch.testing.assert_close(apply_A_bar(h, lam, P, dt), (Abar @ h[..., None])[..., 0], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(B_bar(lam, P, B, dt), Bbar, rtol=1e-12, atol=1e-12)


def test_legs_dplr_init_reconstructs_the_hippo_legs_matrix():
    """With both halves of the conjugate pairs, V(Λ − P̃P̃*)V* is exactly HiPPO-LegS (S4 Theorem 1),
    and P̃, B̃ of the kept half are V*p and V*b."""
    n = 8
    A, b = hippo_legs(n)
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    skew = (A + p[:, None] * p[None, :])
    assert torch.allclose(skew + skew.T, -torch.eye(n, dtype=torch.float64), atol=1e-12)  # normal part: −I/2 + S
    lam, P, B = s4_legs_init(n // 2)
    # The kept eigenvalues are eigenvalues of A + ppᵀ, found here independently of the init's eigh.
    eigvals = torch.linalg.eigvals((A + p[:, None] * p[None, :]).to(torch.complex128))
    assert all((eigvals - lam_k).abs().min() < 1e-10 for lam_k in lam) and (lam.imag > 0).all()
    # Reconstruct from the returned half and its conjugate: V_full = [V, V̄] is unitary.
    _, V = hippo_legs_normal_eig(n)
    V_full = torch.cat([V, V.conj()], dim=1)
    lam_full, P_full = torch.cat([lam, lam.conj()]), torch.cat([P, P.conj()])
    torch.testing.assert_close(V_full.conj().T @ V_full, torch.eye(n, dtype=torch.complex128), rtol=0, atol=1e-12)
    rebuilt = V_full @ (torch.diag(lam_full) - P_full[:, None] * P_full.conj()[None, :]) @ V_full.conj().T
    torch.testing.assert_close(rebuilt.real, A, rtol=0, atol=1e-10)
    assert rebuilt.imag.abs().max() < 1e-10
    torch.testing.assert_close(V_full @ torch.cat([B, B.conj()]), b.to(torch.complex128), rtol=0, atol=1e-10)


def test_state_after_a_chunk_equals_the_dense_loop():
    lam, P, B, _, dt = _random_dplr(2, 3, seed=2)
    Abar, Bbar = bilinear_dense(lam, P, B, dt)
    for T in (1, 5, 8):
        Bu = torch.randn(2, T, 2, 1, dtype=torch.float64) * Bbar
        h0 = torch.randn(2, 2, 3, dtype=torch.complex128)
        h = h0
        for t in range(T):
            h = (Abar @ h[..., None])[..., 0] + Bu[:, t]
        torch.testing.assert_close(state_after(Abar, Bu, h0), h, rtol=1e-12, atol=1e-12)


def test_s4_layer_equals_a_float64_loop_of_the_dense_recurrence():
    torch.manual_seed(0)
    mixer = S4(3, causal=True, d_state=4, fft_chunk_size=4).double()
    with torch.no_grad():
        mixer.P_re.add_(0.3 * torch.randn_like(mixer.P_re))  # away from the initialisation, to test DPLR in general
    x = torch.randn(2, 13, 3, dtype=torch.float64)
    lam, P, B, dt = mixer.dplr()
    Abar, Bbar = bilinear_dense(lam, P, B, dt)
    h = torch.zeros(2, 3, 4, dtype=torch.complex128)
    ys = []
    for t in range(13):
        h = (Abar @ h[..., None])[..., 0] + Bbar * x[:, t, :, None]
        ys.append(2 * (mixer.C() * h).sum(-1).real)
    expected = mixer._output(torch.stack(ys, 1), x)
    for form in ("fft", "recurrent"):
        mixer.form = form
        torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
