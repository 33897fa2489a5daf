"""DeltaNet and Gated DeltaNet mixers against an explicit loop of the (gated) delta rule, with
L2-normalised keys and short causal convolutions computed independently."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import short_conv_loop
from trevo.components.mixers.deltanet import DeltaNet, GatedDeltaNet


@pytest.mark.parametrize("cls", [DeltaNet, GatedDeltaNet])
def test_mixer_equals_the_explicit_delta_rule_loop(cls):
    torch.manual_seed(0)
    d, H, T = 16, 2, 10
    m = cls(d, causal=True, n_heads=H, chunk_size=4).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    dh = d // H

    def branch(name):
        y = F.silu(short_conv_loop(getattr(m, f"{name}_conv"), getattr(m, f"{name}_proj")(x)))
        return y.view(2, T, H, dh)

    q, k, v = branch("q"), branch("k"), branch("v")
    q, k = q / q.norm(dim=-1, keepdim=True), k / k.norm(dim=-1, keepdim=True)
    beta = torch.sigmoid(m.b_proj(x))
    if cls is GatedDeltaNet:
        alpha = torch.exp(-m.A_log.exp() * F.softplus(m.a_proj(x) + m.dt_bias))
        assert ((alpha > 0) & (alpha < 1)).all()
    else:
        alpha = torch.ones_like(beta)
    S = torch.zeros(2, H, dh, dh, dtype=torch.float64)  # S[b, h] maps keys to values: S_t = α S (I − β k kᵀ) + β v kᵀ
    eye = torch.eye(dh, dtype=torch.float64)
    outs = []
    for t in range(T):
        kt = k[:, t]
        proj = eye - beta[:, t, :, None, None] * kt[..., :, None] * kt[..., None, :]
        S = alpha[:, t, :, None, None] * S @ proj + beta[:, t, :, None, None] * v[:, t, :, :, None] * kt[..., None, :]
        outs.append((S @ q[:, t, :, :, None])[..., 0] * dh ** -0.5)
    o = m.o_norm(torch.stack(outs, dim=1)).flatten(2)
    if cls is GatedDeltaNet:
        o = o * F.silu(m.g_proj(x))
    expected = m.out_proj(o)
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
