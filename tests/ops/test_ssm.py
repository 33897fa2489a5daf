"""Diagonal state-space building blocks (trevo.ops.ssm): the HiPPO-LegS normal eigenvalues, S4D-Lin and
ZOH against the matrix exponential, the kernel and the carried-state terms (matmuls against coarse ×
fine powers) against a loop."""

from __future__ import annotations

import math

import torch

from trevo.ops.ssm import (
    hippo_legs_normal_eig,
    s4d_lin_init,
    ssm_kernel,
    ssm_state_after,
    ssm_state_readout,
    zoh,
)


def test_legs_normal_eigenvalues_diagonalise_the_normal_part():
    n = 8
    lam, V = hippo_legs_normal_eig(n)
    assert torch.allclose(lam.real, torch.full_like(lam.real, -0.5)) and (lam.imag > 0).all()
    q = torch.sqrt(2 * torch.arange(n, dtype=torch.float64) + 1)
    S = -torch.tril(q[:, None] * q[None, :], -1) - torch.diag(torch.arange(1, n + 1, dtype=torch.float64))
    p = torch.sqrt(torch.arange(n, dtype=torch.float64) + 0.5)
    S = S + p[:, None] * p[None, :]
    # Real S = V Λ Vᴴ + conj(V Λ Vᴴ): the kept half and its conjugates span everything.
    half = V @ torch.diag(lam) @ V.conj().T
    torch.testing.assert_close((half + half.conj()).real, S, rtol=1e-10, atol=1e-10)


def test_s4d_lin_and_zoh_match_the_matrix_exponential():
    lam = s4d_lin_init(4)
    torch.testing.assert_close(lam.imag, math.pi * torch.arange(4, dtype=torch.float64))
    log_dt, B = torch.tensor(-1.3, dtype=torch.float64), torch.tensor([0.3 + 0.2j, 1.0, -0.5j, 2.0])
    dtA, Bbar = zoh(log_dt, lam, B.to(torch.complex128))
    dt = math.exp(-1.3)
    for n in range(4):  # exp([[λΔ, BΔ], [0, 0]]) holds exp(λΔ) and the ZOH input matrix
        block = torch.tensor([[lam[n] * dt, B[n] * dt], [0, 0]], dtype=torch.complex128)
        expm = torch.linalg.matrix_exp(block)
        torch.testing.assert_close(torch.exp(dtA[n]), expm[0, 0])
        torch.testing.assert_close(Bbar[n], expm[0, 1])


def test_kernel_and_carried_state_terms_equal_the_recurrence_from_a_state():
    """y_t = 2·Re(C h_t), h_t = Λ̄ h_{t−1} + B̄ u_t from h_{−1} = h0: the kernel convolution plus the
    readout of h0 gives y, and ssm_state_after gives the last h."""
    torch.manual_seed(0)
    H, N, T = 2, 3, 9
    dtA = torch.complex(-torch.rand(H, N, dtype=torch.float64), torch.randn(H, N, dtype=torch.float64))
    Bbar, C = (torch.randn(H, N, dtype=torch.complex128) for _ in range(2))
    h0 = torch.randn(2, H, N, dtype=torch.complex128)
    u = torch.randn(2, T, H, dtype=torch.float64)
    h, ys = h0, []
    for t in range(T):
        h = torch.exp(dtA) * h + Bbar * u[:, t, :, None]
        ys.append(2 * (h * C).sum(-1).real)
    y = torch.stack(ys, 1)  # [B, T, H]
    k = ssm_kernel(dtA, C * Bbar, T)  # [H, T]
    conv = torch.stack([sum(k[:, t - s] * u[:, s] for s in range(t + 1)) for t in range(T)], 1)
    readout = ssm_state_readout(dtA, C, h0, T).transpose(1, 2)
    torch.testing.assert_close(conv + readout, y, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ssm_state_after(dtA, Bbar, u, h0), h, rtol=1e-10, atol=1e-12)


def _system(H=3, N=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    dtA = torch.complex(-torch.rand(H, N, generator=g, dtype=torch.float64) * 0.3,
                        torch.randn(H, N, generator=g, dtype=torch.float64))
    return dtA, torch.randn(H, N, generator=g, dtype=torch.complex128)


def test_kernel_is_the_sum_over_modes_of_the_powers():
    dtA, CB = _system()
    for length in (1, 2, 17, 64):
        expected = torch.stack([2 * (CB * torch.exp(lag * dtA)).sum(-1).real for lag in range(length)], dim=-1)
        torch.testing.assert_close(ssm_kernel(dtA, CB, length), expected, rtol=1e-10, atol=1e-12)


def test_state_after_and_readout_equal_the_recurrence():
    dtA, Bbar = _system(seed=1)
    _, C = _system(seed=2)
    g = torch.Generator().manual_seed(3)
    u = torch.randn(2, 23, 3, generator=g, dtype=torch.float64)
    h0 = torch.randn(2, 3, 4, generator=g, dtype=torch.complex128)
    h, readout = h0, []
    for _ in range(u.shape[1]):
        h = torch.exp(dtA) * h
        readout.append(2 * (C * h).sum(-1).real)  # the carried state's share of y_t
    torch.testing.assert_close(ssm_state_readout(dtA, C, h0, 23), torch.stack(readout, -1), rtol=1e-10, atol=1e-12)
    h = h0
    for t in range(u.shape[1]):
        h = torch.exp(dtA) * h + Bbar * u[:, t, :, None]
    torch.testing.assert_close(ssm_state_after(dtA, Bbar, u, h0), h, rtol=1e-10, atol=1e-12)
