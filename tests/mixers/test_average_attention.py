"""Average attention: the cumulative average, FFN and gates of eq. 2-4 by a loop; a constant decoding state."""

from __future__ import annotations

import torch

from trevo.components.base import state_nbytes
from trevo.registry import build


def test_equals_the_equations():
    torch.manual_seed(0)
    m = build("mixer", "average_attention", {}, d_model=4, causal=True).double()
    y = torch.randn(2, 7, 4, dtype=torch.float64)
    want = torch.zeros_like(y)
    for j in range(7):
        g = m.ffn(y[:, : j + 1].mean(1))
        gates = torch.sigmoid(m.gate(torch.cat([y[:, j], g], -1)))
        want[:, j] = gates[:, :4] * y[:, j] + gates[:, 4:] * g
    torch.testing.assert_close(m(y), want)


def test_decoding_state_is_constant():
    m = build("mixer", "average_attention", {}, d_model=4, causal=True)
    _, s1 = m.prefill(torch.randn(1, 3, 4))
    _, s2 = m.prefill(torch.randn(1, 300, 4))
    assert state_nbytes(s1) == state_nbytes(s2)
