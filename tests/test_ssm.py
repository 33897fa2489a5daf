"""Diagonal state-space models (S4D, S5) and the long convolution: defining properties."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.mixers.s4d import S4D
from trevo.components.mixers.s5 import S5
from trevo.ops.long_conv import (
    bidirectional_conv_direct,
    causal_conv_direct,
    fft_bidirectional_conv,
    fft_causal_conv,
)
from trevo.ops.ssm import hippo_legs_normal_eig, s4d_lin_init, ssm_kernel, zoh


def test_fft_convolution_equals_the_direct_causal_convolution_and_is_exactly_causal():
    torch.manual_seed(0)
    u, k = torch.randn(2, 3, 23, dtype=torch.float64), torch.randn(3, 30, dtype=torch.float64)
    explicit = torch.zeros_like(u)
    for t in range(23):
        for s in range(t + 1):
            explicit[..., t] += k[:, t - s] * u[..., s]
    torch.testing.assert_close(causal_conv_direct(u, k), explicit)
    for block in (None, 4, 5, 23):
        torch.testing.assert_close(fft_causal_conv(u, k, block), explicit, rtol=1e-10, atol=1e-12)
    y = fft_causal_conv(u, k, block=4)
    for t in (0, 3, 4, 9, 21):
        u2 = u.clone()
        u2[..., t + 1:] = torch.randn_like(u2[..., t + 1:]) * 100
        assert torch.equal(fft_causal_conv(u2, k, block=4)[..., :t + 1], y[..., :t + 1]), t


def test_bidirectional_convolution_has_forward_and_backward_kernels():
    torch.manual_seed(0)
    u = torch.randn(1, 2, 9, dtype=torch.float64)
    k, kb = torch.randn(2, 9, dtype=torch.float64), torch.randn(2, 9, dtype=torch.float64)
    explicit = torch.zeros_like(u)
    for t in range(9):
        for s in range(9):
            explicit[..., t] += (k[:, t - s] if s <= t else kb[:, s - t - 1]) * u[..., s]
    torch.testing.assert_close(bidirectional_conv_direct(u, k, kb), explicit)
    torch.testing.assert_close(fft_bidirectional_conv(u, k, kb), explicit)


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


def _ssm_loop(dtA, Bbar, C, u):
    """y_t = 2·Re(C x_t), x_t = Λ̄ x_{t−1} + B̄ u_t per channel ([H, N] parameters, u [B, T, H])."""
    x = torch.zeros(u.shape[0], *dtA.shape, dtype=torch.complex128)
    ys = []
    for t in range(u.shape[1]):
        x = torch.exp(dtA) * x + Bbar * u[:, t, :, None]
        ys.append(2 * (x * C).sum(-1).real)
    return torch.stack(ys, 1)


def test_s4d_kernel_by_fft_equals_the_recurrent_scan():
    torch.manual_seed(0)
    mixer = S4D(3, causal=True, d_state=4, init="lin").double()
    dtA, Bbar = mixer.discretize()
    u = torch.randn(2, 21, 3, dtype=torch.float64)
    kernel = ssm_kernel(dtA, mixer.C() * Bbar, 21)
    by_fft = fft_causal_conv(u.transpose(1, 2), kernel).transpose(1, 2)
    torch.testing.assert_close(by_fft, _ssm_loop(dtA, Bbar, mixer.C(), u), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("init", ["legs", "lin"])
def test_s4d_stepping_gives_the_same_outputs(init):
    torch.manual_seed(0)
    mixer = S4D(4, causal=True, d_state=4, init=init, conv_block=4).double()
    x = torch.randn(2, 13, 4, dtype=torch.float64)
    full = mixer(x)
    state, ys = mixer.init_state(2, "cpu", torch.float64), []
    for t in range(13):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), full, rtol=1e-10, atol=1e-12)


def test_s4d_bidirectional_forms_agree_with_the_two_kernel_formula():
    torch.manual_seed(0)
    mixer = S4D(3, causal=False, d_state=4).double()
    x = torch.randn(2, 10, 3, dtype=torch.float64)
    dtA, Bbar = mixer.discretize()
    kf, kb = ssm_kernel(dtA, mixer.C(0) * Bbar, 10), ssm_kernel(dtA, mixer.C(1) * Bbar, 10)
    conv = bidirectional_conv_direct(x.transpose(1, 2), kf, kb).transpose(1, 2)
    expected = mixer._output(conv, x)
    for form in ("fft", "scan", "recurrent"):
        mixer.impl = form
        torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)


def test_s5_scan_equals_a_mimo_loop():
    torch.manual_seed(0)
    mixer = S5(4, causal=True, d_state=6, chunk_size=4).double()
    x = torch.randn(2, 11, 4, dtype=torch.float64)
    dtA, Bbar = mixer.discretize()
    C = torch.complex(mixer.C_re, mixer.C_im)
    h = torch.zeros(2, 6, dtype=torch.complex128)
    ys = []
    for t in range(11):
        h = torch.exp(dtA) * h + x[:, t].to(torch.complex128) @ Bbar.T
        ys.append(2 * (h @ C.T).real + mixer.D * x[:, t])
    y = torch.nn.functional.gelu(torch.stack(ys, 1))
    expected = y * torch.sigmoid(mixer.gate(y))
    torch.testing.assert_close(mixer(x), expected, rtol=1e-10, atol=1e-12)
    assert (torch.exp(dtA).abs() < 1).all()  # stable at init
