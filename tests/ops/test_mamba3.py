"""Mamba-3's recurrence: λ = 1 is Mamba-2's exponential-Euler recurrence, and the rotary form equals a
complex-diagonal state with transition α_t e^{iΔφ_t} (the paper's complex SSM)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.rotary import rotate_by
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.ops.mamba3 import mamba3_scan


def random_scan_inputs(seed, T=17, r=1, N=2, P=3):
    torch.manual_seed(seed)
    B, H = 2, 2
    q, k = torch.randn(B, H, T, r, N, dtype=torch.float64), torch.randn(B, H, T, r, N, dtype=torch.float64)
    v = torch.randn(B, H, T, r, P, dtype=torch.float64)
    dt = F.softplus(torch.randn(B, H, T, dtype=torch.float64))
    log_alpha = -dt * torch.rand(B, H, T, dtype=torch.float64)
    state = {"S": torch.zeros(B, H, N, P, dtype=torch.float64), "k_prev": torch.zeros(B, H, r, N, dtype=torch.float64),
             "v_prev": torch.zeros(B, H, r, P, dtype=torch.float64)}
    return q, k, v, log_alpha, dt, state


def test_lambda_one_is_mamba2_exponential_euler():
    q, k, v, log_alpha, dt, state = random_scan_inputs(1, N=4)
    y, S, _, _ = mamba3_scan(q, k, v, log_alpha, dt, torch.ones_like(dt), **state, form="chunk", chunk_size=4)
    y2, S2 = linear_recurrence(q[:, :, :, 0], k[:, :, :, 0] * dt[..., None], v[:, :, :, 0], log_decay=log_alpha,
                               form="recurrent")
    torch.testing.assert_close(y[:, :, :, 0], y2)
    torch.testing.assert_close(S, S2)


def test_rotary_state_is_a_complex_diagonal_state():
    """With q, k ∈ R² rotated by φ_t, y_t = Re(q̃_t h_t) for the complex recurrence
    h_t = α_t e^{iΔφ_t} (h_{t−1} + (1 − λ_t) Δ_t k̃*_{t−1} v_{t−1}) + γ_t k̃*_t v_t (k̃ = k_0 + i k_1)."""
    q, k, v, log_alpha, dt, state = random_scan_inputs(2)
    lam = torch.rand_like(dt)
    phi = torch.cumsum(torch.randn_like(dt), dim=2)
    y, _, _, _ = mamba3_scan(rotate_by(q, phi[..., None, None]), rotate_by(k, phi[..., None, None]), v, log_alpha,
                             dt, lam, **state, form="quadratic")
    qc, kc = torch.complex(q[..., 0, 0], q[..., 0, 1]), torch.complex(k[..., 0, 0], k[..., 0, 1])  # [B, H, T]
    alpha, gamma = log_alpha.exp(), lam * dt
    h = torch.zeros(2, 2, 3, dtype=torch.complex128)
    ys = []
    for t in range(q.shape[2]):
        rot = torch.exp(1j * (phi[:, :, t] - (phi[:, :, t - 1] if t else 0)))[..., None]
        prev = ((1 - lam[:, :, t]) * dt[:, :, t])[..., None] * kc[:, :, t - 1, None].conj() * v[:, :, t - 1, 0] \
            if t else 0
        h = rot * alpha[:, :, t, None] * (h + prev) + gamma[:, :, t, None] * kc[:, :, t, None].conj() * v[:, :, t, 0]
        ys.append((qc[:, :, t, None] * h).real)
    torch.testing.assert_close(y[:, :, :, 0], torch.stack(ys, dim=2))
