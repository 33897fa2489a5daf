"""The recurrent delta net: the delta rule writes the value it is given (with β = 1 the fast weights
return v for k), and the layer equals a float64 loop in which the slow net reads tanh(y_{t−1})."""

from __future__ import annotations

import torch

from trevo.ops.rfwp import delta_step
from trevo.testing import build_mixer


def test_the_delta_rule_moves_the_retrieval_to_the_written_value():
    torch.manual_seed(0)
    S = torch.randn(2, 3, 4, 5, dtype=torch.float64)
    k = torch.softmax(torch.randn(2, 3, 4, dtype=torch.float64), -1)
    k = k / k.norm(dim=-1, keepdim=True)  # unit key: the delta rule's exact overwrite
    v = torch.randn(2, 3, 5, dtype=torch.float64)
    for beta in (0.0, 0.3, 1.0):
        before = torch.einsum("bhkv,bhk->bhv", S, k)
        _, S2 = delta_step(S, k, k, v, torch.full((2, 3), beta, dtype=torch.float64))
        after = torch.einsum("bhkv,bhk->bhv", S2, k)
        torch.testing.assert_close(after, (1 - beta) * before + beta * v, rtol=1e-12, atol=1e-12)


def test_rfwp_equals_a_loop_that_feeds_back_the_previous_output():
    mixer = build_mixer("rfwp", True)
    H, d = mixer.n_heads, mixer.d_model
    D = d // H
    x = torch.randn(2, 8, d, dtype=torch.float64)
    S = torch.zeros(2, H, D, D, dtype=torch.float64)
    y = torch.zeros(2, d, dtype=torch.float64)
    outs = []
    for t in range(8):
        p = mixer.in_proj.weight @ x[:, t, :, None] + mixer.rec_proj.weight @ torch.tanh(y)[..., None]
        p = p[..., 0]
        for h in range(H):
            q = torch.softmax(p[:, h * D:(h + 1) * D], -1)
            k = torch.softmax(p[:, d + h * D:d + (h + 1) * D], -1)
            v = p[:, 2 * d + h * D:2 * d + (h + 1) * D]
            beta = torch.sigmoid(p[:, 3 * d + h])
            W = S[:, h].transpose(-1, -2)  # W_t maps keys to values: W = Sᵀ
            W = W + beta[:, None, None] * (v - (W @ k[..., None])[..., 0])[..., None] * k[:, None, :]
            S[:, h] = W.transpose(-1, -2)
            y = y.clone()
            y[:, h * D:(h + 1) * D] = (W @ q[..., None])[..., 0]
        outs.append(mixer.out_proj(y))
    torch.testing.assert_close(mixer(x), torch.stack(outs, 1).detach(), rtol=1e-10, atol=1e-12)
