"""Gated DeltaProduct's layer against a float64 loop of n Householder steps per token built from its own
projections; with one step it is Gated DeltaNet."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.multihead import merge_heads, split_heads
from trevo.registry import build

D, H, T = 16, 2, 9


def layer(name, **options):
    torch.manual_seed(0)
    return build("mixer", name, {"n_heads": H, "chunk_size": 5, **options}, d_model=D, causal=True).double()


@pytest.mark.parametrize("form", ["chunk", "recurrent"])
@pytest.mark.parametrize("n", [2, 3])
def test_layer_equals_n_householder_steps_per_token(form, n):
    m = layer("gated_deltaproduct", n_householder=n, form=form)
    x = torch.randn(2, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    silu = F.silu
    q = F.normalize(split_heads(silu(m.q_conv(m.q_proj(x))[0]), H), dim=-1)
    ks = silu(m.k_conv(m.k_proj(x))[0]).unflatten(-1, (n, H, -1))  # [B, T, n, H, Dk]
    vs = silu(m.v_conv(m.v_proj(x))[0]).unflatten(-1, (n, H, -1))
    beta = 2 * torch.sigmoid(m.b_proj(x)).unflatten(-1, (n, H))  # β ∈ (0, 2): the default
    alpha = (-m.decay.A_log.exp() * F.softplus(m.decay.proj(x) + m.decay.dt_bias)).exp()  # [B, T, H]
    S = torch.zeros(2, H, D // H, D // H, dtype=torch.float64)
    eye = torch.eye(D // H, dtype=torch.float64)
    out = []
    for t in range(T):
        S = alpha[:, t, :, None, None] * S
        for j in range(n):
            kj = F.normalize(ks[:, t, j], dim=-1)[..., :, None]
            bj = beta[:, t, j, :, None, None]
            S = (eye - bj * kj @ kj.transpose(-1, -2)) @ S + bj * kj @ vs[:, t, j, :, None, :]
        out.append((q[:, :, t, None, :] @ S)[..., 0, :] * (D // H) ** -0.5)
    ref = m.out_proj(merge_heads(m.o_norm(torch.stack(out, dim=2))) * silu(m.g_proj(x)))
    torch.testing.assert_close(m(x), ref, rtol=1e-9, atol=1e-10)


def test_one_householder_step_is_gated_deltanet():
    product = layer("gated_deltaproduct", n_householder=1, negative_eigenvalues=False)
    gdn = layer("gated_deltanet")
    gdn.load_state_dict(product.state_dict())
    x = torch.randn(2, T, D, dtype=torch.float64)
    torch.testing.assert_close(product(x), gdn(x), rtol=1e-10, atol=1e-12)
