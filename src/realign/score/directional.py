"""The fast path of Stage 2: ⟨v, ∇ℓ_i⟩ for a whole batch from the directional derivatives of its
response log-probs along v (docs/method.md, "Stage 2 — alignment impact scores", Speed): two
forward passes (central difference, fp32) or one forward-mode pass (``jvp``) — never a backward
pass per sample."""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import RealignError
from ..objective.losses import token_logps
from ..objective import Term
from .linalg import Vector, norm
from .term_losses import TermLosses


class DirectionalDerivatives(TermLosses):
    """:class:`~.term_losses.TermLosses` with the batched directional derivatives of ℓ_i."""

    def logp_directional(self, samples: Sequence[Term], v: Vector, method: str, epsilon: float):
        """Directional derivatives ⟨v, ∇ log π(y|x)⟩ of both responses of every sample."""
        if method == "jvp":
            return self._jvp(samples, v)
        v_norm = norm(v)
        if v_norm == 0.0:
            zeros = torch.zeros(len(samples), device=self.device)
            lengths = torch.tensor([max(1, e.response_len) for s in samples for e in self.encode(s)], device=self.device)
            return zeros, zeros.clone(), lengths[0::2].float(), lengths[1::2].float()
        for p in self.params:
            if p.dtype != torch.float32:
                raise RealignError(
                    f"central differences need float32 parameters, got {p.dtype}; use dtype: float32 or method: jvp"
                )
        saved = [p.detach().clone() for p in self.params]
        step = epsilon / v_norm
        try:
            with torch.no_grad():
                for p, vi in zip(self.params, v):
                    p.add_(vi, alpha=step)
                plus, lengths = self._token_logps(samples)
                for p, s, vi in zip(self.params, saved, v):
                    p.copy_(s).add_(vi, alpha=-step)
                minus, _ = self._token_logps(samples)
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, saved):
                    p.copy_(s)
        # token by token, then summed in float64: the rounding error of two long sums of
        # large log-probs would otherwise swamp the small difference
        diff = (plus.double() - minus.double()).sum(-1) * (v_norm / (2 * epsilon))
        diff = diff.float()
        return diff[0::2], diff[1::2], lengths[0::2], lengths[1::2]

    def _token_logps(self, samples):
        batch, lengths = self._collate(samples)
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return token_logps(logits, batch["input_ids"], batch["response_mask"]), lengths

    def _jvp(self, samples, v):
        """Forward-mode AD: one pass gives every sequence's tangent along v."""
        from torch.func import functional_call, jvp

        batch, lengths = self._collate(samples)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

        def f(*values):
            logits = functional_call(self.model, dict(zip(self.names, values)), args=(), kwargs=inputs).logits
            return self._sequence_logps(logits, batch)

        primals = tuple(p.detach() for p in self.params)
        tangents = tuple(t.to(p.dtype) for t, p in zip(v, self.params))
        _, tangent = jvp(f, primals, tangents)
        return tangent[0::2], tangent[1::2], lengths[0::2], lengths[1::2]

    def scores(self, samples: Sequence[Term], v: Vector, method: str, epsilon: float) -> torch.Tensor:
        """⟨v, ∇ℓ_i⟩ for a batch, from batched directional derivatives (no backward pass)."""
        d1, d2, n1, n2 = self.logp_directional(samples, v, method, epsilon)
        return self.loss_directional(samples, d1, d2, n1, n2)
