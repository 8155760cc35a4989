"""Chat rendering: the prompt for the assistant's next turn as a model sees it (its chat template,
or plain ``User:``/``Assistant:`` blocks), and its token ids with the messages' contents read as
text -- a special token's string inside a message never becomes the token."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerBase


def render_chat(tokenizer: "PreTrainedTokenizerBase", messages: Sequence[dict[str, str]]) -> tuple[str, bool]:
    """Render ``messages`` as the prompt for the assistant's next turn.

    With a chat template: the template with ``add_generation_prompt=True`` (a template that
    rejects the system role gets the system text prepended to the first user message).
    Without one: plain ``System: ...`` / ``User: ...`` / ``Assistant:`` blocks.
    Returns ``(text, add_special_tokens)``: encode a templated text with
    ``add_special_tokens=False`` (the template writes its own bos), a plain one with True.
    """
    if getattr(tokenizer, "chat_template", None):
        try:
            text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        except Exception:  # e.g. "System role not supported" raised from the template
            merged = _fold_system(messages)
            if merged == list(messages):
                raise
            text = tokenizer.apply_chat_template(merged, tokenize=False, add_generation_prompt=True)
        return text, False
    blocks = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join(blocks) + "\n\nAssistant:", True


def _fold_system(messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    messages = list(messages)
    if not messages or messages[0]["role"] != "system" or len(messages) < 2 or messages[1]["role"] != "user":
        return messages
    first = {"role": "user", "content": messages[0]["content"] + "\n\n" + messages[1]["content"]}
    return [first, *messages[2:]]


#: Stands for a quoted literal while a chat is rendered (:func:`quote_specials`): a private-use
#: character, which no chat template writes.
_MARK = "\U000f8000"
#: How chat text becomes token ids (:func:`encode_chat`: special-token strings in a message are
#: quoted as text). Part of the identity of what caches a local model's output (generations, the
#: ``hf`` judges' verdicts, the ``hf`` oracle's responses): a change of encoding is a new entry.
CHAT_ENCODING = "chat-quoted-1"


def _literals(tokenizer: "PreTrainedTokenizerBase") -> tuple[str, ...]:
    """What a message may not spell as a token: every string the tokenizer reads as a special
    token (its special tokens and the added tokens marked special), longest first, and
    :data:`_MARK` itself (so a content holding it is quoted too, and nothing is lost)."""
    specials = set(tokenizer.all_special_tokens)
    specials |= {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    return (*sorted((t for t in specials if t), key=lambda t: (-len(t), t)), _MARK)


@lru_cache(maxsize=16)
def _literal_pattern(literals: tuple[str, ...]) -> "re.Pattern[str]":
    return re.compile("|".join(re.escape(t) for t in literals))


def quote_specials(tokenizer: "PreTrainedTokenizerBase", messages: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """``messages`` with every special-token string inside a content (``</s>``,
    ``<|assistant|>``, ...) replaced by a placeholder. Data is data: rendered through the chat
    template and encoded with :func:`encode_rendered`, the placeholders become the text they
    stand for, never the special tokens, so a record cannot open or close a turn. Messages
    without such strings come back unchanged."""
    literals = _literals(tokenizer)
    pattern = _literal_pattern(literals)
    index = {t: i for i, t in enumerate(literals)}

    def quote(content: str) -> str:
        return pattern.sub(lambda m: f"{_MARK}{index[m.group()]}{_MARK}", content)

    return [{**m, "content": quote(m["content"])} if isinstance(m.get("content"), str) else m for m in messages]


def encode_rendered(tokenizer: "PreTrainedTokenizerBase", text: str, add_special_tokens: bool) -> list[int]:
    """Token ids of ``text``, rendered (:func:`render_chat`) from :func:`quote_specials`'
    messages: the template's own special tokens are special tokens, each quoted string is
    encoded as plain text (special-token parsing off). ``add_special_tokens`` as
    :func:`render_chat` returns it: True marks plain ``User:``/``Assistant:`` blocks, which hold
    no template tokens, so all of such a text is read as text. Without quoted strings this is
    the tokenizer's own encoding of ``text``."""
    if _MARK not in text:
        return tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
    literals = _literals(tokenizer)
    pieces = text.split(_MARK)  # template text and quoted literals' indices, alternating
    if add_special_tokens:
        plain = "".join(literals[int(p)] if i % 2 else p for i, p in enumerate(pieces))
        return tokenizer(plain, add_special_tokens=True, split_special_tokens=True)["input_ids"]
    ids: list[int] = []
    for i, piece in enumerate(pieces):
        if piece:
            literal = bool(i % 2)
            ids += tokenizer(literals[int(piece)] if literal else piece, add_special_tokens=False,
                             split_special_tokens=literal)["input_ids"]
    return ids


def encode_chat(tokenizer: "PreTrainedTokenizerBase", messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of :func:`render_chat`'s prompt, the messages' contents read as text
    (:func:`quote_specials`)."""
    text, special = render_chat(tokenizer, quote_specials(tokenizer, messages))
    return encode_rendered(tokenizer, text, special)
