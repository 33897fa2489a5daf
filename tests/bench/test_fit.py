"""Benchmark fits on synthetic data: the log-log slope and its range, the crossover of two costs."""

from __future__ import annotations

import math

import pytest

from trevo.bench.fit import crossover, loglog_slope


def test_loglog_slope_recovers_the_exponent_and_reports_its_range():
    lengths = [256, 512, 1024, 2048, 4096]
    quad = [3e-6 * t ** 2 for t in lengths]
    fit = loglog_slope(lengths, quad)
    assert fit.slope == pytest.approx(2.0, abs=1e-12) and (fit.lo, fit.hi, fit.n) == (256, 4096, 5)
    # a fixed cost dominates short lengths: restricting the range recovers the linear exponent
    affine = [5.0 + 0.01 * t for t in lengths]
    assert loglog_slope(lengths, affine).slope < 0.8
    long = loglog_slope([*lengths, 2 ** 20, 2 ** 21], [*affine, 5.0 + 0.01 * 2 ** 20, 5.0 + 0.01 * 2 ** 21],
                        lo=2 ** 20)
    assert long.slope == pytest.approx(1.0, abs=1e-3) and long.range_text() == f"{2 ** 20}-{2 ** 21} (2 pts)"
    # failed points (None, nan) are left out; one usable point is no fit
    assert loglog_slope([1, 2, 4], [1.0, None, math.nan]).n == 0
    assert math.isnan(loglog_slope([1, 2, 4], [1.0, None, math.nan]).slope)


def test_crossover_of_a_linear_and_a_quadratic_cost():
    lengths = [256, 512, 1024, 2048, 4096]
    linear = [t / 1000 for t in lengths]  # a = T/1000, b = T²/10⁶: equal at T = 1000
    quadratic = [t * t / 1e6 for t in lengths]
    assert crossover(lengths, linear, quadratic) == pytest.approx(1000.0, rel=1e-9)
    assert crossover(lengths, [t / 1e6 for t in lengths], quadratic) == 256  # a wins everywhere
    assert crossover(lengths, quadratic, linear) is None  # a never wins at the long end
