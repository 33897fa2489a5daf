"""Comba's layer against a float64 loop of its SPLR recurrence S_t = (α_t I − β_t k_t p_tᵀ) S_{t−1} + β_t k_t v_tᵀ
with output feedback o_t = S_tᵀ (q_t − d p_t), built from the layer's own projections."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from trevo.components.multihead import merge_heads
from trevo.registry import build

D, H, T = 16, 2, 11


@pytest.mark.parametrize("form", ["chunk", "quadratic", "recurrent"])
def test_layer_equals_the_splr_recurrence_with_output_feedback(form):
    torch.manual_seed(0)
    m = build("mixer", "comba", {"n_heads": H, "chunk_size": 4, "form": form}, d_model=D, causal=True).double()
    with torch.no_grad():  # away from the initial values, so that each feedback term shows
        m.feedback.copy_(torch.tensor([0.3, -1.2]))
        m.correction.copy_(torch.tensor([0.5, 2.0]))
    x = torch.randn(2, T, D, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    q, k, v = m.qkv(x, m.init_state(2, x.device, x.dtype), {})
    beta = torch.sigmoid(m.b_proj(x)).transpose(1, 2)
    alpha = (-m.decay.A_log.exp() * F.softplus(m.decay.proj(x) + m.decay.dt_bias)).exp().transpose(1, 2)
    p = torch.sigmoid(m.feedback)[:, None, None] * k
    S = torch.zeros(2, H, D // H, D // H, dtype=torch.float64)
    out = []
    for t in range(T):
        kt, pt = k[:, :, t, :, None], p[:, :, t, :, None]
        bt, at = beta[:, :, t, None, None], alpha[:, :, t, None, None]
        S = at * S - bt * kt @ (pt.transpose(-1, -2) @ S) + bt * kt @ v[:, :, t, None, :]
        read = q[:, :, t] - m.correction[:, None] * p[:, :, t]
        out.append((read[..., None, :] @ S)[..., 0, :] * (D // H) ** -0.5)
    ref = m.out_proj(merge_heads(m.o_norm(torch.stack(out, dim=2))) * torch.sigmoid(m.g_proj(x)))
    torch.testing.assert_close(m(x), ref, rtol=1e-9, atol=1e-10)
