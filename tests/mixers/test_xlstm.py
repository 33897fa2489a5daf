"""The sLSTM mixer: its output equals the paper's unstabilised loop built from its own weights, the
recurrent block-diagonal R feeding h_{t−1} into every gate (the cells themselves: tests/ops/test_xlstm.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tests.ops.test_xlstm import slstm_unstabilised
from trevo.components.mixers.xlstm import SLSTM


def test_slstm_mixer_feeds_its_hidden_state_back_into_every_gate():
    """The mixer's output equals the unstabilised loop built from its own weights (recurrent R included)."""
    torch.manual_seed(3)
    d, T = 8, 12
    m = SLSTM(d, n_heads=2).double()
    x = torch.randn(2, T, d, dtype=torch.float64)
    x_c, _ = m.conv(x)
    z_pre, o_pre = m.w_zo(x).chunk(2, dim=-1)
    i_pre, f_pre = m.w_if(F.silu(x_c)).chunk(2, dim=-1)
    wx = torch.stack([z_pre, i_pre, f_pre, o_pre], dim=2).unflatten(-1, (2, 4))
    h = slstm_unstabilised(wx, m.R)
    expected = m.out_proj((F.layer_norm(h, (4,)) * m.norm_weight).flatten(2))
    torch.testing.assert_close(m(x), expected, rtol=1e-10, atol=1e-10)
