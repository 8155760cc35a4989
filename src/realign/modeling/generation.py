"""Batched generation from a local model with the same prompt rendering as every other stage
(:func:`realign.modeling.chat.encode_chat`), greedy by default, seeded when sampling: what evaluation,
the triage's corrective samples and the sampling methods' samples are drawn with."""

from __future__ import annotations

import sys
from typing import Sequence

from ..data import Text
from .chat import encode_chat
from .sequences import char_budget, cut_text, max_input_length, pad_left, prompt_messages
from ..runs.stage import pad_token_id


def prompt_room(model, tokenizer, max_new_tokens: int) -> int | None:
    """Most prompt tokens a generation may start from: the model's input limit
    (:func:`realign.modeling.sequences.max_input_length`) less ``max_new_tokens`` (at least a quarter of
    the limit); None when the model states no limit."""
    limit = max_input_length(model, tokenizer)
    if limit is None:
        return None
    return max(limit - max_new_tokens, limit // 4, 1)


def prompt_ids(tokenizer, prompt: Text, room: int | None) -> tuple[list[int], int]:
    """The prompt's token ids as generation sees them (:func:`realign.modeling.chat.encode_chat`) and
    its full length in tokens. Longer than ``room``, it loses its start (the end of a
    conversation is what the model answers); a megabyte-long text is cut to a character budget
    first (:func:`realign.modeling.sequences.char_budget`), its length then a lower bound."""
    if room is not None:
        prompt = cut_text(prompt, char_budget(tokenizer, room), "tail")
    ids = encode_chat(tokenizer, prompt_messages(prompt))
    if room is not None and len(ids) > room:
        return ids[len(ids) - room :], len(ids)
    return ids, len(ids)


def over_long_prompts(model, tokenizer, rows: Sequence[dict], max_new_tokens: int) -> dict:
    """How many eval prompts are longer than the model takes (cut at their start by
    :func:`generate`): ``{"count", "limit_tokens", "longest_tokens", "ids"}`` (ids: the first 10)."""
    room = prompt_room(model, tokenizer, max_new_tokens)
    report = {"count": 0, "limit_tokens": room, "longest_tokens": 0, "ids": []}
    if room is None:
        return report
    for row in rows:
        n = prompt_ids(tokenizer, row["prompt"], room)[1]
        report["longest_tokens"] = max(report["longest_tokens"], n)
        if n > room:
            report["count"] += 1
            if len(report["ids"]) < 10:
                report["ids"].append(row.get("id"))
    return report


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
    """One response per prompt (a string or a list of messages). A prompt longer than the model
    takes loses its start (:func:`prompt_ids`; counted by :func:`over_long_prompts`). Batches
    are sorted by length and left-padded; sampling (``temperature`` > 0) is seeded per batch, so results
    do not depend on what ran before."""
    import torch
    from tqdm.auto import tqdm

    room = prompt_room(model, tokenizer, max_new_tokens)
    encoded = [prompt_ids(tokenizer, p, room)[0] for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(prompts)
    device = next(model.parameters()).device
    pad_id = pad_token_id(tokenizer)
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
