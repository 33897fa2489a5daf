"""Mamba-3: the layer equals a float64 loop of its exponential-trapezoidal step (SISO and MIMO); λ = 1 is
Mamba-2's exponential-Euler recurrence; the rotary form equals a complex-diagonal state with transition
α_t e^{iΔφ_t} (the paper's complex SSM)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trevo.components.mixers.mamba3 import Mamba3
from trevo.components.rotary import rotate_by
from trevo.ops.linear_recurrence import linear_recurrence
from trevo.ops.mamba3 import mamba3_scan


@pytest.mark.parametrize("rank", [1, 3])
def test_mamba3_equals_its_trapezoidal_step_loop(rank):
    torch.manual_seed(0)
    d, T = 8, 13
    m = Mamba3(d, head_dim=4, d_state=8, mimo_rank=rank, chunk_size=8).double()
    if rank > 1:
        with torch.no_grad():
            for p in (m.mimo_x, m.mimo_z, m.mimo_o):
                p.add_(0.3 * torch.randn_like(p))
    u = torch.randn(2, T, d, dtype=torch.float64)
    H, r, N, P = m.n_heads, rank, 8, 4
    z, x, Bm, Cm, dt, A, lam, theta = m.in_proj(u).split(m.split, dim=-1)
    S = torch.zeros(2, H, N, P, dtype=torch.float64)
    k_prev, v_prev = torch.zeros(2, H, r, N, dtype=torch.float64), torch.zeros(2, H, r, P, dtype=torch.float64)
    phase = torch.zeros(2, H, N // 4, dtype=torch.float64)
    outs = []
    for t in range(T):
        delta = F.softplus(dt[:, t] + m.dt_bias)  # [B, H]
        alpha = torch.exp(torch.clamp(-F.softplus(A[:, t]), max=-1e-4) * delta)
        lt = torch.sigmoid(lam[:, t])
        phase = phase + math.pi * delta[..., None] * torch.tanh(theta[:, t])[:, None]
        k = rotate_by(m.B_norm(Bm[:, t].view(2, r, N))[:, None] + m.B_bias, phase[:, :, None])  # [B, H, r, N]
        q = rotate_by(m.C_norm(Cm[:, t].view(2, r, N))[:, None] + m.C_bias, phase[:, :, None])
        xt, zt = x[:, t].view(2, H, P), z[:, t].view(2, H, P)
        v = xt[:, :, None] * (m.mimo_x if r > 1 else 1)  # [B, H, r, P]
        beta, gamma = ((1 - lt) * delta * alpha)[..., None, None], (lt * delta)[..., None, None]
        S = alpha[..., None, None] * S + beta * torch.einsum("bhjn,bhjp->bhnp", k_prev, v_prev) \
            + gamma * torch.einsum("bhjn,bhjp->bhnp", k, v)
        y = torch.einsum("bhnp,bhln->bhlp", S, q) + m.D[:, None, None] * v
        if r > 1:
            y = (y * F.silu(zt[:, :, None] * m.mimo_z) * m.mimo_o).sum(2)
        else:
            y = y[:, :, 0] * F.silu(zt)
        outs.append(y.flatten(1))
        k_prev, v_prev = k, v
    expected = m.out_proj(torch.stack(outs, dim=1))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(u), expected, rtol=1e-10, atol=1e-10)


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
