"""HGRN2: a lower-bounded forget gate with the tied input gate 1 − f, expanded by an outer product."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.hgrn2 import HGRN2, hgrn2_log_forget


def test_forget_gate_is_bounded_below_by_the_layer_bound():
    z = torch.tensor([-50.0, 0.0, 50.0], dtype=torch.float64)
    f = hgrn2_log_forget(z, 0.25).exp()
    torch.testing.assert_close(f, 0.25 + 0.75 * torch.sigmoid(z))
    assert f.min() >= 0.25
    torch.testing.assert_close(hgrn2_log_forget(z, 0.0), F.logsigmoid(z))


def test_hgrn2_equals_its_outer_product_recurrence():
    torch.manual_seed(0)
    d, H, T = 16, 2, 10
    m = HGRN2(d, causal=True, n_heads=H, chunk_size=4, layer_idx=1, n_layers=3).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    dh = d // H
    f = (1 / 3 + (2 / 3) * torch.sigmoid(m.f_proj(x))).view(2, T, H, dh)
    q, v = F.silu(m.q_proj(x)).view(2, T, H, dh), m.i_proj(x).view(2, T, H, dh)
    S = torch.zeros(2, H, dh, dh, dtype=torch.float64)
    outs = []
    for t in range(T):
        S = f[:, t, :, :, None] * S + (1 - f[:, t])[..., :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    expected = m.out_proj(m.norm(torch.stack(outs, dim=1)).flatten(2) * F.silu(m.g_proj(x)))
    for form in ("chunk", "quadratic", "recurrent"):
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
