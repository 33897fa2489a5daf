"""Mamba-2: the SSD layer equals its scalar-decay state-space recurrence, per head."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.helpers import short_conv_loop
from trevo.components.mixers.mamba2 import Mamba2


def test_ssd_equals_the_selective_state_space_recurrence():
    torch.manual_seed(0)
    d, T = 16, 12
    m = Mamba2(d, causal=True, head_dim=8, d_state=4, chunk_size=4).double()
    u = torch.randn(2, T, d, dtype=torch.float64)
    H, P, N, E = m.n_heads, m.head_dim, m.d_state, m.d_inner
    z, xBC, dt = m.in_proj(u).split([E, E + 2 * N, H], dim=-1)
    x, Bm, Cm = F.silu(short_conv_loop(m.conv, xBC)).split([E, N, N], dim=-1)
    dt = F.softplus(dt + m.dt_bias)
    A = -m.A_log.exp()
    x = x.view(2, T, H, P)
    h = torch.zeros(2, H, N, P, dtype=torch.float64)
    ys = []
    for t in range(T):
        h = torch.exp(dt[:, t] * A)[:, :, None, None] * h + Bm[:, t, None, :, None] * (dt[:, t, :, None] * x[:, t])[
            :, :, None, :]
        ys.append(torch.einsum("bn,bhnp->bhp", Cm[:, t], h) + m.D[:, None] * x[:, t])
    y = torch.stack(ys, dim=1).flatten(2)
    expected = m.out_proj(m.norm(y * F.silu(z)))
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(u), expected, rtol=1e-10, atol=1e-10)
