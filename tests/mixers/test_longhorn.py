"""Longhorn's layer against the authors' decoding step (models/longhorn.py, ``Longhorn.step``) run
token by token in float64 from the layer's own parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.registry import build

D, T, N = 8, 12, 4


@pytest.mark.parametrize("form", ["scan", "chunk", "recurrent"])
def test_layer_equals_the_online_regression_update_step_by_step(form):
    torch.manual_seed(0)
    m = build("mixer", "longhorn", {"d_state": N, "chunk_size": 5, "form": form}, d_model=D, causal=True).double()
    x = torch.randn(2, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    xs, z = m.in_proj(x).chunk(2, dim=-1)
    xs = F.silu(m.conv(xs)[0])
    dt, k, q = m.x_proj(xs).split([m.dt_low_rank_dim, N, N], dim=-1)
    S = torch.zeros(2, m.d_inner, N, dtype=torch.float64)
    ys = []
    for t in range(T):
        beta = torch.sigmoid(m.dt_proj(dt[:, t]) + m.dt_bias)
        eps = beta / (1 + beta * k[:, t].square().sum(-1, keepdim=True))  # ε = β / (1 + β kᵀk)
        S = S * (1 - eps[:, :, None] * k[:, t, None, :] ** 2) + (eps * xs[:, t])[:, :, None] * k[:, t, None, :]
        ys.append((S * q[:, t, None, :]).sum(-1) + m.D * xs[:, t])
    ref = m.out_proj(torch.stack(ys, dim=1) * F.silu(z))
    torch.testing.assert_close(m(x), ref, rtol=1e-9, atol=1e-10)


def test_the_decay_stays_in_zero_one_for_large_beta():
    """1 − ε k² with ε = β/(1 + β‖k‖²) is in (0, 1]; the log form stays finite where β‖k‖² is huge."""
    from trevo.components.mixers.longhorn import longhorn_log_decay

    k = torch.tensor([[[3.0, 0.0, 0.0]]])  # one dominant channel
    log_a = longhorn_log_decay(torch.tensor([[[1e6, 1e-3]]]), k)
    assert torch.isfinite(log_a).all() and (log_a <= 0).all()
    assert log_a[0, 0, 0, 0] < -10  # strongly erased along the dominant key channel
    torch.testing.assert_close(log_a[0, 0, :, 1:], torch.zeros(2, 2))  # untouched where k = 0
