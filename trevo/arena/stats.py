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
