"""The linear algebra of Stage 2 on vectors in a parameter space (one tensor per parameter):
inner products, norms, axpy, and the conjugate gradient that solves (H + γI) v = g_J once for
``hessian: cg`` (docs/method.md, "Stage 2 — alignment impact scores")."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import RealignError

Vector = list[torch.Tensor]


def dot(a: Vector, b: Vector) -> torch.Tensor:
    return sum((x.double() * y.double()).sum() for x, y in zip(a, b))


def norm(a: Vector) -> float:
    return math.sqrt(float(dot(a, a)))


def axpy(alpha: float, x: Vector, y: Vector) -> Vector:
    """alpha·x + y."""
    return [alpha * xi + yi for xi, yi in zip(x, y)]


def flatten(vec: Vector) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in vec])


@dataclass
class CGResult:
    x: Vector
    iterations: int
    relative_residual: float
    converged: bool


def conjugate_gradient(matvec: Callable[[Vector], Vector], b: Vector, iters: int, tol: float) -> CGResult:
    """Solve A x = b for symmetric positive-definite A given only x ↦ A x (Hestenes–Stiefel),
    starting from x = 0; stop when ‖b − A x‖ ≤ tol·‖b‖."""
    x = [torch.zeros_like(t) for t in b]
    r = [t.clone() for t in b]
    p = [t.clone() for t in b]
    b_norm = norm(b) or 1.0
    rr = float(dot(r, r))
    it = 0
    for it in range(1, iters + 1):
        ap = matvec(p)
        pap = float(dot(p, ap))
        if pap <= 0:
            raise RealignError(
                f"conjugate gradient: the damped Hessian is not positive definite (pᵀ(H+γI)p = {pap:.3g}); "
                "use hvp: gauss-newton or a larger damping"
            )
        alpha = rr / pap
        x = axpy(alpha, p, x)
        r = axpy(-alpha, ap, r)
        rr_new = float(dot(r, r))
        if math.sqrt(rr_new) <= tol * b_norm:
            rr = rr_new
            break
        p = axpy(rr_new / rr, p, r)
        rr = rr_new
    rel = math.sqrt(rr) / b_norm
    return CGResult(x, it, rel, rel <= tol)
