"""Griffin's recurrent block: W_out(GeLU(W_gate x) ⊙ RG-LRU(Conv1D(W_in x))) written out from its own
weights against the module, the block-diagonal gates, and Λ's initialisation (a^c in [0.9, 0.999])."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from trevo.ops.rg_lru import C, rg_lru_reference
from trevo.registry import create


def test_the_block_equals_its_formula_with_the_reference_recurrence():
    torch.manual_seed(0)
    m = create("mixer", "rg_lru", d_model=12, causal=True, n_heads=3, chunk_size=4).double()
    x = torch.randn(2, 9, 12, dtype=torch.float64)
    u = m.in_proj(x)
    k = m.conv.weight.shape[-1]
    conv = sum(F.pad(u, (0, 0, j, 0))[:, : u.shape[1]] * m.conv.weight[:, 0, k - 1 - j] for j in range(k)) + m.conv.bias
    blocks = conv.view(2, 9, 3, -1)  # the gates mix channels only inside each of the 3 heads
    gate_a = (torch.einsum("bthi,hij->bthj", blocks, m.gate_a.weight) + m.gate_a.bias).flatten(-2)
    gate_x = (torch.einsum("bthi,hij->bthj", blocks, m.gate_x.weight) + m.gate_x.bias).flatten(-2)
    h, _ = rg_lru_reference(conv, gate_a, gate_x, m.lam)
    expected = m.out_proj(F.gelu(m.gate_proj(x), approximate="tanh") * h)
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-12)


def test_lambda_is_initialised_so_that_a_to_the_c_lies_in_0_9_to_0_999():
    m = create("mixer", "rg_lru", d_model=64, causal=True)
    a_c = torch.sigmoid(m.lam.detach().double()) ** C
    assert a_c.min() >= 0.9 - 1e-6 and a_c.max() <= 0.999 + 1e-6 and a_c.std() > 0.02
    assert m.width == round(4 / 3 * 64 / 4) * 4  # D_RNN = 4/3 D, a multiple of the heads
