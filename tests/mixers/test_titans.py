"""Titans' neural memory: the layer is gradient descent with momentum and weight decay on ½‖M(k_t) − v_t‖²
(S_t = μ_t S_{t−1} − θ_t ∇ℓ, M_t = (1 − α_t) M_{t−1} + S_t), online for mini-batches of one token,
mini-batch for larger ones, in both forms; linear and deep (MLP) memories."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.ops.test_ttt import autograd_loop
from trevo.components.mixers.titans import NeuralMemory


@pytest.mark.parametrize("memory", ["linear", "mlp"])
@pytest.mark.parametrize("mini_batch", [1, 4])
def test_titans_memory_is_gradient_descent_with_momentum_and_decay(memory, mini_batch):
    torch.manual_seed(0)
    d, H, T = 8, 2, 10
    m = NeuralMemory(d, n_heads=H, memory=memory, mini_batch_size=mini_batch).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    qkv, _ = m.conv(m.qkv(x))
    q, k, v = (F.silu(t).unflatten(-1, (H, -1)).transpose(1, 2) for t in qkv.chunk(3, dim=-1))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    theta, alpha, mu = torch.sigmoid(m.gates(x)).transpose(1, 2).chunk(3, dim=1)
    P = {n: p.expand(2, *p.shape) for n, p in m.initial.items()}
    y = autograd_loop(q, k, v, theta, P, memory, "l2", None, None, mini_batch, online=mini_batch == 1,
                      retain=1 - alpha, momentum=mu)
    expected = m.out_proj(m.norm(y.transpose(1, 2).flatten(2)) * F.silu(m.g_proj(x)))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
