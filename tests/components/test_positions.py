"""Position encodings against their formulas: RoPE scores depend on the offset only, ALiBi's slopes and
bias, the sinusoidal table."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.positions import alibi_slopes
from trevo.registry import create


def test_rope_scores_depend_only_on_the_offset():
    rope = create("position", "rope", d_model=8)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    def score(m, n):
        return float((rope.rotate(q, m) * rope.rotate(k, n)).sum())
    assert score(3, 1) == pytest.approx(score(10, 8), abs=1e-12)
    assert score(0, 0) == pytest.approx(float((q * k).sum()), abs=1e-12)
    assert score(5, 1) != pytest.approx(score(5, 2), abs=1e-6)
    # A rotation keeps the norm.
    torch.testing.assert_close(rope.rotate(q, 7).norm(), q.norm())


def test_alibi_slopes_and_bias():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    # 6 heads: the 4-head slopes, then every other slope of 8 heads (Press et al.'s rule).
    expected = [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3]
    torch.testing.assert_close(alibi_slopes(6), torch.tensor(expected))
    bias = create("position", "alibi", d_model=8).bias(2, 3, 5)
    assert bias.shape == (2, 3, 5)
    # Query 0 sits at position 2 of 5: distance to key 0 is 2.
    assert float(bias[0, 0, 0]) == pytest.approx(-2 * 2 ** -4)


def test_sinusoidal_matches_the_formula():
    pe = create("position", "sinusoidal", d_model=6)(torch.arange(4))
    p, i = 3, 1
    assert float(pe[p, 2 * i]) == pytest.approx(math.sin(p / 10000 ** (2 * i / 6)), rel=1e-6)
    assert float(pe[p, 2 * i + 1]) == pytest.approx(math.cos(p / 10000 ** (2 * i / 6)), rel=1e-6)
