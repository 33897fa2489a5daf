"""ABC's cumulative-softmax slot control: carried across a split, the log-normaliser is the logsumexp."""

from __future__ import annotations

import torch

from trevo.ops.gsa import cumulative_softmax_gate


def test_cumulative_softmax_gate_carries_across_a_split():
    torch.manual_seed(2)
    phi = torch.randn(1, 2, 9, 3, dtype=torch.float64) * 4
    empty = torch.full((1, 2, 3), -torch.inf, dtype=torch.float64)
    w, g, z = cumulative_softmax_gate(phi, empty)
    w1, g1, z1 = cumulative_softmax_gate(phi[:, :, :4], empty)
    w2, g2, z2 = cumulative_softmax_gate(phi[:, :, 4:], z1)
    torch.testing.assert_close(torch.cat([w1, w2], 2), w)
    torch.testing.assert_close(torch.cat([g1, g2], 2), g)
    torch.testing.assert_close(z2, torch.logsumexp(phi, dim=2))
    assert (g[:, :, 0] == 0).all() and (g <= 0).all()
