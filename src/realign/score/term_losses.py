"""ℓ_i for batches of Stage 2's terms in a parameter space (Objective and scores in
docs/method.md, "Stage 2 — alignment impact scores"): each term's two responses encoded once,
batches of similar length, summed response log-probs in one forward pass, the loss as the
trainer computes it, and the gradient g_J of the gold objective. The fast path
(:mod:`.directional`), the curvature (:mod:`.curvature`) and the per-sample paths
(:mod:`.scorer`) build on :class:`TermLosses`.

Scores are taken at θ_ref, where π_θ = π_ref, so every margin Δ and log-ratio r is exactly 0.
By the chain rule ⟨v, ∇ℓ_i⟩ = ℓ'(0) · ⟨v, ∇s_i⟩, where s_i is the loss's scalar argument (Δ for
a preference loss, r for each NPO term), itself a combination of response log-probs
(:meth:`TermLosses.coefficients`).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Callable, Iterator, Sequence

import torch

from ..errors import RealignError
from ..objective.losses import LOSS_KINDS, LossKind, TermInputs, token_logps
from ..modeling.sequences import Encoded, collate, encode
from ..runs.stage import pad_token_id
from ..objective import Term
from .linalg import Vector


class TermLosses:
    """ℓ_i and its gradient for batches of training terms (:class:`realign.objective.Term`,
    of the two-response kinds :data:`realign.objective.losses.LOSS_KINDS` can score) in the parameter
    space ``params`` (a name -> Parameter map of ``model``). A term's weight is not applied: the
    loss is the unweighted one."""

    def __init__(
        self,
        model,
        tokenizer,
        params: dict[str, torch.nn.Parameter],
        *,
        beta: float,
        preference_loss: str,
        max_length: int,
        batch_size: int,
        device: torch.device,
        reference: Callable[[], "contextmanager"] | None = None,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.names = list(params)
        self.params = [params[n] for n in self.names]
        self.beta, self.loss_name = beta, preference_loss
        self.max_length, self.batch_size, self.device = max_length, batch_size, device
        self.reference = reference or nullcontext
        self.pad_id = pad_token_id(tokenizer)
        self.truncated = 0
        self.forward_sequences = 0
        self.vmap_failure: str | None = None  # why per-sample gradients could not be batched
        self._encoded: dict[int, tuple[Term, tuple[Encoded, Encoded]]] = {}
        """Encodings by the term's id(), each kept with its term so that the id stays its own."""

    # -- encoding and log-probs

    def encode(self, sample: Term) -> tuple[Encoded, Encoded]:
        key = id(sample)
        if key not in self._encoded:
            if LOSS_KINDS[sample.kind].slopes is None:
                raise RealignError(f"Stage 2 cannot score a {sample.kind!r} term (scored kinds: "
                                   f"{', '.join(k for k, v in LOSS_KINDS.items() if v.slopes)})")
            pair = (
                encode(self.tokenizer, sample.prompt, sample.first, self.max_length),
                encode(self.tokenizer, sample.prompt, sample.second, self.max_length),
            )
            self.truncated += pair[0].truncated + pair[1].truncated
            self._encoded[key] = (sample, pair)
        return self._encoded[key][1]

    def batches(self, samples: Sequence[Term]) -> Iterator[list[int]]:
        """Indices in batches of similar length (dynamic padding wastes little)."""
        order = sorted(range(len(samples)), key=lambda i: -sum(len(e.ids) for e in self.encode(samples[i])))
        for start in range(0, len(order), self.batch_size):
            yield order[start : start + self.batch_size]

    def _collate(self, samples: Sequence[Term]):
        encoded = [e for s in samples for e in self.encode(s)]
        batch = collate(encoded, self.pad_id, self.device)
        lengths = batch["response_mask"][:, 1:].sum(-1).clamp(min=1).float()
        self.forward_sequences += len(encoded)
        return batch, lengths

    @staticmethod
    def _sequence_logps(logits: torch.Tensor, batch: dict) -> torch.Tensor:
        return token_logps(logits, batch["input_ids"], batch["response_mask"]).sum(-1)

    def _by_kind(self, samples: Sequence[Term], value: Callable[[LossKind], torch.Tensor]) -> torch.Tensor:
        """Per sample, ``value`` of its own kind (computed once per kind present in the batch)."""
        names = [s.kind for s in samples]
        out = None
        for name in (k for k in LOSS_KINDS if k in names):
            values = value(LOSS_KINDS[name])
            mask = torch.tensor([n == name for n in names], device=values.device)
            out = values if out is None else torch.where(mask, values, out)
        return out

    def logps(self, samples: Sequence[Term]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed response log-probs and lengths of first and second responses; one forward
        pass over all 2B sequences of the batch."""
        batch, lengths = self._collate(samples)
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        per_seq = self._sequence_logps(logits, batch)
        return per_seq[0::2], per_seq[1::2], lengths[0::2], lengths[1::2]

    # -- losses and their scalar arguments

    def losses(self, samples, lp1, lp2, n1, n2, ref1, ref2) -> torch.Tensor:
        """ℓ_i for a batch given policy and reference log-probs: each term's kind's loss, as the
        trainer computes it (docs/method.md Stage 3)."""
        inputs = TermInputs(lp1 - ref1, lp2 - ref2, lp1, n1, n2)
        return self._by_kind(samples, lambda kind: kind.loss(inputs, self.beta, self.loss_name))

    def coefficients(self, samples, n1, n2) -> tuple[torch.Tensor, torch.Tensor]:
        """(c1, c2) with ∇ℓ_i = c1·∇log π(first|x) + c2·∇log π(second|x) at θ_ref, where every
        margin and log-ratio is 0 (:attr:`realign.objective.losses.LossKind.slopes`): ℓ'(0)·(1, −1) for
        ℓ_pref (divided by the response lengths for IPO), NPO'(0)·(1, 1) for dual NPO."""
        slopes = {}

        def slope(kind: LossKind, side: int) -> torch.Tensor:
            if kind.name not in slopes:
                slopes[kind.name] = kind.slopes(n1, n2, self.beta, self.loss_name)
            return slopes[kind.name][side]

        return self._by_kind(samples, lambda kind: slope(kind, 0)), self._by_kind(samples, lambda kind: slope(kind, 1))

    def loss_directional(self, samples, d1, d2, n1, n2) -> torch.Tensor:
        """⟨v, ∇ℓ_i⟩ at θ_ref from the directional derivatives d1, d2 of the log-probs:
        ℓ'(0)·(d1 − d2) for ℓ_pref (length-averaged for IPO), NPO'(0)·(d1 + d2) for dual NPO."""
        c1, c2 = self.coefficients(samples, n1, n2)
        return c1 * d1 + c2 * d2

    # -- gradients

    def gradient(self, samples: Sequence[Term]) -> Vector:
        """∇_θ of the mean loss over ``samples`` at θ_ref (π_ref = π_θ, so the reference
        log-probs are the policy's own, detached): g_J for the gold batch."""
        grads = [torch.zeros_like(p) for p in self.params]
        for idx in self.batches(samples):
            batch = [samples[i] for i in idx]
            lp1, lp2, n1, n2 = self.logps(batch)
            loss = self.losses(batch, lp1, lp2, n1, n2, lp1.detach(), lp2.detach()).sum() / len(samples)
            for g, gi in zip(grads, torch.autograd.grad(loss, self.params, allow_unused=True)):
                if gi is not None:
                    g.add_(gi)
        return grads

