"""Rates with 95 % confidence intervals (Wilson score interval), the unit every metric uses."""

from __future__ import annotations

import math
from typing import Iterable

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (Wilson 1927); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(outcomes: Iterable[bool]) -> dict:
    """{"rate", "k", "n", "ci95"} for a list of booleans; rate is None when n = 0."""
    values = list(outcomes)
    k, n = sum(bool(v) for v in values), len(values)
    lo, hi = wilson(k, n)
    return {"rate": k / n if n else None, "k": k, "n": n, "ci95": [lo, hi]}
