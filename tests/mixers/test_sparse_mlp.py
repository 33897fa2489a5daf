"""sMLP equals its sums written out per pixel (its row, its column and itself), and a pixel sees only
its row and column."""

from __future__ import annotations

import pytest
import torch

from trevo.errors import IncompatibleError
from trevo.registry import build


def _smlp():
    torch.manual_seed(0)
    return build("mixer", "sparse_mlp", {}, d_model=4, causal=False, layout=(3, 5)).double()


def test_equals_the_sums_per_pixel():
    m = _smlp()
    x = torch.randn(2, 15, 4, dtype=torch.float64)
    grid = x.view(2, 3, 5, 4)
    y = m(x, layout=(3, 5)).view(2, 3, 5, 4)
    wh, bh, ww, bw = m.mix_h.weight, m.mix_h.bias, m.mix_w.weight, m.mix_w.bias
    for r in range(3):
        for c in range(5):
            along_h = sum(wh[r, k] * grid[:, k, c] for k in range(3)) + bh[r]
            along_w = sum(ww[c, k] * grid[:, r, k] for k in range(5)) + bw[c]
            torch.testing.assert_close(y[:, r, c], m.fuse(torch.cat([grid[:, r, c], along_h, along_w], -1)))


def test_a_pixel_sees_only_its_row_and_column():
    m = _smlp()
    x = torch.randn(1, 15, 4, dtype=torch.float64)
    changed = x.clone().view(1, 3, 5, 4)
    changed[0, 2, 4] += 1.0  # pixel (2, 4)
    diff = (m(changed.view(1, 15, 4), layout=(3, 5)) - m(x, layout=(3, 5))).abs().sum(-1).view(3, 5)
    seen = torch.zeros(3, 5, dtype=torch.bool)
    seen[2, :], seen[:, 4] = True, True
    assert (diff[seen] > 0).all() and (diff[~seen] == 0).all()


def test_clear_errors():
    with pytest.raises(IncompatibleError, match="2-D layout"):
        build("mixer", "sparse_mlp", {}, d_model=4, causal=False, layout=(15,))
    with pytest.raises(IncompatibleError, match="3×5 grid and got 5×3"):
        _smlp()(torch.randn(1, 15, 4, dtype=torch.float64), layout=(5, 3))
