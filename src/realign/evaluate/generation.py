"""Batched generation with the same prompt rendering as every other stage
(:func:`realign.models.encode_chat`), greedy by default, seeded when sampling."""

from __future__ import annotations

import sys
from typing import Sequence

from ..data import Text
from ..sequences import prompt_messages


def generate(
    model,
    tokenizer,
    prompts: Sequence[Text],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 16,
    temperature: float = 0.0,
    seed: int = 0,
    progress: bool = False,
) -> list[str]:
    """One response per prompt (a string or a list of messages). Batches are sorted by
    length and left-padded; sampling (``temperature`` > 0) is seeded per batch, so results
    do not depend on what ran before."""
    import torch
    from tqdm.auto import tqdm

    from ..models import encode_chat, pad_left

    encoded = [encode_chat(tokenizer, prompt_messages(p)) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            batches = range(0, len(order), batch_size)
            for b, start in enumerate(tqdm(batches, desc="generating", disable=not progress, file=sys.stderr)):
                idx = order[start : start + batch_size]
                ids, mask, _ = pad_left([encoded[i] for i in idx], pad_id, device)
                kwargs: dict = {"do_sample": False}
                if temperature > 0:
                    torch.manual_seed(seed * 100_003 + b)
                    kwargs = {"do_sample": True, "temperature": temperature, "top_k": 0, "top_p": 1.0}
                gen = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_id,
                    eos_token_id=tokenizer.eos_token_id,
                    **kwargs,
                )
                for row, i in enumerate(idx):
                    out[i] = tokenizer.decode(gen[row, ids.shape[1] :], skip_special_tokens=True).strip()
    finally:
        model.train(was_training)
    return out
