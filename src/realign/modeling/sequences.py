"""Turning (prompt, response) into token sequences — the one formatting every stage shares —
and the budgets and padding of token sequences.

The prompt is rendered exactly as generation sees it (:func:`realign.modeling.chat.render_chat`:
the chat template with the generation prompt, or plain ``User:/Assistant:`` blocks); the
response is what the template writes for the assistant turn after that (its end-of-turn
token included), or the response text and eos without a template. Impact scoring, training
and evaluation all call :func:`encode`, so the gold batch, per-sample scores and the training
loss see identical tokens (the reference code formats them differently; we do not). Message
contents are data: a special token's text inside them (``</s>``, ``<|assistant|>``) is encoded
as text (:func:`realign.modeling.chat.quote_specials`), never as the token, here as in generation.

Budgets: the longest input a model takes (:func:`max_input_length`), and text cut to a number of
characters before it is tokenised (:func:`char_budget`), so that no record is encoded whole to
keep a few hundred tokens. Padding: right-padded batches of encoded pairs (:func:`collate`), and
left-padded prompts for generation and last-position scoring (:func:`pad_left`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from ..data import Text
from .chat import encode_rendered, quote_specials, render_chat

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

_NO_LIMIT = 10**8  # tokenizers without a known limit report int(1e30)


@dataclass(frozen=True)
class Encoded:
    """Token ids of prompt + response; ``prompt_len`` tokens of prompt come first."""

    ids: tuple[int, ...]
    prompt_len: int
    truncated: bool

    @property
    def response_len(self) -> int:
        return len(self.ids) - self.prompt_len


def prompt_messages(prompt: Text) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def response_messages(response: Text) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": response}] if isinstance(response, str) else list(response)


def _render_response(tokenizer: "PreTrainedTokenizerBase", prompt: list[dict], prompt_text: str, response: list[dict]) -> str:
    if getattr(tokenizer, "chat_template", None):
        try:
            full = tokenizer.apply_chat_template(prompt + response, tokenize=False)
        except Exception:
            full = None
        if isinstance(full, str) and full.startswith(prompt_text) and len(full) > len(prompt_text):
            return full[len(prompt_text) :]
    text = "\n\n".join(m["content"] for m in response)
    return (" " if not getattr(tokenizer, "chat_template", None) else "") + text + (tokenizer.eos_token or "")


def max_input_length(model: "PreTrainedModel | None", tokenizer: "PreTrainedTokenizerBase") -> int | None:
    """The longest input the model takes: the smaller of the tokenizer's ``model_max_length``
    and the model's ``max_position_embeddings`` (either may be unknown); None if neither is set."""
    limits = []
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < _NO_LIMIT:
        limits.append(tok_limit)
    config = getattr(model, "config", None)
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None) if config is not None else None
        if isinstance(value, int) and value > 0:
            limits.append(value)
            break
    return min(limits) if limits else None


def max_token_chars(tokenizer: "PreTrainedTokenizerBase") -> int:
    """The most characters of text one token can stand for: the longest entry of the
    vocabulary (a byte-level or SentencePiece token of L characters covers at most L
    characters of text). Computed once per tokenizer."""
    cached = getattr(tokenizer, "_realign_max_token_chars", None)
    if cached:
        return cached
    try:
        longest = max((len(t) for t in tokenizer.get_vocab()), default=0)
    except Exception:  # a tokenizer without a vocabulary to list
        longest = 0
    longest = max(longest, 16) if longest else 256
    try:
        tokenizer._realign_max_token_chars = longest
    except Exception:  # pragma: no cover - a tokenizer that refuses attributes
        pass
    return longest


def char_budget(tokenizer: "PreTrainedTokenizerBase", max_tokens: int) -> int:
    """Characters of text that surely hold more than ``max_tokens`` tokens, with a wide margin
    (4x, for normalisers that merge characters and for tokens at a cut). Text beyond it is
    cut before tokenising: a 50 MB record must not be encoded whole to keep 256 tokens."""
    return 4 * (max_tokens + 16) * max_token_chars(tokenizer)


