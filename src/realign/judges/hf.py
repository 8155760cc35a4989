"""A local Hugging Face causal LM as the triage judge (docs/method.md, "Triage judge").

The model is asked the same question as every LLM judge (:func:`.prompting.judge_messages`:
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

import math
from typing import Sequence

from ..config import JudgeConfig
from ..modeling.chat import encode_chat
from ..modeling.sequences import char_budget, cut_middle_chars
from ..policy import Policy
from .base import JudgeItem, OnVerdict, Verdict
from .next_token import NextTokenJudgeModel, split_two
from .prompting import PROMPT_FORMAT_VERSION, judge_messages

YES_VARIANTS = ("Yes", " Yes", "yes", " yes")
NO_VARIANTS = ("No", " No", "no", " no")


class HFJudge(NextTokenJudgeModel):
    """π_new(y|x) from a local causal LM's next-token probabilities of "Yes" and "No".

    ``config.model`` is a hub id or a local directory; ``device``, ``dtype``, ``batch_size``
    and ``trust_remote_code`` come from the config. The tokenizer is loaded at construction
    (so a missing model or unusable vocabulary fails at once); the model is loaded on the
    first :meth:`judge` call, so a fully cached triage never loads it.
    """

    def __init__(self, config: JudgeConfig) -> None:
        super().__init__(config, {"Yes": YES_VARIANTS, "No": NO_VARIANTS}, PROMPT_FORMAT_VERSION)

    # -- inputs --------------------------------------------------------------------------
    def _encode(self, policy: Policy, item: JudgeItem) -> list[int]:
        return encode_chat(self.tokenizer, judge_messages(policy, item))

    def encode(self, policy: Policy, item: JudgeItem) -> tuple[list[int], str]:
        """Token ids of the judge's input for ``item``, fitted to the model's limit, and a
        note ("" or "truncated ...") saying what was cut (:meth:`fit`; the prompt stays whole
        unless it would take more than half the room the response needs). Texts of megabytes
        lose their middle to a character budget first, so the tokenizer never sees them whole."""
        limit = self.max_length
        if limit is not None:
            budget = char_budget(self.tokenizer, limit)
            item = JudgeItem(cut_middle_chars(item.prompt, budget), cut_middle_chars(item.response, budget))
        texts = (item.prompt, item.response)
        return self.fit(lambda t: self._encode(policy, JudgeItem(*t)), texts, ("prompt", "response"), split_two)

    # -- scoring -------------------------------------------------------------------------
    def judge(self, items: Sequence[JudgeItem], policy: Policy, on_verdict: OnVerdict | None = None) -> list[Verdict]:
        """One verdict per item, in order. Items are batched by length (longest first, so
        memory trouble shows at once); ``on_verdict(i, v)`` is called after each batch."""
        import torch

        encoded = [self.encode(policy, item) for item in items]
        verdicts: list[Verdict | None] = [None] * len(items)
        for batch, scores in self.scored_batches([ids for ids, _ in encoded]):
            p_no = torch.sigmoid(scores.log_p["No"] - scores.log_p["Yes"])  # = P(No) / (P(Yes) + P(No))
            for i, p, mass, top in zip(batch, p_no.tolist(), scores.log_mass.exp().tolist(), scores.top.tolist()):
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
