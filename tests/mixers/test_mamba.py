"""The Mamba block: step-by-step decoding equals the full forward with the conv state holding the last
inputs; its initialisation (S4D-Real A, Δ in range, D = 1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.components.mixers.mamba import Mamba


def test_step_by_step_decode_equals_the_full_forward():
    torch.manual_seed(0)
    mixer = Mamba(8, causal=True, d_state=4, chunk_size=4).double()
    x = torch.randn(2, 11, 8, dtype=torch.float64)
    full = mixer(x)
    state, ys = mixer.init_state(2, "cpu", torch.float64), []
    for t in range(11):
        y, state = mixer.step(x[:, t], state)
        ys.append(y)
    torch.testing.assert_close(torch.stack(ys, 1), full, rtol=1e-10, atol=1e-12)
    # The conv state is the last conv_size − 1 (pre-convolution) inputs, [B, conv_size − 1, C].
    inner = mixer.in_proj(x)[..., :mixer.d_inner]
    torch.testing.assert_close(state["conv"], inner[:, -3:])


def test_mamba_initialisation():
    mixer = Mamba(16, causal=True, d_state=6, dt_min=0.002, dt_max=0.05)
    A = -torch.exp(mixer.A_log.detach())
    torch.testing.assert_close(A, -torch.arange(1, 7, dtype=torch.float32).repeat(32, 1))  # S4D-Real
    dt = F.softplus(mixer.dt_bias.detach())
    assert dt.min() >= 0.002 * (1 - 1e-4) and dt.max() <= 0.05 * (1 + 1e-4)
    assert torch.equal(mixer.D.detach(), torch.ones(32))