def cut_text(text: Text, budget: int, keep: str) -> Text:
    """``text`` (a string or messages) with every string longer than ``budget`` characters cut
    to its first (``keep="head"``) or last (``keep="tail"``) ``budget`` characters. Each message
    is cut alone: a cut message still holds more tokens than the window keeps, so what lies
    beyond it never reaches the window."""
    def cut(value: str) -> str:
        if len(value) <= budget:
            return value
        return value[:budget] if keep == "head" else value[-budget:]

    if isinstance(text, str):
        return cut(text)
    return [{**m, "content": cut(m["content"])} if isinstance(m.get("content"), str) else m for m in text]


def cut_middle_chars(text: str, budget: int) -> str:
    """``text`` with its middle dropped when it is longer than twice ``budget`` characters (the
    first and last ``budget`` kept), for code that keeps a text's head and tail tokens."""
    if len(text) <= 2 * budget:
        return text
    return text[:budget] + text[-budget:]


def truncate_middle(
    tokenizer: "PreTrainedTokenizerBase", text: str, keep_tokens: int, marker: str = "\n[...]\n"
) -> str:
    """``text`` with its middle cut so about ``keep_tokens`` of its tokens remain (the first
    and last halves kept, joined by ``marker``); ``""`` when ``keep_tokens <= 0``."""
    if keep_tokens <= 0:
        return ""
    text = cut_middle_chars(text, char_budget(tokenizer, keep_tokens))  # never tokenise whole megabytes
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) <= keep_tokens:
        return text
    head = (keep_tokens + 1) // 2
    tail = keep_tokens - head
    left = tokenizer.decode(ids[:head], skip_special_tokens=False)
    right = tokenizer.decode(ids[len(ids) - tail :], skip_special_tokens=False) if tail else ""
    return left + marker + right


def encode(tokenizer: "PreTrainedTokenizerBase", prompt: Text, response: Text, max_length: int) -> Encoded:
    """Encode one (prompt, response). Over ``max_length`` tokens the response is cut at its end
    and, if the prompt alone would leave less than half the room, the prompt loses its start.
    Texts far longer than ``max_length`` tokens are cut to :func:`char_budget` characters
    first (the same side the token cut takes), so the tokenizer never sees whole megabytes;
    the tokens kept are the same."""
    budget = char_budget(tokenizer, max_length)
    prompt, response = cut_text(prompt, budget, "tail"), cut_text(response, budget, "head")
    messages = quote_specials(tokenizer, prompt_messages(prompt))
    prompt_text, special = render_chat(tokenizer, messages)
    p_ids = encode_rendered(tokenizer, prompt_text, special)
    r_text = _render_response(tokenizer, messages, prompt_text, quote_specials(tokenizer, response_messages(response)))
    r_ids = encode_rendered(tokenizer, r_text, False)
    truncated = len(p_ids) + len(r_ids) > max_length
    if truncated:
        room_for_prompt = max_length - min(len(r_ids), max_length // 2)
        p_ids = p_ids[len(p_ids) - room_for_prompt :] if len(p_ids) > room_for_prompt else p_ids
        r_ids = r_ids[: max_length - len(p_ids)]
    return Encoded(tuple(p_ids) + tuple(r_ids), len(p_ids), truncated)


def collate(seqs: Sequence[Encoded], pad_id: int, device: "str | torch.device" = "cpu") -> dict[str, "torch.Tensor"]:
    """Right-pad to the longest sequence (dynamic padding): ``input_ids``, ``attention_mask``
    and ``response_mask`` (1 on response tokens, the ones whose log-probs are summed)."""
    import torch

    width = max(len(s.ids) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    response = torch.zeros((len(seqs), width), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s.ids)] = torch.tensor(s.ids, dtype=torch.long)
        attention[row, : len(s.ids)] = 1
        response[row, s.prompt_len : len(s.ids)] = 1
    return {"input_ids": ids.to(device), "attention_mask": attention.to(device), "response_mask": response.to(device)}


def pad_left(
    sequences: Sequence[Sequence[int]], pad_id: int, device: "str | torch.device" = "cpu"
) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """Left-pad token id lists into ``(input_ids, attention_mask, position_ids)``.

    Position ids count real tokens only (0 at each row's first real token), so a padded row
    sees the same positions as the row alone -- needed for exact batched scoring with models
    that have absolute position embeddings; harmless with rotary ones.
    """
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if len(seq):
            ids[row, width - len(seq) :] = torch.as_tensor(list(seq), dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids.to(device), mask.to(device), positions.to(device)
