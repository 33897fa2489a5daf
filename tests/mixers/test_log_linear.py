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


def test_log_linear_gated_deltanet_with_equal_level_weights_is_a_scaled_gated_deltanet():
    """λ = softplus(0) = log 2 at every level: the read is log 2 times Gated DeltaNet's."""
    from trevo.components.mixers.log_linear import LogLinearGatedDeltaNet
    from trevo.ops.delta_rule import delta_rule

    torch.manual_seed(1)
    d, H, T = 8, 2, 15
    m = LogLinearGatedDeltaNet(d, n_heads=H, n_levels=6).double()
    with torch.no_grad():
        m.l_proj.weight.zero_()
    x = torch.randn(2, T, d, dtype=torch.float64)
    q, k, v = (F.silu(t).unflatten(-1, (H, -1)).transpose(1, 2) for t in m.conv(m.qkv(x))[0].chunk(3, dim=-1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    beta = torch.sigmoid(m.b_proj(x)).transpose(1, 2)
    g = (-m.A_log.exp() * F.softplus(m.a_proj(x) + m.dt_bias)).transpose(1, 2)
    o, _ = delta_rule(q, k, v, beta, log_decay=g, scale=(d // H) ** -0.5, form="recurrent")
    o = torch.log(torch.tensor(2.0, dtype=torch.float64)) * o
    expected = m.out_proj(m.o_norm(o).transpose(1, 2).flatten(2) * F.silu(m.g_proj(x)))
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
