"""The paired t-test: p-values against SciPy's Student t (an independent implementation) and hand cases."""

from __future__ import annotations

import math
import random

import pytest

from trevo.arena.stats import paired_t_test, t_two_sided_p


def test_t_p_values_match_the_table():
    # Two-sided 5% critical values from the standard table: p(t95) = 0.05.
    for df, t in [(1, 12.706), (2, 4.303), (4, 2.776), (10, 2.228), (30, 2.042)]:
        assert t_two_sided_p(t, df) == pytest.approx(0.05, abs=2e-4)
    assert t_two_sided_p(0.0, 3) == pytest.approx(1.0)


def test_paired_t_test_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(2, 8)
        a = [rng.gauss(0, 1) for _ in range(n)]
        b = [x + rng.gauss(0.5, 1) for x in a]
        mean, p = paired_t_test(a, b)
        ref = stats.ttest_rel(a, b)
        assert mean == pytest.approx(sum(x - y for x, y in zip(a, b, strict=True)) / n)
        assert p == pytest.approx(ref.pvalue, rel=1e-8, abs=1e-12)


def test_degenerate_pairs():
    assert paired_t_test([1.0], [2.0]) == (-1.0, None)
    assert paired_t_test([1.0, 2.0], [1.0, 2.0]) == (0.0, 1.0)
    assert paired_t_test([2.0, 3.0], [1.0, 2.0]) == (1.0, 0.0)
    assert math.isnan(paired_t_test([], [])[0])
