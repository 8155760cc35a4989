"""Loss primitives shared by every stage, batched and padding-aware, and the one table of loss
kinds that the trainer (Stage 3) and the scorer (Stage 2) both read.

Notation follows docs/method.md (our specification of TRACE, arXiv 2511.02623):
log-probabilities of a response are *sums* over its tokens, and

    Δ_θ(x, y1, y2) = [log π_θ(y1|x) − log π_ref(y1|x)] − [log π_θ(y2|x) − log π_ref(y2|x)]

(docs/method.md, Stage 3; the implicit reward margin of DPO, Rafailov et al. 2023, Eq. 7).

* :func:`token_logps`    -- log π(y_t | x, y_<t) at every response token: the one log-prob function;
* :func:`sequence_logps` -- its sums over the response tokens of each row, and their counts;
* :func:`dpo_loss`       -- ℓ_DPO = −log σ(β Δ)          (Alg. 1 L_I as implemented; DPO Eq. 7);
* :func:`rdpo_loss`      -- robust DPO for labels flipped at rate ε, ((1−ε)ℓ(βΔ) − εℓ(−βΔ))/(1−2ε),
  ℓ = −log σ (Chowdhury et al. 2024, "Provably Robust DPO", Eq. 8; TRL's ``loss_type="robust"``);
* :func:`nll_loss`       -- mean negative log-likelihood per token (the anchor docs/method.md's
  lessons found every DPO-family term needs).

All functions return one value per sample (shape ``[batch]``); callers weight and reduce.

Scalar forms, for code that differentiates through the loss's scalar argument (Stage 2's
directional derivatives and Gauss-Newton products): :data:`PREFERENCE_LOSSES` maps ``"dpo"``
and ``"ipo"`` to a :class:`ScalarLoss` of the margin Δ (:func:`preference_margin`, length-averaged
for IPO), and :data:`NPO` is the one of the log-ratio r = log π_θ(y|x) − log π_ref(y|x); each is
(ℓ, ℓ', ℓ'') as functions of (argument tensor, β).

Loss kinds (:data:`LOSS_KINDS`): what a training term computes from its responses' log-probs —
its loss, whether it needs reference log-probs, and, for the kinds Stage 2 scores, the slopes
and Gauss-Newton form of that same loss at θ_ref. A method (:mod:`realign.train.methods`) only names a
kind per term; the trainer and the scorer both evaluate it from this table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


def token_logps(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """log π(y_t | x, y_<t) for every masked token, 0 elsewhere: float32 ``[batch, length - 1]``.

    Args:
        logits: ``[batch, length, vocab]`` -- the model output for ``input_ids``; position
            ``t`` scores the token at position ``t + 1`` (the Hugging Face causal-LM
            convention; the shift is done here), computed in fp32 whatever the model's dtype.
        labels: ``[batch, length]`` -- the token ids (normally the ``input_ids`` themselves).
        mask: ``[batch, length]`` -- 1 where ``labels[:, t]`` is a response token to score
            (0 for prompt tokens and padding, either side). Position 0 is never scored.
    """
    if logits.shape[:2] != labels.shape or labels.shape != mask.shape:
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)}, labels {tuple(labels.shape)}, mask {tuple(mask.shape)}"
        )
    logits = logits[:, :-1, :].float()
    target = labels[:, 1:]
    weight = mask[:, 1:].to(logits.dtype)
    safe = torch.where(weight > 0, target, torch.zeros_like(target))  # padding ids may be out of range (-100)
    logps = -F.cross_entropy(logits.transpose(1, 2), safe, reduction="none")  # [batch, length - 1]
    return logps * weight


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logps, n_tokens)``: float32 ``[batch]`` sums of :func:`token_logps` over each row's
    masked tokens, log π(y|x) = Σ_t log π(y_t | x, y_<t), and the number of those tokens (so a
    caller can average: IPO as in TRL uses length-averaged log-probs)."""
    return token_logps(logits, labels, mask).sum(-1), mask[:, 1:].to(torch.float32).sum(-1)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> torch.Tensor:
    """Per-sample DPO loss −log σ(β Δ), Δ as in docs/method.md Stage 3 with y1 = chosen,
    y2 = rejected (the preference loss ℓ_pref of Alg. 1 L_I and of the gold objective J)."""
    delta = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid(beta * delta)


def rdpo_loss(margin: torch.Tensor, beta: float, epsilon: float) -> torch.Tensor:
    """Per-sample robust DPO loss of the margin Δ for preference labels flipped with probability
    ``epsilon`` (ε < 1/2): ((1−ε)·ℓ(βΔ) − ε·ℓ(−βΔ)) / (1−2ε), ℓ(z) = −log σ(z) — the DPO loss of
    the pair as labelled and of the pair swapped, combined so that its expectation over the
    label noise is the DPO loss of the true label (Chowdhury et al. 2024). ε = 0 is DPO."""
    return ((1.0 - epsilon) * -F.logsigmoid(beta * margin) + epsilon * F.logsigmoid(-beta * margin)) / (1.0 - 2.0 * epsilon)


