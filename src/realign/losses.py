"""Loss primitives shared by every training method, batched and padding-aware.

Notation follows docs/method.md (our specification of TRACE, arXiv 2511.02623):
log-probabilities of a response are *sums* over its tokens, and

    Δ_θ(x, y1, y2) = [log π_θ(y1|x) − log π_ref(y1|x)] − [log π_θ(y2|x) − log π_ref(y2|x)]

(docs/method.md, Stage 3; the implicit reward margin of DPO, Rafailov et al. 2023, Eq. 7).

* :func:`sequence_logps` -- Σ_t log π(y_t | x, y_<t) over the response tokens of each row;
* :func:`dpo_loss`       -- ℓ_DPO = −log σ(β Δ)          (Alg. 1 L_I as implemented; DPO Eq. 7);
* :func:`npo_loss`       -- −log σ(−β (log π_θ(y|x) − log π_ref(y|x)))   (one term of docs/method.md's
  dual-NPO L_II; NPO, Zhang et al. 2024, Eq. 3 without its 2/β scale);
* :func:`nll_loss`       -- mean negative log-likelihood per token (the anchor docs/method.md's
  lessons found every DPO-family term needs).

All functions return one value per sample (shape ``[batch]``); callers weight and reduce.

Scalar forms, for code that differentiates through the loss's scalar argument (Stage 2's
directional derivatives and Gauss-Newton products): :data:`PREFERENCE_LOSSES` maps ``"dpo"``
and ``"ipo"`` to a :class:`ScalarLoss` of the margin Δ, and :data:`NPO` is the one of the
log-ratio r = log π_θ(y|x) − log π_ref(y|x); each is (ℓ, ℓ', ℓ'') as functions of
(argument tensor, β).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


def sequence_logps(
    logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the log-probabilities of the masked tokens of each sequence.

    Args:
        logits: ``[batch, length, vocab]`` -- the model output for ``input_ids``; position
            ``t`` scores the token at position ``t + 1`` (the Hugging Face causal-LM
            convention; the shift is done here).
        labels: ``[batch, length]`` -- the token ids (normally the ``input_ids`` themselves).
        mask: ``[batch, length]`` -- 1 where ``labels[:, t]`` is a response token to score
            (0 for prompt tokens and padding, either side). Position 0 is never scored.

    Returns:
        ``(logps, n_tokens)``: float32 ``[batch]`` sums of log π(y_t | x, y_<t) over the
        masked tokens, and the number of masked tokens per row (so a caller can average:
        IPO as in TRL uses length-averaged log-probs).
    """
    if logits.shape[:2] != labels.shape or labels.shape != mask.shape:
        raise ValueError(
            f"shape mismatch: logits {tuple(logits.shape)}, labels {tuple(labels.shape)}, mask {tuple(mask.shape)}"
        )
    logits = logits[:, :-1, :].float()
    target = labels[:, 1:]
    weight = mask[:, 1:].to(logits.dtype)
    safe = torch.where(weight > 0, target, torch.zeros_like(target))  # padding ids may be out of range (-100)
    token_logps = -F.cross_entropy(logits.transpose(1, 2), safe, reduction="none")  # [batch, length - 1]
    return (token_logps * weight).sum(-1), weight.sum(-1)


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


def npo_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """Per-sample NPO term −log σ(−β (log π_θ(y|x) − log π_ref(y|x))): pushes the likelihood
    of ``y`` below the reference's, saturating once it is well below (docs/method.md L_II applies it
    to both responses of a PUNISH pair). The NPO paper scales it by 2/β; docs/method.md does not."""
    return -F.logsigmoid(-beta * (policy_logps - ref_logps))


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

#: The NPO term of the log-ratio r: −log σ(−βr); ℓ' = β σ(βr); ℓ'' = β² σ(βr) σ(−βr)
#: (docs/method.md L_II, once per response).
NPO = ScalarLoss(
    lambda r, beta: -F.logsigmoid(-beta * r),
    lambda r, beta: beta * torch.sigmoid(beta * r),
    lambda r, beta: beta**2 * torch.sigmoid(beta * r) * torch.sigmoid(-beta * r),
)

#: Preference losses ℓ_pref by name (docs/method.md Stage 3 offers both; DPO is the reference's).
PREFERENCE_LOSSES: dict[str, ScalarLoss] = {"dpo": DPO, "ipo": IPO}


def token_kl(policy_logits: torch.Tensor, ref_logits: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """L_KL per sequence (docs/method.md Stage 3): KL(π_ref(·|x, y<t) ‖ π_θ(·|x, y<t)) over the
    full vocabulary at every response token, averaged over the response's tokens. Logits at
    position t predict token t+1, so the mask is shifted like the log-probs."""
    lp = torch.log_softmax(policy_logits[:, :-1].float(), -1)
    lr = torch.log_softmax(ref_logits[:, :-1].float(), -1)
    per_token = (lr.exp() * (lr - lp)).sum(-1)
    mask = response_mask[:, 1:].to(per_token.dtype)
    return (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
