"""Means, 95% confidence intervals and the significance of a difference, for a handful of seeds.

Intervals use Student's t (two-sided 95%); a difference from the baseline is called significant when
Welch's 95% interval of the difference of means excludes zero (Welch–Satterthwaite degrees of freedom).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Two-sided 95% critical values of Student's t for 1..30 degrees of freedom (standard tables).
T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
       2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
       2.045, 2.042]


def t95(df: float) -> float:
    if df < 1:
        return math.inf
    return T95[min(int(df), len(T95)) - 1] if df <= len(T95) else 1.960


@dataclass(frozen=True)
class Estimate:
    mean: float
    half_width: float  # of the 95% interval; inf for one sample
    n: int

    def __str__(self) -> str:
        if self.n < 2:
            return f"{self.mean:.4f}"
        return f"{self.mean:.4f} ± {self.half_width:.4f}"


def estimate(values: list[float]) -> Estimate:
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return Estimate(mean, math.inf, n)
    return Estimate(mean, t95(n - 1) * statistics.stdev(values) / math.sqrt(n), n)


def significantly_different(a: list[float], b: list[float]) -> bool | None:
    """Whether Welch's 95% interval of mean(a) - mean(b) excludes 0; None with fewer than 2 each."""
    if len(a) < 2 or len(b) < 2:
        return None
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    diff = statistics.fmean(a) - statistics.fmean(b)
    if va + vb == 0:
        return diff != 0
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    return abs(diff) > t95(df) * math.sqrt(va + vb)


def pareto_front(points: list[tuple[float, float]], higher_is_better: bool) -> list[int]:
    """Indices of the points (cost, quality) that no other point beats on both: cheaper-or-equal cost
    and better-or-equal quality, one of them strictly."""
    def better(q1: float, q2: float) -> bool:
        return q1 > q2 if higher_is_better else q1 < q2

    front = []
    for i, (c, q) in enumerate(points):
        dominated = any((c2 <= c and (better(q2, q) or q2 == q) and (c2 < c or better(q2, q)))
                        for j, (c2, q2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def _incomplete_beta(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b), by its continued fraction (Lentz's method, as
    in Numerical Recipes §6.4); the front factor from log-gamma."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    if x > (a + 1) / (a + b + 2):  # the fraction converges fast below the mean; use the symmetry above it
        return 1.0 - _incomplete_beta(b, a, 1.0 - x)
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)) / a
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    f = d
    for m in range(1, 300):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            f *= c * d
        if abs(c * d - 1.0) < 1e-15:
            break
    return front * f


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with ``df`` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2)."""
    if math.isinf(t):
        return 0.0
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def paired_t_test(a: list[float], b: list[float]) -> tuple[float, float | None]:
    """The mean of the paired differences a[i] - b[i] (pairs: the same seed) and the two-sided p-value of
    the paired t-test (None with fewer than 2 pairs; 0 or 1 where every difference is the same)."""
    if len(a) != len(b):
        raise ValueError(f"paired samples need the same length, got {len(a)} and {len(b)}")
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2:
        return (diffs[0] if diffs else math.nan), None
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs)
    if sd == 0:
        return mean, 1.0 if mean == 0 else 0.0
    return mean, t_two_sided_p(mean / (sd / math.sqrt(len(diffs))), len(diffs) - 1)
