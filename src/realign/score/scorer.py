"""The model-side computations of Stage 2: per-record training losses ℓ_i, the gradient of the
gold objective g_J, directional derivatives ⟨v, ∇ℓ_i⟩ for whole batches, the exact
per-sample path, Hessian-vector products and conjugate gradient (Alg. 1 lines 9-31).

Scores are taken at θ_ref, where π_θ = π_ref, so every margin Δ and log-ratio r is exactly 0.
By the chain rule ⟨v, ∇ℓ_i⟩ = ℓ'(0) · ⟨v, ∇s_i⟩, where s_i is the loss's scalar argument (Δ for
a preference loss, r for each NPO term), itself a combination of response log-probs. So a whole
batch is scored from the directional derivatives of its log-probs: two forward passes (central
difference, fp32) or one forward-mode pass (``jvp``) — never a backward pass per sample.
The exact path (``method="exact"``) is the reference code's structure: per record, policy and
reference forward passes, the loss, one backward pass, a dot product with v.

The ``cosine`` variant (docs/method.md, "Where we differ") also needs ‖∇ℓ_i‖, which no directional derivative
gives: its batched path takes every sample's gradient at once with ``torch.func.vmap`` over
``grad`` of the loss's linearisation at θ_ref (one batched backward pass, not one per sample),
and falls back to per-sample autograd, with a warning, for a model vmap cannot trace.
"""

from __future__ import annotations

import math
import re
import sys
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import torch

from ..errors import RealignError
from ..losses import LOSS_KINDS, LossKind, TermInputs, token_logps
from ..sequences import Encoded, collate, encode
from ..stage import pad_token_id
from ..train.methods import Term

Vector = list[torch.Tensor]


# --------------------------------------------------------------------------- vectors


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


class Scorer:
    """Evaluates ℓ_i and its derivatives for batches of training terms (:class:`realign.train.methods.Term`,
    of the two-response kinds :data:`realign.losses.LOSS_KINDS` can score) in the parameter
    space ``params`` (a name -> Parameter map of ``model``). A term's weight is not applied: the
    score is that of its unweighted loss."""

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
        self.backward_sequences = 0
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
        margin and log-ratio is 0 (:attr:`realign.losses.LossKind.slopes`): ℓ'(0)·(1, −1) for
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
            self.backward_sequences += 2 * len(batch)
        return grads

    # -- the fast path

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
        self.backward_sequences += 2 * len(samples)
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
        self.backward_sequences += 2
        return flatten([g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self.params)])

    def exact_score(self, sample: Term, v_flat: torch.Tensor) -> float:
        """⟨v, ∇ℓ_i⟩ by per-sample autograd (:meth:`exact_gradient`) and a dot product."""
        return float(self.exact_gradient(sample).double() @ v_flat.double())

    # -- curvature

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
                self.backward_sequences += 4 * len(batch)
            return out

        return matvec

    def hvp_gauss_newton(self, samples: Sequence[Term], method: str, epsilon: float) -> Callable[[Vector], Vector]:
        """u ↦ G u with G = mean_i Σ_s ℓ''(0) ∇s ∇sᵀ, the Gauss-Newton matrix with respect to each
        loss's scalar argument s (Δ, or r per NPO term; :attr:`realign.losses.LossKind.gauss_newton`):
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
                self.backward_sequences += 2 * len(batch)
            return out

        return matvec
