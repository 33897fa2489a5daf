"""Rotary phases (trevo.components.rotary): scores ⟨R_m q, R_n k⟩ depend on m − n only, rotations keep
the norm, the pairing is the half-split one (x_i, x_{i+D/2}) at angle n·base^(−2i/D)."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.rotary import apply_rotary, rotate_by
from trevo.errors import IncompatibleError


def test_scores_depend_only_on_the_relative_position():
    torch.manual_seed(1)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    scores = [(apply_rotary(q, torch.tensor(a + 5)) * apply_rotary(k, torch.tensor(a))).sum().item()
              for a in (0, 3, 17)]
    assert max(scores) - min(scores) < 1e-12
    other = (apply_rotary(q, 6) * apply_rotary(k, 0)).sum().item()
    assert abs(other - scores[0]) > 1e-6  # another offset, another score
    torch.testing.assert_close(apply_rotary(q, 7).norm(), q.norm())


def test_half_split_pairs_rotate_by_position_times_frequency():
    d, base = 6, 100.0
    x = torch.randn(1, 4, d, dtype=torch.float64)
    y = apply_rotary(x, 1, base)  # positions 1 … 4
    for t in range(4):
        for i in range(d // 2):
            angle = (1 + t) * base ** (-2 * i / d)
            a, b = x[0, t, i], x[0, t, i + d // 2]
            assert float(y[0, t, i]) == pytest.approx(float(a) * math.cos(angle) - float(b) * math.sin(angle))
            assert float(y[0, t, i + d // 2]) == pytest.approx(float(b) * math.cos(angle) + float(a) * math.sin(angle))


def test_an_odd_head_dimension_is_refused():
    with pytest.raises(IncompatibleError, match="even head dimension, got 5"):
        apply_rotary(torch.randn(1, 2, 5))


def test_rotate_by_given_angles_is_rope_when_the_angles_are_positions_times_frequencies():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 8, dtype=torch.float64)
    inv_freq = 10000.0 ** (-torch.arange(0, 4, dtype=torch.float64) * 2 / 8)
    angles = torch.arange(3, 10, dtype=torch.float64)[:, None] * inv_freq
    torch.testing.assert_close(rotate_by(x, angles), apply_rotary(x, offset=3))
    partial = rotate_by(x, angles[:, :2])  # only the first 4 channels turn, in pairs (0, 2) and (1, 3)
    torch.testing.assert_close(partial[..., 4:], x[..., 4:])
    torch.testing.assert_close(partial[..., :4].norm(dim=-1), x[..., :4].norm(dim=-1))
    with pytest.raises(IncompatibleError, match="rotary angles"):
        rotate_by(x, torch.zeros(7, 5, dtype=torch.float64))
