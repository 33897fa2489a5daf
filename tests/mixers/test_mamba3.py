"""Mamba-3: the layer equals a float64 loop of its exponential-trapezoidal step, SISO and MIMO, in every form
(the recurrence's Euler limit and complex state: tests/ops/test_mamba3.py)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from trevo.components.mixers.mamba3 import Mamba3
from trevo.components.rotary import rotate_by


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


