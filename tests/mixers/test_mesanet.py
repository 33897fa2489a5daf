"""MesaNet's layer against a float64 loop that solves (H_t + Λ) x = q_t exactly at every token, built from
the layer's own projections (with cg_steps = head_dim conjugate gradient is exact)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.mixers.mesanet import LAMBDA_LOWER_BOUND
from trevo.components.multihead import merge_heads, split_heads
from trevo.registry import build

D, H, T = 16, 2, 10


@pytest.mark.parametrize("form", ["chunk", "recurrent"])
def test_layer_equals_the_exact_least_squares_read_out(form):
    torch.manual_seed(0)
    m = build("mixer", "mesanet", {"n_heads": H, "chunk_size": 4, "cg_steps": 2 * D // H, "form": form},
              d_model=D, causal=True).double()
    with torch.no_grad():
        m.lambda_param.normal_()  # distinct λ per channel
    x = torch.randn(2, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    q = F.normalize(split_heads(F.silu(m.q_conv(m.q_proj(x))[0]), H), dim=-1)
    k = F.normalize(split_heads(F.silu(m.k_conv(m.k_proj(x))[0]), H), dim=-1)
    v = split_heads(m.v_proj(x), H)
    beta, gamma = torch.sigmoid(m.b_proj(x)), torch.sigmoid(m.a_proj(x))  # [B, T, H]
    lam = torch.diag_embed((F.softplus(m.lambda_param) + LAMBDA_LOWER_BOUND).view(H, -1))
    Hs = torch.zeros(2, H, D // H, D // H, dtype=torch.float64)
    Gs = torch.zeros_like(Hs)
    out = []
    for t in range(T):
        g, b = gamma[:, t, :, None, None], beta[:, t, :, None, None]
        kt = k[:, :, t, :, None]
        Hs = g * Hs + b * kt @ kt.transpose(-1, -2)
        Gs = g * Gs + b * kt @ v[:, :, t, None, :]
        out.append((torch.linalg.solve(Hs + lam, q[:, :, t])[..., None, :] @ Gs)[..., 0, :])
    ref = m.out_proj(merge_heads(m.o_norm(torch.stack(out, dim=2))))
    # CG stops at a residual of √ε·‖q‖ (see trevo.ops.mesanet): agreement to ~1e-8, not to rounding
    torch.testing.assert_close(m(x), ref, rtol=1e-6, atol=1e-7)