def nll_loss(logps: torch.Tensor, n_tokens: torch.Tensor) -> torch.Tensor:
    """Per-sample mean negative log-likelihood per token (``logps``/``n_tokens`` from
    :func:`sequence_logps`); rows without tokens give 0."""
    return -logps / n_tokens.clamp(min=1)


# --------------------------------------------------------------------------- scalar forms


class ScalarLoss(NamedTuple):
    """A loss of one scalar argument s and its first two derivatives, each ``f(s, beta)``."""

    value: Callable[[torch.Tensor, float], torch.Tensor]
    grad: Callable[[torch.Tensor, float], torch.Tensor]
    curvature: Callable[[torch.Tensor, float], torch.Tensor]


#: ℓ_DPO(Δ) = −log σ(βΔ); ℓ' = −β σ(−βΔ); ℓ'' = β² σ(βΔ) σ(−βΔ)   (DPO Eq. 7).
DPO = ScalarLoss(
    lambda m, beta: -F.logsigmoid(beta * m),
    lambda m, beta: -beta * torch.sigmoid(-beta * m),
    lambda m, beta: beta**2 * torch.sigmoid(beta * m) * torch.sigmoid(-beta * m),
)

#: ℓ_IPO(Δ) = (Δ − 1/(2β))²; ℓ' = 2(Δ − 1/(2β)); ℓ'' = 2   (IPO, Azar et al. 2023, Eq. 17;
#: docs/method.md: TRL applies it to length-averaged log-probs).
IPO = ScalarLoss(
    lambda m, beta: (m - 1.0 / (2.0 * beta)) ** 2,
    lambda m, beta: 2.0 * (m - 1.0 / (2.0 * beta)),
    lambda m, beta: torch.full_like(m, 2.0),
)

#: The NPO term of the log-ratio r = log π_θ(y|x) − log π_ref(y|x): −log σ(−βr); ℓ' = β σ(βr);
#: ℓ'' = β² σ(βr) σ(−βr). It pushes the likelihood of y below the reference's, saturating once it
#: is well below (docs/method.md L_II, once per response; NPO, Zhang et al. 2024, Eq. 3 without
#: its 2/β scale).
NPO = ScalarLoss(
    lambda r, beta: -F.logsigmoid(-beta * r),
    lambda r, beta: beta * torch.sigmoid(beta * r),
    lambda r, beta: beta**2 * torch.sigmoid(beta * r) * torch.sigmoid(-beta * r),
)

#: Preference losses ℓ_pref by name (docs/method.md Stage 3 offers both; DPO is the reference's).
PREFERENCE_LOSSES: dict[str, ScalarLoss] = {"dpo": DPO, "ipo": IPO}


def preference_margin(x1: torch.Tensor, x2: torch.Tensor, n1: torch.Tensor, n2: torch.Tensor,
                      preference_loss: str) -> torch.Tensor:
    """The argument of ℓ_pref from per-response quantities x (log-ratios, for Δ; or log-probs, or
    their directional derivatives, since the margin is linear): x1 − x2, and for IPO the
    length-averaged x1/n1 − x2/n2 (TRL's IPO; docs/method.md Stage 3)."""
    return x1 / n1 - x2 / n2 if preference_loss == "ipo" else x1 - x2


def keep_loss(margin: torch.Tensor, beta: float) -> torch.Tensor:
    """L_K per pair (docs/method.md Stage 3, "Keeping the retained preferences"): ℓ_DPO of the
    margin clipped at 0, minus its value at 0 — −log σ(β·min(Δ, 0)) − log 2. Zero (no gradient)
    while the policy prefers y_w over y_l at least as much as π_ref does; a DPO-like restoring
    force once the margin falls below the reference's — with DPO's slope β/2 just below 0, so a
    pair that drifts at all is pushed at full strength."""
    return -F.logsigmoid(beta * margin.clamp(max=0.0)) - math.log(2.0)


