"""PeriodicRedraw (trevo.components.redraw): redraws exactly at training passes interval, 2·interval …
(never on the first, never in evaluation, never with interval 0), counting passes in a saved buffer."""

from __future__ import annotations

import pytest
import torch

from trevo.components.base import TokenMixer
from trevo.components.redraw import PeriodicRedraw


class _Counted(PeriodicRedraw, TokenMixer):
    def __init__(self, interval: int) -> None:
        super().__init__(4, causal=False)
        self.init_redraw(interval)
        self.redrawn_at: list[int] = []

    def redraw(self) -> None:
        self.redrawn_at.append(int(self.calls))

    def bidirectional_forward(self, x, padding_mask, layout):
        return x


@pytest.mark.parametrize("interval, expected", [(2, [2, 4]), (1, [1, 2, 3, 4, 5]), (0, [])])
def test_redraws_every_interval_training_passes_only(interval, expected):
    m = _Counted(interval)
    x = torch.randn(1, 3, 4)
    for _ in range(6):
        m(x)
    m.eval()
    m(x)
    assert m.redrawn_at == expected
    assert "calls" in m.state_dict() and int(m.calls) == (6 if interval else 0)
