"""The spot-check's error-rate estimate: a binomial proportion with a Wilson score interval.

Wilson rather than the normal ("Wald") interval because spot-checks are small and the error
rate is near 0 (R1 claims under 2%): Wald collapses to [0, 0] at 0 errors, Wilson does not and
stays inside [0, 1]. (Clopper–Pearson would be more conservative still; it needs the beta
quantile, i.e. scipy, for a small difference at these sizes.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class Proportion:
    k: int
    n: int
    estimate: float | None
    low: float | None
    high: float | None
    method: str = "Wilson score interval, 95%"


def wilson_interval(k: int, n: int, z: float = Z_95) -> Proportion:
    """k errors in n judged rows: the estimate k/n and its Wilson score interval."""
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n (got k={k}, n={n})")
    if n == 0:
        return Proportion(k, n, None, None, None)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At k = 0 (k = n) the bound is exactly 0 (1); say so rather than leave rounding noise.
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return Proportion(k, n, p, low, high)
