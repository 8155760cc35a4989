"""The loss of one micro-batch: (1/E)·Σ_e w_e·ℓ_e over its E terms, whatever mix of term kinds
it holds, from one policy forward pass over all its sequences (first and second responses
concatenated) and at most one reference pass (:mod:`realign.train.reference`); plus the NLL
anchor. That is L_TRACE = L_I + L_II + α_KL·L_KL up to the constant 1/N in expectation."""

from __future__ import annotations

import functools
import inspect

import torch

from ..objective.losses import KIND_INDEX, LOSS_KINDS, TermInputs, token_logps
from .reference import reference_pass

#: The kinds whose first (preferred) response the NLL anchor applies to, by index.
ANCHORED = [KIND_INDEX[name] for name, kind in LOSS_KINDS.items() if kind.anchored]


def term_losses(model, inputs: dict, options: dict, reference_logits) -> tuple[torch.Tensor, dict[str, float]]:
    """The micro-batch loss (1/E)·Σ w_e ℓ_e and its components, batched over all terms.

    ``options``: beta, preference_loss, nll_weight, nll_retain, components (names by index), and
    rdpo_epsilon (ε of ``rdpo`` terms; 0 where absent).
    The NLL anchor −log π_θ(y⁺|x)/|y⁺| (docs/method.md, "Lessons measured": anchor every DPO-family term) is
    added for the positive response of every preference term (the kinds marked ``anchored``) and,
    with ``nll_retain``, for the kept response of every KL (RETAIN) term."""
    ids, mask, resp = inputs["input_ids"], inputs["attention_mask"], inputs["response_mask"]
    kind, weight, second_row, ref = inputs["kind"], inputs["weight"], inputs["second_row"], inputs["ref"].clone()
    n_terms = kind.shape[0]
    beta = options["beta"]
    # logits only where a loss reads them (from the position before the earliest response token):
    # full-vocabulary logits over prompt positions are a large share of activation memory
    keep = logits_to_keep(resp) if options.get("trim_logits", True) and accepts_logits_to_keep(model) else 0
    trim = {"logits_to_keep": keep} if keep else {}
    logits = model(input_ids=ids, attention_mask=mask, **trim).logits
    start = ids.shape[1] - logits.shape[1]  # the positions dropped (0 if the model kept all)
    ids, resp = ids[:, start:], resp[:, start:]
    per_token = token_logps(logits, ids, resp)
    lp = per_token.sum(-1)
    lengths = resp[:, 1:].sum(-1).clamp(min=1).to(lp.dtype)

    rows2 = torch.where(second_row >= 0, second_row, torch.zeros_like(second_row))
    is_kl = kind == KIND_INDEX["kl"]
    kl = reference_pass(model, inputs, reference_logits, logits, start, trim, ref)
    ref = torch.nan_to_num(ref.to(lp.dtype), nan=0.0)

    lp1, n1 = lp[:n_terms], lengths[:n_terms]
    lp2, n2 = lp[rows2], lengths[rows2]
    x = TermInputs(lp1 - ref[:, 0], lp2 - ref[:, 1], lp1, n1, n2, kl, options.get("rdpo_epsilon", 0.0))
    per_kind = {name: k.loss(x, beta, options["preference_loss"]) for name, k in LOSS_KINDS.items()}
    term_loss = torch.zeros_like(lp1)
    for name, value in per_kind.items():
        term_loss = torch.where(kind == KIND_INDEX[name], value, term_loss)
    weighted = weight.to(term_loss.dtype) * term_loss
    loss = weighted.sum() / n_terms
    parts: dict[str, float] = {}
    components = options["components"]
    comp = inputs["component"]
    for c, name in enumerate(components):
        sel = comp == c
        if sel.any():
            parts[name] = float(weighted[sel].sum().detach() / n_terms)
    if options["nll_weight"] > 0:
        anchored = torch.isin(kind, torch.tensor(ANCHORED, device=kind.device))
        if options.get("nll_retain"):
            anchored = anchored | is_kl
        nll = (-(lp1 / n1) * anchored).sum() / n_terms
        loss = loss + options["nll_weight"] * nll
        parts["L_NLL"] = float(nll.detach())
    return loss, parts


def logits_to_keep(response_mask: torch.Tensor) -> int:
    """How many last positions' logits the losses of a right-padded batch read: from the one
    before the earliest response token (it predicts that token) to the end; 0 = all."""
    width = response_mask.shape[1]
    has = response_mask.bool().any(-1)
    if not bool(has.any()):
        return 0
    first = int(response_mask.bool().to(torch.uint8).argmax(-1)[has].min())
    keep = width - first + 1
    return keep if 0 < keep < width else 0


def accepts_logits_to_keep(model) -> bool:
    """Whether the causal LM under PEFT/DDP wrappers takes ``logits_to_keep`` (transformers
    >= 4.50 models do); checked once per model class."""
    inner = model
    for _ in range(4):
        if hasattr(inner, "module"):  # DDP / DeepSpeed engine
            inner = inner.module
        elif hasattr(inner, "get_base_model"):  # PEFT
            inner = inner.get_base_model()
        else:
            break
    return _forward_accepts(type(inner))


@functools.lru_cache(maxsize=None)
def _forward_accepts(cls) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(cls.forward).parameters
    except (TypeError, ValueError):
        return False
