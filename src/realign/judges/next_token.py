"""A local causal LM read at its next token: the machinery the Yes/No triage judge
(:class:`.hf.HFJudge`) and the A/B pairwise judge (:class:`.pairwise.HFPairwiseJudge`)
share. Each asks one question whose answer is one of two words and reads the answer from the
next-token distribution at the last position instead of sampling it::

    log P(answer) = logsumexp over the single-token spellings of the answer

so the result does not depend on whether a chat template ends with a space.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Iterator, NamedTuple, Sequence

from ..config import JudgeConfig
from ..errors import JudgeError, RealignError
from ..modeling.chat import CHAT_ENCODING
from ..modeling.loading import load_for_inference, load_tokenizer
from ..modeling.sequences import max_input_length, pad_left, truncate_middle
from ..modeling.sources import model_fingerprint

#: What stands where a judged text lost its middle.
TRUNCATION_MARKER = "\n[...]\n"


def answer_token_ids(tokenizer, variants: Sequence[str]) -> list[int]:
    """Ids of the spellings in ``variants`` that encode to exactly one token (deduplicated)."""
    ids: list[int] = []
    for text in variants:
        encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(encoded) == 1 and encoded[0] not in ids:
            ids.append(encoded[0])
    return ids


def split_two(room: int, lengths: Sequence[int]) -> list[int]:
    """Tokens each of two texts of ``lengths`` keeps in ``room``: the first stays whole unless it
    would take more than half the room the second needs; the second takes the rest."""
    first = min(lengths[0], max(room // 2, room - lengths[1]))
    return [first, min(lengths[1], room - first)]


class AnswerScores(NamedTuple):
    """The next-token distribution of a batch, read at the answers (tensors of shape [B])."""

    log_p: dict[str, Any]  #: answer name -> log P(answer), its spellings pooled
    log_mass: Any  #: log of the probability mass on all answers' spellings together
    top: Any  #: the most likely answer spelling's token id


class NextTokenJudgeModel:
    """The tokenizer (loaded at construction, so a missing model or an unusable vocabulary
    fails at once), the single-token ids of each answer, an identity for verdict caches, and
    the model, loaded on first use (so a fully cached run never loads it).

    ``answers`` maps each answer's name to its spellings; ``format_version`` is the version of
    the question's wording, part of :attr:`identity`.
    """

    def __init__(self, config: JudgeConfig, answers: dict[str, Sequence[str]], format_version: str) -> None:
        if not config.model:
            raise JudgeError("judge.model: set the hub id or local path of the judge model (backend 'hf')")
        self.config = config
        try:
            self.tokenizer = load_tokenizer(config.model, trust_remote_code=config.trust_remote_code)
        except JudgeError:
            raise
        except RealignError as exc:
            raise JudgeError(f"judge: {exc}") from None
        self.answer_ids = {name: answer_token_ids(self.tokenizer, spellings) for name, spellings in answers.items()}
        missing = [name for name, ids in self.answer_ids.items() if not ids]
        if missing:
            raise JudgeError(
                f"judge model {config.model!r}: none of the spellings of {missing[0]!r} is a single token "
                "in its vocabulary, so its answer cannot be read from one next-token distribution"
            )
        fingerprint = model_fingerprint(config.model)
        identity = f"hf/{config.model}/{format_version}/{CHAT_ENCODING}"
        self.identity = identity + (f"/{fingerprint}" if fingerprint else "")
        self.calls = 0
        self._model = None
        self._forward_kwargs: set[str] = set()

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

    def fit(
        self,
        render: Callable[[Sequence[str]], list[int]],
        texts: Sequence[str],
        names: Sequence[str],
        allot: Callable[[int, list[int]], list[int]],
    ) -> tuple[list[int], str]:
        """Token ids of ``render(texts)`` (the question around the judged texts, the first of
        them the prompt) fitted to the model's limit, and a note ("" or "truncated (...)")
        saying what was cut. Over the limit the instructions stay intact: text ``i`` keeps the
        ``allot(room, lengths)[i]`` tokens of its head and tail (:func:`~..modeling.sequences.truncate_middle`);
        when re-tokenising at the cuts still overshoots, the response keeping most loses the
        excess (the prompt only once the responses are empty)."""
        ids = render(texts)
        limit = self.max_length
        if limit is None or len(ids) <= limit:
            return ids, ""
        tok = self.tokenizer
        overhead = len(render([""] * len(texts)))
        marker = len(tok(TRUNCATION_MARKER, add_special_tokens=False)["input_ids"])
        room = limit - overhead - len(texts) * (marker + 4)
        if room <= 0:
            raise JudgeError(
                f"judge model {self.config.model!r}: the policy and judge instructions alone take {overhead} "
                f"tokens, more than the model's input limit of {limit} (shorten the policy or use a longer-context judge)"
            )
        lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
        keep = allot(room, lengths)
        for _ in range(16):
            cut = [t if k >= n else truncate_middle(tok, t, k, TRUNCATION_MARKER) for t, k, n in zip(texts, keep, lengths)]
            ids = render(cut)
            excess = len(ids) - limit
            if excess <= 0:
                break
            # Re-tokenising at the cuts can shift a few tokens.
            j = max(range(1, len(texts)), key=lambda x: keep[x]) if any(keep[1:]) else 0
            keep[j] = max(0, keep[j] - excess - 2)
        else:  # pragma: no cover - the budget above converges in a step or two
            raise JudgeError(f"judge model {self.config.model!r}: cannot fit an input into {limit} tokens")
        parts = [f"{name} kept {k} of {n} tokens" for name, k, n in zip(names, keep, lengths) if k < n]
        return ids, "truncated (" + ", ".join(parts) + ")"

    def answer_scores(self, sequences: list[list[int]]) -> AnswerScores:
        """The answers' pooled log-probabilities for a batch of token-id sequences, read at
        the last position of each (left-padded) sequence. Counts the calls."""
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
            with torch.inference_mode():
                logits = model(**kwargs).logits[:, -1, :].float()
        except torch.cuda.OutOfMemoryError:
            raise JudgeError(
                f"judge model {self.config.model!r}: out of GPU memory with batch_size={self.config.batch_size} "
                f"and inputs of {input_ids.shape[1]} tokens; lower judge.batch_size"
            ) from None
        self.calls += len(sequences)
        log_p = {name: torch.logsumexp(logits[:, ids], dim=-1) for name, ids in self.answer_ids.items()}
        every = torch.tensor([i for ids in self.answer_ids.values() for i in ids], device=logits.device)
        log_mass = torch.logsumexp(logits[:, every], dim=-1) - torch.logsumexp(logits, dim=-1)
        return AnswerScores(log_p, log_mass, every[logits[:, every].argmax(dim=-1)])

    def scored_batches(self, sequences: list[list[int]]) -> Iterator[tuple[list[int], AnswerScores]]:
        """:meth:`answer_scores` over all ``sequences``, ``config.batch_size`` at a time and
        longest first (so memory trouble shows at once): ``(positions in sequences, scores)``."""
        order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
        size = self.config.batch_size
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            yield batch, self.answer_scores([sequences[i] for i in batch])
