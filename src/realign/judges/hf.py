"""A local Hugging Face causal LM as the triage judge (METHOD.md, "Triage judge").

The model is asked the same question as every LLM judge (:func:`..prompting.judge_messages`:
the policy as system prompt, the fenced prompt and response, "is this response violating the
policy? Answer Yes or No"), rendered with the tokenizer's chat template. Instead of sampling an
answer, the judge reads the next-token distribution at the last position and compares the two
answers::

    P(compliant) = P(No) / (P(Yes) + P(No))

where P(Yes) pools the single-token spellings "Yes", " Yes", "yes", " yes" (likewise No), so
the result does not depend on whether a template ends with a space. The verdict is
``compliant = P(compliant) >= 0.5``; ``raw`` records P(No), the most likely answer token and
the probability mass the model put on the answer tokens at all (a low mass means the model
was not really answering Yes/No).

Inputs longer than the model's limit keep the instructions and the question intact: the judged
response (and, if it must, the judged prompt) is cut in the middle, and ``raw`` says so.
"""

from __future__ import annotations

import inspect
import math
from typing import Sequence

from ..config import JudgeConfig
from ..errors import JudgeError, RealignError
from ..models import (
    encode_chat,
    load_for_inference,
    load_tokenizer,
    max_input_length,
    model_fingerprint,
    pad_left,
    truncate_middle,
)
from ..policy import Policy
from .base import JudgeItem, OnVerdict, Verdict
from .prompting import PROMPT_FORMAT_VERSION, judge_messages

YES_VARIANTS = ("Yes", " Yes", "yes", " yes")
NO_VARIANTS = ("No", " No", "no", " no")
TRUNCATION_MARKER = "\n[...]\n"


def answer_token_ids(tokenizer, variants: Sequence[str]) -> list[int]:
    """Ids of the spellings in ``variants`` that encode to exactly one token (deduplicated)."""
    ids: list[int] = []
    for text in variants:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    return ids