def token_kl(policy_logits: torch.Tensor, ref_logits: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """L_KL per sequence (docs/method.md Stage 3): KL(π_ref(·|x, y<t) ‖ π_θ(·|x, y<t)) over the
    full vocabulary at every response token, averaged over the response's tokens. Logits at
    position t predict token t+1, so the mask is shifted like the log-probs."""
    lp = torch.log_softmax(policy_logits[:, :-1].float(), -1)
    lr = torch.log_softmax(ref_logits[:, :-1].float(), -1)
    per_token = (lr.exp() * (lr - lp)).sum(-1)
    mask = response_mask[:, 1:].to(per_token.dtype)
    return (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)


# --------------------------------------------------------------------------- loss kinds


class TermInputs(NamedTuple):
    """What a term's loss reads, one value per term: the log-ratios r = log π_θ − log π_ref of its
    first and second responses, the policy log-prob of the first, the response lengths, and the
    token KL of the first (``kl`` terms; None where no kind needs it); and, for every term alike,
    the label-flip rate ε that ``rdpo`` terms assume (the ``rdpo_epsilon`` setting)."""

    r1: torch.Tensor
    r2: torch.Tensor
    lp1: torch.Tensor
    n1: torch.Tensor
    n2: torch.Tensor
    kl: torch.Tensor | None = None
    epsilon: float = 0.0


@dataclass(frozen=True)
class LossKind:
    """One kind of training term (docs/method.md Stage 3).

    ``loss(x, beta, preference_loss)``: the per-term loss from :class:`TermInputs`.
    ``reference``: what of π_ref it needs — ``"logps"`` (reference log-probs, precomputable),
    ``"logits"`` (full-vocabulary reference distributions) or None.
    ``slopes(n1, n2, beta, preference_loss)``: (c1, c2) with ∇ℓ = c1·∇log π(first|x) +
    c2·∇log π(second|x) at θ_ref, where every margin and log-ratio is 0; and
    ``gauss_newton(d1, d2, lp1, lp2, n1, n2, beta, preference_loss)``: the term whose gradient is
    the Gauss-Newton product G u, given the log-probs' directional derivatives d along u. Both
    exist for the kinds Stage 2 scores (two responses each); None for the others.
    ``anchored``: the NLL anchor (``nll_weight``) applies to its first response, the preferred one."""

    name: str
    description: str
    pair: bool
    reference: str | None
    loss: Callable[[TermInputs, float, str], torch.Tensor]
    slopes: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None
    gauss_newton: Callable[..., torch.Tensor] | None = None
    anchored: bool = False


def _pref_slopes(n1, n2, beta, preference_loss):
    """ℓ'(0) times the margin's coefficients (the margin is linear, so they are its values at
    (ℓ'(0), 0) and (0, ℓ'(0)))."""
    zero = torch.zeros_like(n1)
    slope = PREFERENCE_LOSSES[preference_loss].grad(zero, beta)
    return preference_margin(slope, zero, n1, n2, preference_loss), preference_margin(zero, slope, n1, n2, preference_loss)


def _pref_gauss_newton(d1, d2, lp1, lp2, n1, n2, beta, preference_loss):
    """ℓ''(0)·⟨u, ∇Δ⟩·Δ(log-probs): its gradient is ℓ''(0) ∇Δ ∇Δᵀ u."""
    curvature = float(PREFERENCE_LOSSES[preference_loss].curvature(torch.zeros(1), beta))
    return (curvature * preference_margin(d1, d2, n1, n2, preference_loss).detach()
            * preference_margin(lp1, lp2, n1, n2, preference_loss))


def _npo2_slopes(n1, n2, beta, preference_loss):
    slope = NPO.grad(torch.zeros_like(n1), beta)
    return slope, slope


def _npo2_gauss_newton(d1, d2, lp1, lp2, n1, n2, beta, preference_loss):
    """NPO''(0)·Σ_y ⟨u, ∇r_y⟩·r_y over both responses."""
    return float(NPO.curvature(torch.zeros(1), beta)) * (d1.detach() * lp1 + d2.detach() * lp2)


#: The loss kinds by name (docs/method.md Stage 3). The trainer evaluates every kind; Stage 2
#: scores ``pref`` and ``npo2``, the kinds of TRACE's conflict terms.
LOSS_KINDS: dict[str, LossKind] = {
    k.name: k
    for k in (
        LossKind("pref", "ℓ_pref(x, first ≻ second): DPO −log σ(βΔ) or IPO (Δ − 1/(2β))² (L_I)", True, "logps",
                 lambda x, beta, pl: PREFERENCE_LOSSES[pl].value(preference_margin(x.r1, x.r2, x.n1, x.n2, pl), beta),
                 _pref_slopes, _pref_gauss_newton, anchored=True),
        LossKind("keep", "one-sided ℓ_DPO on first ≻ second: −log σ(β·min(Δ, 0)) − log 2, zero while the pair's "
                 "margin over π_ref is ≥ 0 (L_K)", True, "logps",
                 lambda x, beta, pl: keep_loss(preference_margin(x.r1, x.r2, x.n1, x.n2, pl), beta)),
        LossKind("npo2", "dual NPO on both responses (L_II)", True, "logps",
                 lambda x, beta, pl: NPO.value(x.r1, beta) + NPO.value(x.r2, beta), _npo2_slopes, _npo2_gauss_newton),
        LossKind("npo", "NPO on one response", False, "logps", lambda x, beta, pl: NPO.value(x.r1, beta)),
        LossKind("ga", "gradient ascent on one response: + log π_θ(y|x)/|y| (minimised, so pushed down)", False,
                 None, lambda x, beta, pl: x.lp1 / x.n1),
        LossKind("kl", "token-level KL(π_ref ‖ π_θ) over the full vocabulary on the response, averaged over its "
                 "tokens (L_KL)", False, "logits", lambda x, beta, pl: x.kl),
        LossKind("rdpo", "robust DPO on first ≻ second for labels flipped at rate ε: ((1−ε)ℓ(βΔ) − εℓ(−βΔ))/(1−2ε), "
                 "ℓ = −log σ", True, "logps", lambda x, beta, pl: rdpo_loss(x.r1 - x.r2, beta, x.epsilon),
                 anchored=True),
    )
}

#: A kind's index in the tensors of a micro-batch.
KIND_INDEX = {name: i for i, name in enumerate(LOSS_KINDS)}
