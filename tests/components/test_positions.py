"""Position encodings against their formulas: RoPE scores depend on the offset only, ALiBi's slopes and
bias, the sinusoidal table."""

from __future__ import annotations

import math

import pytest
import torch

from trevo.components.positions import alibi_slopes
from trevo.errors import TrevoError
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


def test_xpos_scores_are_rope_scores_weighted_per_pair_by_distance():
    xpos, rope = create("position", "xpos", d_model=8, scale_base=16.0), create("position", "rope", d_model=8)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    zeta = [(2 * i / 8 + 0.4) / 1.4 for i in range(4)]
    for m, n in ((5, 2), (30, 1), (7, 7)):
        rq, rk = rope.rotate(q, m)[0, 0, 0], rope.rotate(k, n)[0, 0, 0]
        # pair i holds channels i and i + 4; its share of the RoPE score is scaled by ζ_i^((m − n)/γ)
        expected = sum(zeta[i] ** ((m - n) / 16) * float(rq[i] * rk[i] + rq[i + 4] * rk[i + 4]) for i in range(4))
        got = float((xpos.rotate(q, m) * xpos.rotate(k, n, key=True)).sum())
        assert got == pytest.approx(expected, rel=1e-10)
        assert got == pytest.approx(float((xpos.rotate(q, m + 9) * xpos.rotate(k, n + 9, key=True)).sum()), rel=1e-10)


def test_randomized_positions_are_sorted_draws_in_training_and_consecutive_in_evaluation():
    randomized = create("position", "randomized_sinusoidal", d_model=6, max_positions=50)
    plain = create("position", "sinusoidal", d_model=6)
    positions = torch.arange(10)
    torch.manual_seed(0)
    drawn = [randomized(positions) for _ in range(3)]
    table = plain(torch.arange(50))
    for pe in drawn:
        # every row is the sinusoid of some position in [0, 50), in increasing order, all distinct
        index = [int((table - row).abs().sum(-1).argmin()) for row in pe]
        assert index == sorted(set(index)) and len(index) == 10
        torch.testing.assert_close(pe, table[index])
    assert not torch.equal(drawn[0], drawn[1])
    randomized.eval()
    torch.testing.assert_close(randomized(positions), plain(positions))
    randomized.train()
    with pytest.raises(TrevoError, match="max_positions"):
        randomized(torch.arange(51))


def test_permutation_powers_compose_the_permutation():
    from trevo.components.positions import permutation_powers

    perm = torch.stack([torch.randperm(7), torch.randperm(7)])
    powers = permutation_powers(perm, 5, 4)
    naive = torch.arange(7).expand(2, 7)
    for _ in range(5):
        naive = naive.gather(-1, perm)
    for p in range(4):  # π^(5+p): index i ↦ π applied 5+p times
        assert torch.equal(powers[:, p], naive)
        naive = naive.gather(-1, perm)


def test_permuteformer_feature_scores_depend_on_the_offset_only():
    position = create("position", "permuteformer", d_model=8)
    position.attach(n_heads=2, n_features=6)
    qf, kf = torch.rand(1, 2, 1, 6, dtype=torch.float64), torch.rand(1, 2, 1, 6, dtype=torch.float64)

    def score(m: int, n: int) -> torch.Tensor:
        return (position.permute(qf, m) * position.permute(kf, n)).sum(-1)

    for m, n in ((3, 1), (9, 2), (4, 4)):
        torch.testing.assert_close(score(m + 13, n + 13), score(m, n))
    assert not torch.allclose(score(3, 1), score(3, 2))
    torch.testing.assert_close(score(0, 0), (qf * kf).sum(-1))  # π^0 is the identity
