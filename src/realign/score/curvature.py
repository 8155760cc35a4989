"""Curvature for ``hessian: cg`` (docs/method.md, "Stage 2 — alignment impact scores"):
Hessian-vector products of the gold objective, by double backward or in Gauss-Newton form, as
the matrix-vector products :func:`.linalg.conjugate_gradient` needs."""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from ..objective import Term
from .directional import DirectionalDerivatives
from .linalg import Vector


class Curvature(DirectionalDerivatives):
    """:class:`~.directional.DirectionalDerivatives` with u ↦ H u for the gold objective."""

    def hvp_exact(self, samples: Sequence[Term]) -> Callable[[Vector], Vector]:
        """u ↦ ∇²(mean ℓ over samples) u by double backward (needs eager attention on CPU)."""

        def matvec(u: Vector) -> Vector:
            out = [torch.zeros_like(p) for p in self.params]
            for idx in self.batches(samples):
                batch = [samples[i] for i in idx]
                lp1, lp2, n1, n2 = self.logps(batch)
                loss = self.losses(batch, lp1, lp2, n1, n2, lp1.detach(), lp2.detach()).sum() / len(samples)
                grads = torch.autograd.grad(loss, self.params, create_graph=True, allow_unused=True)
                pairs = [(g, ui) for g, ui in zip(grads, u) if g is not None]
                inner = sum((g * ui).sum() for g, ui in pairs)
                hv = torch.autograd.grad(inner, self.params, allow_unused=True)
                for o, h in zip(out, hv):
                    if h is not None:
                        o.add_(h.detach())
            return out

        return matvec

    def hvp_gauss_newton(self, samples: Sequence[Term], method: str, epsilon: float) -> Callable[[Vector], Vector]:
        """u ↦ G u with G = mean_i Σ_s ℓ''(0) ∇s ∇sᵀ, the Gauss-Newton matrix with respect to each
        loss's scalar argument s (Δ, or r per NPO term; :attr:`realign.objective.losses.LossKind.gauss_newton`):
        positive semi-definite by construction. One directional-derivative pass and one backward
        pass per product."""

        def matvec(u: Vector) -> Vector:
            out = [torch.zeros_like(p) for p in self.params]
            for idx in self.batches(samples):
                batch = [samples[i] for i in idx]
                d1, d2, n1, n2 = self.logp_directional(batch, u, method, epsilon)
                lp1, lp2, _, _ = self.logps(batch)
                objective = self._by_kind(
                    batch, lambda kind: kind.gauss_newton(d1, d2, lp1, lp2, n1, n2, self.beta, self.loss_name)
                ).sum() / len(samples)
                for o, g in zip(out, torch.autograd.grad(objective, self.params, allow_unused=True)):
                    if g is not None:
                        o.add_(g)
            return out

        return matvec
