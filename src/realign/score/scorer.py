"""The model side of Stage 2 (Alg. 1 lines 9-31;
docs/method.md, "Stage 2 — alignment impact scores"): the parameter space scored, and
:class:`Scorer`, whose parts are one module each:

* :mod:`.term_losses` — ℓ_i of a batch of terms, its linearisation at θ_ref, and g_J;
* :mod:`.directional` — the fast path: ⟨v, ∇ℓ_i⟩ for a whole batch from directional
  derivatives of its log-probs, never a backward pass per sample;
* :mod:`.curvature` — Hessian-vector products for the conjugate gradient (:mod:`.linalg`);
* here — the per-sample paths. The exact path (``method="exact"``) is the reference code's
  structure: per record, policy and reference forward passes, the loss, one backward pass, a
  dot product with v.

The ``cosine`` variant (docs/method.md, "Where we differ") also needs ‖∇ℓ_i‖, which no directional derivative
gives: its batched path takes every sample's gradient at once with ``torch.func.vmap`` over
``grad`` of the loss's linearisation at θ_ref (one batched backward pass, not one per sample),
and falls back to per-sample autograd, with a warning, for a model vmap cannot trace.
"""

from __future__ import annotations

import re
import sys
from typing import Sequence

import torch

from ..errors import RealignError
from ..objective import Term
from .curvature import Curvature
from .linalg import Vector, flatten


# --------------------------------------------------------------------------- parameter spaces


def _block_index(name: str) -> int | None:
    match = re.search(r"\.(?:layers|h|blocks|layer)\.(\d+)\.", name)
    return int(match.group(1)) if match else None


def select_parameters(model, patterns: Sequence[str] = (), last_k_blocks: int | None = None) -> dict[str, torch.nn.Parameter]:
    """Freeze every weight except those whose name matches a regex in ``patterns`` or that
    belong to the last ``last_k_blocks`` transformer blocks; return the selected ones."""
    names = [n for n, _ in model.named_parameters()]
    blocks = sorted({b for b in map(_block_index, names) if b is not None})
    keep_blocks = set(blocks[-last_k_blocks:]) if last_k_blocks else set()
    compiled = [re.compile(p) for p in patterns]
    chosen = {}
    for name, param in model.named_parameters():
        take = _block_index(name) in keep_blocks or any(c.search(name) for c in compiled)
        param.requires_grad_(take)
        if take:
            chosen[name] = param
    if not chosen:
        raise RealignError(
            f"no parameters selected (modules={list(patterns)}, last_k_blocks={last_k_blocks}); "
            f"parameter names look like {names[0]!r}"
        )
    return chosen


# --------------------------------------------------------------------------- the scorer


class Scorer(Curvature):
    """ℓ_i and its derivatives for batches of training terms in a parameter space (the
    arguments: :class:`~.term_losses.TermLosses`): the gradient g_J, the fast path's scores, the
    Hessian-vector products for CG and, here, the per-sample and exact paths. A term's weight is
    not applied: the score is that of its unweighted loss."""

    # -- per-sample gradients (the cosine variant)

    def per_sample_gradients(self, samples: Sequence[Term]) -> Vector:
        """∇ℓ_i of every sample of a batch, stacked per parameter ([batch, *shape]), in one
        batched pass: ``vmap(grad(·))`` through ``functional_call`` of the linearisation
        c1·log π(first|x) + c2·log π(second|x) (:meth:`coefficients`), whose gradient at θ_ref
        is ∇ℓ_i. No attention mask is passed: sequences are right-padded and attention is
        causal, so no real token sees padding, while mask-building code may branch on the
        mask's values (transformers' SDPA path does), which vmap cannot trace."""
        from torch.func import functional_call, grad, vmap

        batch, lengths = self._collate(samples)
        c1, c2 = self.coefficients(samples, lengths[0::2], lengths[1::2])
        width = batch["input_ids"].shape[-1]
        ids = batch["input_ids"].view(len(samples), 2, width)
        response = batch["response_mask"].view(len(samples), 2, width)

        def linearised(values, ids_i, response_i, coef_i):
            weights = dict(zip(self.names, values))
            logits = functional_call(self.model, weights, args=(), kwargs={"input_ids": ids_i}).logits
            return (self._sequence_logps(logits, {"input_ids": ids_i, "response_mask": response_i}) * coef_i).sum()

        primals = tuple(p.detach() for p in self.params)
        grads = vmap(grad(linearised), in_dims=(None, 0, 0, 0))(primals, ids, response, torch.stack([c1, c2], 1))
        return list(grads)

    def cosine_scores(self, samples: Sequence[Term], v: Vector, method: str) -> torch.Tensor:
        """⟨v, ∇ℓ_i⟩ / ‖∇ℓ_i‖ for a batch (0 where ∇ℓ_i = 0): per-sample autograd for ``exact``,
        else :meth:`per_sample_gradients`. If vmap fails on this model, the reason is printed
        and kept in :attr:`vmap_failure`, and this and every later batch take the per-sample path."""
        if method != "exact" and self.vmap_failure is None:
            try:
                grads = self.per_sample_gradients(samples)
            except (RuntimeError, NotImplementedError) as exc:
                self.vmap_failure = f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
                print(f"warning: per-sample gradients could not be batched with torch.func.vmap "
                      f"({self.vmap_failure}); scoring one record at a time (per-sample autograd)", file=sys.stderr)
            else:
                dots = sum((g.double() * vi.double()).flatten(1).sum(1) for g, vi in zip(grads, v))
                norms = sum(g.double().square().flatten(1).sum(1) for g in grads).sqrt()
                return torch.where(norms > 0, dots / norms, torch.zeros_like(dots))
        v_flat = flatten(v).double()
        values = []
        for sample in samples:
            g = self.exact_gradient(sample).double()
            g_norm = float(g.norm())
            values.append(float(g @ v_flat) / g_norm if g_norm > 0 else 0.0)
        return torch.tensor(values, dtype=torch.float64)

    # -- the exact path

    def exact_gradient(self, sample: Term) -> torch.Tensor:
        """∇ℓ_i by autograd for one record, flattened: policy forward with gradients, reference
        forward without (adapter disabled), the loss, one backward pass."""
        lp1, lp2, n1, n2 = self.logps([sample])
        with torch.no_grad(), self.reference():
            ref1, ref2, _, _ = self.logps([sample])
        loss = self.losses([sample], lp1, lp2, n1, n2, ref1, ref2).sum()
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        return flatten([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.params)])

    def exact_score(self, sample: Term, v_flat: torch.Tensor) -> float:
        """⟨v, ∇ℓ_i⟩ by per-sample autograd (:meth:`exact_gradient`) and a dot product."""
        return float(self.exact_gradient(sample).double() @ v_flat.double())
