"""General ability after re-alignment: accuracy on benign questions with checkable answers,
perplexity on held-out text, and the mean token KL to the reference model.
MMLU / GSM8K / HellaSwag on real models go through lm-evaluation-harness (:func:`lm_eval_bridge`)."""

from __future__ import annotations

import math
import os
import re
from typing import Callable, Sequence

from ..errors import RealignError
from ..modeling.sequences import char_budget, collate, encode
from ..runs.stage import pad_token_id

_WORD = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


def answer_correct(response: str, answer: str) -> bool:
    """True when the expected answer's words appear, in order and contiguous, among the
    response's words (case and punctuation ignored): "The answer is 42." matches "42",
    "142" does not."""
    want = _WORD.findall(answer.lower())
    have = _WORD.findall(response.lower())
    if not want:
        return False
    return any(have[i : i + len(want)] == want for i in range(len(have) - len(want) + 1))


def perplexity(model, tokenizer, texts: Sequence[str], max_length: int = 512, batch_size: int = 8) -> float:
    """exp(mean negative log-likelihood per token) over plain texts (no chat template)."""
    import torch

    from ..objective.losses import token_logps

    device = next(model.parameters()).device
    pad = pad_token_id(tokenizer)
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            budget = char_budget(tokenizer, max_length)  # never tokenise whole megabytes to keep max_length tokens
            enc = [tokenizer(t[:budget], add_special_tokens=True)["input_ids"][:max_length] for t in texts[start : start + batch_size]]
            width = max(len(e) for e in enc)
            ids = torch.full((len(enc), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for row, e in enumerate(enc):
                ids[row, : len(e)] = torch.tensor(e)
                mask[row, : len(e)] = 1
            ids, mask = ids.to(device), mask.to(device)
            logits = model(input_ids=ids, attention_mask=mask).logits
            lp = token_logps(logits, ids, mask)
            total += float(-lp.sum())
            count += int(mask[:, 1:].sum())
    if count == 0:
        raise RealignError("perplexity: the texts have no tokens to score")
    return math.exp(total / count)


def kl_to_reference(
    model, tokenizer, prompts, responses: Sequence[str], reference: Callable, max_length: int = 512, batch_size: int = 8
) -> float:
    """Mean over responses of the token-averaged KL(π_ref ‖ π_θ) on the response tokens.
    ``reference`` is a context manager factory under which ``model`` is the reference
    (an adapter disabled) or a callable model (a separate reference)."""
    import torch

    from ..objective.losses import token_kl

    device = next(model.parameters()).device
    pad = pad_token_id(tokenizer)
    values = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            seqs = [encode(tokenizer, p, r, max_length) for p, r in zip(prompts[start : start + batch_size], responses[start : start + batch_size])]
            batch = collate(seqs, pad, device)
            inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
            policy_logits = model(**inputs).logits
            with reference() as ref_model:
                ref_logits = (ref_model or model)(**inputs).logits
            values.extend(token_kl(policy_logits, ref_logits, batch["response_mask"]).tolist())
    return sum(values) / len(values) if values else float("nan")


def lm_eval_bridge(model: str, adapter: str | None, tasks: Sequence[str], limit: int | None = None) -> dict:
    """MMLU, GSM8K, HellaSwag ... through lm-evaluation-harness (optional extra ``lm-eval``).
    Needs the task datasets: offline it stops with a clear message instead of retrying."""
    try:
        import lm_eval
    except ImportError:
        raise RealignError("lm-evaluation-harness is not installed: pip install 'trace-realign[lm-eval]'") from None
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise RealignError(
            f"lm-eval tasks {', '.join(tasks)} cannot run offline (HF_HUB_OFFLINE=1): they download their datasets"
        )
    args = f"pretrained={model}" + (f",peft={adapter}" if adapter else "")
    result = lm_eval.simple_evaluate(model="hf", model_args=args, tasks=list(tasks), limit=limit)
    return {task: metrics for task, metrics in result["results"].items()}
