"""LMU: the delay matrices on a hand-checked case, zero-order hold against its definition, the
memory reconstructing the delayed input from Legendre polynomials (the LMU's defining property), and
the parallel (convolution) memory equal to the step-by-step recurrence."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.ops.lmu import lmu_matrices, memory_recurrent, shifted_legendre, zoh_discretize
from trevo.testing import build_mixer


def test_delay_matrices_for_order_two_by_hand():
    A, B = lmu_matrices(2, 4.0)
    torch.testing.assert_close(A, torch.tensor([[-1.0, -1.0], [3.0, -3.0]], dtype=torch.float64) / 4)
    torch.testing.assert_close(B, torch.tensor([1.0, -3.0], dtype=torch.float64) / 4)


def test_zero_order_hold_against_its_definition():
    A, B = lmu_matrices(5, 7.0)
    Abar, Bbar = zoh_discretize(A, B)
    torch.testing.assert_close(Abar, torch.linalg.matrix_exp(A), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(Bbar, torch.linalg.solve(A, (Abar - torch.eye(5, dtype=torch.float64)) @ B),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("delay_fraction", [0.0, 0.5, 1.0])
def test_the_memory_holds_the_window_as_legendre_coefficients(delay_fraction):
    """u(t − θ') ≈ Σ_i P̃_i(θ'/θ) m_i(t) for a signal slower than the window (Voelker et al. 2019, eq. 3)."""
    order, theta, period = 12, 40.0, 300.0
    Abar, Bbar = zoh_discretize(*lmu_matrices(order, theta))
    t = torch.arange(600, dtype=torch.float64)
    u = torch.sin(2 * math.pi * t / period)[None, :, None]
    m, _ = memory_recurrent(Abar, Bbar, u, torch.zeros(1, 1, order, dtype=torch.float64))
    readout = (m[0, :, 0] * shifted_legendre(order, torch.tensor(delay_fraction, dtype=torch.float64))).sum(-1)
    delayed = torch.sin(2 * math.pi * (t - delay_fraction * theta) / period)
    assert (readout - delayed)[200:].abs().max() < 0.02  # after the window has filled
    assert (readout - u[0, :, 0])[200:].abs().max() > 0.1 or delay_fraction == 0.0  # it is the delayed signal


def test_shifted_legendre_polynomials_by_hand():
    r = torch.tensor([0.0, 0.25, 1.0], dtype=torch.float64)
    P = shifted_legendre(3, r)
    torch.testing.assert_close(P[1], 2 * r - 1)
    torch.testing.assert_close(P[2], 6 * r ** 2 - 6 * r + 1)


def test_parallel_memory_equals_the_recurrence_with_a_carried_state():
    mixer = build_mixer("lmu", True)
    x = torch.randn(2, 13, mixer.d_model, dtype=torch.float64)
    state = {"h": torch.randn(2, mixer.memory_dim, mixer.d_state, dtype=torch.float64)}
    mixer.form = "fft"
    y_fft, s_fft = mixer.prefill(x, state)
    mixer.form = "recurrent"
    y_rec, s_rec = mixer.prefill(x, state)
    torch.testing.assert_close(y_fft, y_rec, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s_fft["h"], s_rec["h"], rtol=1e-10, atol=1e-12)


def test_lmu_refuses_an_empty_window():
    with pytest.raises(IncompatibleError, match="window"):
        build_mixer("lmu", True, window=0.0)
