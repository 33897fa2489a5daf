"""TTT-Linear and TTT-MLP: with mini-batches of one token the layer is online gradient descent on its
reconstruction loss — z_t = θ_Q x_t + LN(f_res(θ_Q x_t; W_t)) with W_t one autograd step after W_{t−1} —
and with larger mini-batches it is mini-batch gradient descent (both forms)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.ops.test_ttt import autograd_loop
from trevo.components.mixers.ttt import TTTMLP, TTTLinear


@pytest.mark.parametrize("cls,model", [(TTTLinear, "linear"), (TTTMLP, "mlp")])
@pytest.mark.parametrize("mini_batch", [1, 4])
def test_ttt_layer_is_gradient_descent_on_its_reconstruction_loss(cls, model, mini_batch):
    torch.manual_seed(0)
    d, H, T = 8, 2, 10
    m = cls(d, n_heads=H, mini_batch_size=mini_batch).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    q, k, v = (t.unflatten(-1, (H, -1)).transpose(1, 2) for t in m.qkv(x).chunk(3, dim=-1))
    lr = m.base_lr * torch.sigmoid(m.lr_proj(x)).transpose(1, 2) / (d // H)
    P = {n: p.expand(2, *p.shape) for n, p in m.initial.items()}
    z = autograd_loop(q, k, v, lr, P, model, "reconstruction", m.ln_weight, m.ln_bias, mini_batch,
                      online=mini_batch == 1)
    y = q + F.layer_norm(z, (d // H,), eps=1e-6) * m.ln_weight[:, None] + m.ln_bias[:, None]
    expected = m.out_proj(m.post_norm(y.transpose(1, 2).flatten(2)))
    for form in m.forms:
        m.form = form
        torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
