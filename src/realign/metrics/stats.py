"""Rates with 95 % confidence intervals (Wilson score interval), the unit every metric uses, and
their tolerant readers (metrics.json files of any age may lack a field)."""

from __future__ import annotations

import math
from typing import Any, Iterable

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


def pool(values: Iterable[Any]) -> dict | None:
    """Several RATE objects as one (Σk / Σn with its Wilson interval): the agreement on a group
    of slices taken together. None when there are none or one lacks its counts."""
    values = list(values)
    if not values or not all(isinstance(v, dict) and isinstance(v.get("k"), int) and isinstance(v.get("n"), int)
                             for v in values):
        return None
    k, n = sum(v["k"] for v in values), sum(v["n"] for v in values)
    return {"rate": k / n if n else None, "k": k, "n": n, "ci95": list(wilson(k, n))}


def difference(before: Any, after: Any) -> tuple[float, float, float] | None:
    """``after - before`` of two RATE objects with its 95 % interval, Newcombe's hybrid score
    interval (Newcombe 1998, method 10: from the two Wilson intervals; it keeps its coverage
    near 0 and 1, where a normal interval of the difference does not). None when a rate or its
    interval is missing."""
    a, b, ia, ib = rate_of(after), rate_of(before), ci_of(after), ci_of(before)
    if a is None or b is None or ia is None or ib is None:
        return None
    d = a - b
    return d, d - math.hypot(a - ia[0], ib[1] - b), d + math.hypot(ia[1] - a, b - ib[0])


def number(value: Any) -> float | None:
    """A finite int or float as a float; None for anything else (booleans included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def rate_of(value: Any) -> float | None:
    """The rate of a RATE object ({"rate", "k", "n", "ci95"}) or a bare number."""
    if isinstance(value, dict):
        return number(value.get("rate"))
    return number(value)


def ci_of(value: Any) -> tuple[float, float] | None:
    """The 95 % interval of a RATE object, if it has a finite one."""
    if isinstance(value, dict):
        ci = value.get("ci95")
        if isinstance(ci, (list, tuple)) and len(ci) == 2:
            lo, hi = number(ci[0]), number(ci[1])
            if lo is not None and hi is not None:
                return lo, hi
    return None
