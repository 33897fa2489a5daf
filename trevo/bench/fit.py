"""Scaling exponents and crossovers from measured points.

The slope of log(y) against log(T) is the exponent p of y ∝ T^p: ≈1 for a linear-time mixer, ≈2
for a quadratic one, ≈0 for a constant (an RNN's state). A fit always comes with the range of T it
used, because exponents measured at short lengths are dominated by fixed costs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Slope:
    slope: float
    lo: int  # the shortest length in the fit
    hi: int  # the longest
    n: int  # how many points

    def range_text(self) -> str:
        return f"{self.lo}-{self.hi} ({self.n} pts)" if self.n else ""


NO_FIT = Slope(math.nan, 0, 0, 0)


def _usable(x: float | None, y: float | None) -> bool:
    return (x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
            and x > 0 and y > 0)


def loglog_slope(lengths: Sequence[float], values: Sequence[float | None],
                 lo: float | None = None, hi: float | None = None) -> Slope:
    """Least-squares slope of log(value) against log(length) over the points with lo ≤ length ≤ hi
    and a positive, finite value; ``NO_FIT`` (slope nan) with fewer than two distinct lengths."""
    pts = [(float(x), float(y)) for x, y in zip(lengths, values, strict=True) if _usable(x, y)
           and (lo is None or x >= lo) and (hi is None or x <= hi)]
    if len({x for x, _ in pts}) < 2:
        return NO_FIT
    lx = [math.log(x) for x, _ in pts]
    ly = [math.log(y) for _, y in pts]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    sxy = sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True))
    xs = [x for x, _ in pts]
    return Slope(sxy / sxx, int(min(xs)), int(max(xs)), len(pts))


def crossover(lengths: Sequence[int], a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    """The length above which ``a`` stays below ``b`` (e.g. chunked linear attention beating softmax
    attention), interpolated log-linearly between the two measured lengths that bracket it.

    Returns the shortest measured length when ``a`` wins everywhere, and None when ``a`` does not win
    at the longest length measured by both (or nothing is comparable)."""
    pts = sorted((x, ya, yb) for x, ya, yb in zip(lengths, a, b, strict=True)
                 if _usable(x, ya) and _usable(x, yb))
    if not pts or pts[-1][1] >= pts[-1][2]:
        return None
    i = len(pts) - 1
    while i > 0 and pts[i - 1][1] < pts[i - 1][2]:
        i -= 1
    if i == 0:
        return float(pts[0][0])
    (x0, a0, b0), (x1, a1, b1) = pts[i - 1], pts[i]
    # log(a/b) is ≥ 0 at x0 and < 0 at x1: find its zero on a log-length axis.
    r0, r1 = math.log(a0 / b0), math.log(a1 / b1)
    t = r0 / (r0 - r1)
    return math.exp(math.log(x0) + t * (math.log(x1) - math.log(x0)))
