"""Log-linear Mamba-2: the layer equals Mamba-2's block around the pairwise Fenwick-level sum (float64),
and its generation state grows as the bit length of the position."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.ops.test_log_linear import pairwise
from trevo.components.mixers.log_linear import LogLinearMamba2


def test_log_linear_mamba2_is_mamba2_with_a_fenwick_read():
    torch.manual_seed(0)
    d, T = 8, 21
    m = LogLinearMamba2(d, head_dim=8, d_state=4, n_levels=6, chunk_size=4).double()
    u = torch.randn(2, T, d, dtype=torch.float64)
    H, N, L = m.n_heads, 4, 6
    z, xBC, dt, dl = m.in_proj(u).split([m.d_inner, m.d_inner + 2 * N, H, H * L], dim=-1)
    x, Bm, Cm = F.silu(m.conv(xBC)[0]).split([m.d_inner, N, N], dim=-1)
    dt = F.softplus(dt + m.dt_bias).transpose(1, 2)
    lam = F.softplus(m.level_scale * dl.unflatten(-1, (H, L))).transpose(1, 2)
    xh = x.unflatten(-1, (H, -1)).transpose(1, 2)
    k, q = Bm[:, None].expand(2, H, T, N), Cm[:, None].expand(2, H, T, N)
    y = pairwise(q, k, xh * dt[..., None], -m.A_log.exp()[:, None] * dt, lam, 0) + m.D[:, None, None] * xh
    expected = m.out_proj(m.norm(y.transpose(1, 2).flatten(2) * F.silu(z)))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(u), expected, rtol=1e-10, atol=1e-10)
        _, state = m.prefill(u)
        assert state["S"].shape[2] == T.bit_length()