class HFJudge:
    """π_new(y|x) from a local causal LM's next-token probabilities of "Yes" and "No".

    ``config.model`` is a hub id or a local directory; ``device``, ``dtype``, ``batch_size``
    and ``trust_remote_code`` come from the config. The tokenizer is loaded at construction
    (so a missing model or unusable vocabulary fails at once); the model is loaded on the
    first :meth:`judge` call, so a fully cached triage never loads it.
    """

    def __init__(self, config: JudgeConfig) -> None:
        if not config.model:
            raise JudgeError("judge.model: set the hub id or local path of the judge model (backend 'hf')")
        self.config = config
        try:
            self.tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
        except JudgeError:
            raise
        except RealignError as exc:
            raise JudgeError(f"judge: {exc}") from None
        self.yes_ids = answer_token_ids(self.tokenizer, YES_VARIANTS)
        self.no_ids = answer_token_ids(self.tokenizer, NO_VARIANTS)
        if not self.yes_ids or not self.no_ids:
            missing = "Yes" if not self.yes_ids else "No"
            raise JudgeError(
                f"judge model {config.model!r}: none of the spellings of {missing!r} is a single token "
                "in its vocabulary, so its answer cannot be read from one next-token distribution"
            )
        specials = set(self.tokenizer.all_special_tokens)
        specials |= {t.content for t in getattr(self.tokenizer, "added_tokens_decoder", {}).values() if t.special}
        self._specials = sorted((t for t in specials if len(t) > 1), key=len, reverse=True)
        fingerprint = model_fingerprint(config.model)
        self.identity = f"hf/{config.model}/{PROMPT_FORMAT_VERSION}" + (f"/{fingerprint}" if fingerprint else "")
        self.calls = 0
        self._model = None
        self._forward_kwargs: set[str] = set()

    # -- model ---------------------------------------------------------------------------
    @property
    def model(self):
        """The judge model, loaded on first use."""
        if self._model is None:
            self._model = load_for_inference(self.config, "judge")
            params = inspect.signature(self._model.forward).parameters
            self._forward_kwargs = {k for k in ("position_ids", "logits_to_keep") if k in params}
        return self._model

    @property
    def max_length(self) -> int | None:
        """Longest input the judge model takes (tokenizer and model limits)."""
        return max_input_length(self.model, self.tokenizer)

    # -- inputs --------------------------------------------------------------------------
    def _defuse(self, text: str) -> str:
        """Special-token strings inside judged text stay text: a response that writes
        "<|im_start|>system" must not become the model's own role tokens (a zero-width space
        after the first character keeps the tokenizer from matching them)."""
        for special in self._specials:
            if special in text:
                text = text.replace(special, special[0] + "\u200b" + special[1:])
        return text

    def _encode(self, policy: Policy, item: JudgeItem) -> list[int]:
        item = JudgeItem(self._defuse(item.prompt), self._defuse(item.response))
        return encode_chat(self.tokenizer, judge_messages(policy, item))

    def encode(self, policy: Policy, item: JudgeItem) -> tuple[list[int], str]:
        """Token ids of the judge's input for ``item``, fitted to the model's limit, and a
        note ("" or "truncated ...") saying what was cut."""
        ids = self._encode(policy, item)
        limit = self.max_length
        if limit is None or len(ids) <= limit:
            return ids, ""
        tok = self.tokenizer
        overhead = len(self._encode(policy, JudgeItem("", "")))
        marker = len(tok(TRUNCATION_MARKER, add_special_tokens=False)["input_ids"])
        available = limit - overhead - 2 * marker - 8
        if available <= 0:
            raise JudgeError(
                f"judge model {self.config.model!r}: the policy and judge instructions alone take {overhead} "
                f"tokens, more than the model's input limit of {limit} (shorten the policy or use a longer-context judge)"
            )
        p_len = len(tok(item.prompt, add_special_tokens=False)["input_ids"])
        r_len = len(tok(item.response, add_special_tokens=False)["input_ids"])
        # The prompt stays whole unless it would take more than half the room the response needs.
        p_keep = min(p_len, max(available // 2, available - r_len))
        r_keep = min(r_len, available - p_keep)
        for _ in range(16):
            prompt = item.prompt if p_keep >= p_len else truncate_middle(tok, item.prompt, p_keep, TRUNCATION_MARKER)
            response = (
                item.response if r_keep >= r_len else truncate_middle(tok, item.response, r_keep, TRUNCATION_MARKER)
            )
            ids = self._encode(policy, JudgeItem(prompt, response))
            excess = len(ids) - limit
            if excess <= 0:
                break
            # Re-tokenising at the cuts can shift a few tokens: take them from the response first.
            if r_keep > 0:
                r_keep = max(0, r_keep - excess - 2)
            else:
                p_keep = max(0, p_keep - excess - 2)
        else:  # pragma: no cover - the budget above converges in a step or two
            raise JudgeError(f"judge model {self.config.model!r}: cannot fit an input into {limit} tokens")
        parts = []
        if p_keep < p_len:
            parts.append(f"prompt kept {p_keep} of {p_len} tokens")
        if r_keep < r_len:
            parts.append(f"response kept {r_keep} of {r_len} tokens")
        return ids, "truncated (" + ", ".join(parts) + ")"

    # -- scoring -------------------------------------------------------------------------
    def _score(self, sequences: list[list[int]]) -> list[tuple[float, float, int]]:
        """(P(No | yes-or-no), answer mass, most likely answer token id) for each sequence."""
        import torch

        model = self.model
        device = next(model.parameters()).device
        input_ids, attention_mask, position_ids = pad_left(sequences, self.tokenizer.pad_token_id, device)
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask, "use_cache": False}
        if "position_ids" in self._forward_kwargs:
            kwargs["position_ids"] = position_ids
        if "logits_to_keep" in self._forward_kwargs:
            kwargs["logits_to_keep"] = 1
        try:
            logits = model(**kwargs).logits[:, -1, :].float()
        except torch.cuda.OutOfMemoryError:
            raise JudgeError(
                f"judge model {self.config.model!r}: out of GPU memory with batch_size={self.config.batch_size} "
                f"and inputs of {input_ids.shape[1]} tokens; lower judge.batch_size"
            ) from None
        yes = torch.tensor(self.yes_ids, device=logits.device)
        no = torch.tensor(self.no_ids, device=logits.device)
        answers = torch.cat([yes, no])
        log_yes = torch.logsumexp(logits[:, yes], dim=-1)
        log_no = torch.logsumexp(logits[:, no], dim=-1)
        p_no = torch.sigmoid(log_no - log_yes)  # = P(No) / (P(Yes) + P(No)), pooled over spellings
        mass = torch.exp(torch.logaddexp(log_yes, log_no) - torch.logsumexp(logits, dim=-1))
        top = answers[logits[:, answers].argmax(dim=-1)]
        return list(zip(p_no.tolist(), mass.tolist(), top.tolist()))

    def judge(self, items: Sequence[JudgeItem], policy: Policy, on_verdict: OnVerdict | None = None) -> list[Verdict]:
        """One verdict per item, in order. Items are batched by length (longest first, so
        memory trouble shows at once); ``on_verdict(i, v)`` is called after each batch."""
        import torch

        if not items:
            return []
        encoded = [self.encode(policy, item) for item in items]
        order = sorted(range(len(items)), key=lambda i: -len(encoded[i][0]))
        verdicts: list[Verdict | None] = [None] * len(items)
        size = self.config.batch_size
        with torch.inference_mode():
            for start in range(0, len(order), size):
                batch = order[start : start + size]
                scores = self._score([encoded[i][0] for i in batch])
                self.calls += len(batch)
                for i, (p, mass, top) in zip(batch, scores):
                    verdicts[i] = self._verdict(p, mass, top, encoded[i][1])
                    if on_verdict is not None:
                        on_verdict(i, verdicts[i])
        return verdicts  # type: ignore[return-value]

    def _verdict(self, p: float, mass: float, top: int, note: str) -> Verdict:
        if not math.isfinite(p):
            return Verdict(None, None, "non-finite logits" + (f"; {note}" if note else ""))
        raw = f"P(No)={p:.4f} top={self.tokenizer.decode([top])!r} mass={mass:.3g}"
        if note:
            raw += f"; {note}"
        return Verdict(compliant=p >= 0.5, p_compliant=p, raw=raw)
