"""ShiftViT's shift: each of four channel groups moves one pixel (left, right, up, down) with zeros at the
border, checked pixel by pixel; the other channels stay."""

from __future__ import annotations

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.registry import create


def test_each_group_moves_one_pixel_with_zeros_at_the_border():
    m = create("mixer", "shift", d_model=24, causal=False)  # 24/12 = 2 channels per direction
    h, w = 3, 4
    x = torch.randn(1, h * w, 24)
    y = m(x, layout=(h, w)).view(h, w, 24)
    grid = x.view(h, w, 24)
    for r in range(h):
        for c in range(w):
            def at(rr: int, cc: int, chans: slice) -> torch.Tensor:
                inside = 0 <= rr < h and 0 <= cc < w
                return grid[rr, cc, chans] if inside else torch.zeros(2)
            torch.testing.assert_close(y[r, c, 0:2], at(r, c + 1, slice(0, 2)))  # moved left: from the right
            torch.testing.assert_close(y[r, c, 2:4], at(r, c - 1, slice(2, 4)))  # moved right
            torch.testing.assert_close(y[r, c, 4:6], at(r + 1, c, slice(4, 6)))  # moved up: from below
            torch.testing.assert_close(y[r, c, 6:8], at(r - 1, c, slice(6, 8)))  # moved down
            torch.testing.assert_close(y[r, c, 8:], grid[r, c, 8:])


def test_clear_errors():
    with pytest.raises(IncompatibleError, match="shift_ratio"):
        create("mixer", "shift", d_model=8, causal=False)  # 8/12 rounds to no channel
