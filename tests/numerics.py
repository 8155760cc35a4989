"""Tolerances for comparing two floating-point computations of the same quantity, derived from
the dtype and the magnitudes compared, never a constant that happens to pass on one CPU.

Two paths that compute the same sum in a different order (another attention kernel, vmap
instead of a loop, another CPU's SIMD width or thread split) differ by rounding alone. Each
operation errs by at most eps/2 relatively; a sum of n terms whose sizes are bounded by M,
accumulated in two different orders, differs by about eps·sqrt(n)·M for typical rounding
(and at most n·eps·M; Higham, *Accuracy and Stability of Numerical Algorithms*, ch. 3-4). We
allow ``safety`` times the typical bound: far below any real bug (which moves results by
whole percents), far above the rounding any machine produces.
"""

from __future__ import annotations

import math

import torch


def reordering_atol(dtype: torch.dtype, magnitude: float, terms: int, safety: float = 8.0) -> float:
    """Absolute difference allowed between two evaluations, in ``dtype``, of a quantity built
    from ``terms`` accumulated products, each at most ``magnitude`` in size."""
    return safety * torch.finfo(dtype).eps * math.sqrt(max(1, terms)) * magnitude
