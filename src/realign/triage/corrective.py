"""Corrective responses (docs/method.md, "Corrective responses"): a compliant response y_c for
each PUNISH pair without an oracle, so the pair trains as (x, y_c ≻ y_w) rather than by dual NPO
alone — the positive target a PUNISH-heavy shift otherwise lacks.

Candidates come from ``corrective.sources``, tried in order (a later source only for the
prompts still without y_c); every candidate is written for its own prompt, so it answers what
was asked:

* ``old-responses`` — another old response to the exact same prompt that the triage's judge
  found compliant (no generation, no new judge call);
* ``samples`` — the model's own samples (best-of-n at ``temperature``);
* ``style-prefix`` — the model's samples continued from the opening words of compliant
  responses found elsewhere in the data (INVERT winners first, then RETAIN chosen): the
  behaviour the old data does show, started for this prompt and finished by the model (with
  ``opening``, the model first writes its own opening, then the prefix);
* ``system-prompt`` — the model's samples with the policy text as system prompt.

Generated candidates are judged with the run's judge (verdict cache first), likeliest first
(mean token log-prob), a few per prompt per round, until one passes: of a source's compliant
candidates the model's likeliest becomes y_c, stored in the
record's ``corrective`` with its provenance (source, judge identity, verdict, prefix, model).
Generations are cached per (prompt, source, prefix), so a rerun generates nothing.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ..data import INVERT, PUNISH, RETAIN, PreferencePair, Text, as_response, prompt_text, response_text
from ..errors import RealignError
from ..modeling.generation import prompt_ids, prompt_room
from ..judges.base import Judge, JudgeItem
from ..judges.cache import VerdictCache
from ..judges.store import VerdictStore
from ..modeling.loading import load_causal_lm, load_tokenizer
from ..modeling.sequences import pad_left, prompt_messages
from ..policy import Policy
from ..runs.provenance import model_digest
from ..runs.stage import pad_token_id
from .judging import TriageStats

MODEL_SOURCES = ("samples", "style-prefix", "system-prompt")
GENERATION_VERSION = "corrective-v1"
"""Version of the candidate generation; part of every generation-cache identity."""


@dataclass(frozen=True)
class Candidate:
    """One candidate y_c for a prompt: its text, the style prefix it was continued from, the
    model's mean token log-prob of what it wrote (None for old responses) and tokens generated."""

    text: str
    prefix: str | None = None
    logprob: float | None = None
    tokens: int = 0
    origin: str | None = None
    verdict: dict | None = None


def style_prefixes(records: Sequence[PreferencePair], words: int, limit: int, opening: str | None) -> list[str]:
    """The first ``words`` words of the compliant responses in the data (after ``opening``, the
    part about their own prompt): those of INVERT winners first, then of RETAIN chosen, each
    group by frequency; at most ``limit`` distinct ones."""
    cut = re.compile(opening) if opening else None
    ordered: list[str] = []
    for category in (INVERT, RETAIN):
        counts: Counter[str] = Counter()
        for r in records:
            if r.category != category or not _compliant(r, "chosen"):
                continue
            text = response_text(r.chosen)
            if cut is not None and (m := cut.match(text)):
                text = text[m.end():]
            head = " ".join(text.split()[:words])
            if head:
                counts[head] += 1
        ordered += [p for p, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if p not in ordered]
    return ordered[:limit]


def _compliant(record: PreferencePair, side: str) -> bool:
    return bool(((record.verdicts or {}).get(side) or {}).get("compliant"))


def old_response_candidates(records: Sequence[PreferencePair], prompts: Sequence[str]) -> dict[str, list[Candidate]]:
    """Source ``old-responses``: for each prompt, the old responses to exactly that prompt the
    triage found compliant (in record order, each once), with the id of their record."""
    wanted = set(prompts)
    out: dict[str, list[Candidate]] = {}
    for r in records:
        x = prompt_text(r.prompt)
        if x not in wanted:
            continue
        for side in ("chosen", "rejected"):
            text = response_text(getattr(r, side))
            if _compliant(r, side) and all(c.text != text for c in out.get(x, [])):
                out.setdefault(x, []).append(Candidate(text, origin=r.id, verdict=r.verdicts[side]))
    return out


class Sampler:
    """The model's candidates for prompts (sources ``samples``, ``style-prefix`` and
    ``system-prompt``): ``config.samples`` samples per prompt and prefix at
    ``config.temperature``, each with the model's mean token log-prob of what it wrote; cached
    in the verdict cache's generations, keyed by the model's content, the settings, the source
    and the prefix."""

    def __init__(self, config, policy: Policy, cache: VerdictCache) -> None:
        if config.model is None:
            raise RealignError("triage: field 'corrective.model': required by the sources "
                               f"{', '.join(s for s in config.sources if s in MODEL_SOURCES)} (the model that samples)")
        self.config, self.policy, self.cache = config, policy, cache
        self.tokenizer = load_tokenizer(config.model)
        self.model = load_causal_lm(config.model, device=config.device, dtype="float32")
        self.identity = (f"{GENERATION_VERSION}/{model_digest(config.model)}/n={config.samples}/"
                         f"t={config.temperature:g}/max={config.max_new_tokens}/seed={config.seed}")

    def candidates(self, source: str, prompts: dict[str, Text], prefixes: Sequence[str] = ()) -> dict[str, list[Candidate]]:
        """``{prompt key: candidates}`` of ``source`` for ``prompts`` (key -> prompt)."""
        system = self.policy.text.strip() if source == "system-prompt" else None
        heads = {x: [""] for x in prompts}
        if source == "style-prefix":
            openings = self.openings(prompts) if self.config.opening else {x: "" for x in prompts}
            heads = {x: [f"{openings[x]} {p}".strip() for p in prefixes] for x in prompts}
        jobs = [(x, head) for x in prompts for head in heads[x]]
        out: dict[str, list[Candidate]] = {x: [] for x in prompts}
        for (x, head), made in zip(jobs, self._sampled(source, jobs, prompts, system)):
            out[x] += [Candidate(text, head or None, lp, n) for text, lp, n in made]
        return out

    def openings(self, prompts: dict[str, Text]) -> dict[str, str]:
        """The start of the model's own greedy response to each prompt that ``config.opening``
        matches ("" where it does not): what the response says about its own prompt."""
        pattern = re.compile(self.config.opening)
        made = self._sampled("opening", [(x, "") for x in prompts], prompts, None, greedy=True)
        return {x: (m.group(0).strip() if (m := pattern.match(texts[0][0])) else "") for x, texts in zip(prompts, made)}

    def _sampled(self, source: str, jobs: list[tuple[str, str]], prompts: dict[str, Text], system: str | None,
                 greedy: bool = False) -> list[list[tuple[str, float | None, int]]]:
        """For each (prompt key, prefix) job: [(text, mean log-prob, tokens)] from the cache, else
        generated (in batches) and cached."""
        ident = f"{self.identity}/{source}"
        keys = [f"{head}\x00{x}" for x, head in jobs]
        out = [json.loads(hit) if (hit := self.cache.get_generation(ident, self.policy.hash, k)) else None for k in keys]
        todo = [i for i, o in enumerate(out) if o is None]
        size = max(1, self.config.batch_size // (1 if greedy else self.config.samples))
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            made = self._generate([prompts[jobs[i][0]] for i in batch], [jobs[i][1] for i in batch], system,
                                  greedy, seed=self.config.seed * 100_003 + start)
            for i, texts in zip(batch, made):
                out[i] = texts
                self.cache.put_generation(ident, self.policy.hash, keys[i], json.dumps(texts))
            self.cache.commit()
        return out  # type: ignore[return-value]

    def _generate(self, prompts: list[Text], heads: list[str], system: str | None, greedy: bool,
                  seed: int) -> list[list[tuple[str, float | None, int]]]:
        """Samples (one greedy response with ``greedy``) for each prompt, continuing its
        ``head``; the text returned is the head and the continuation, decoded together."""
        import torch

        n = 1 if greedy else self.config.samples
        room = prompt_room(self.model, self.tokenizer, self.config.max_new_tokens)
        starts, heads_ids = [], []
        for prompt, head in zip(prompts, heads):
            messages = ([{"role": "system", "content": system}] if system else []) + prompt_messages(prompt)
            ids = prompt_ids(self.tokenizer, messages, room)[0]
            head_ids = self.tokenizer(head, add_special_tokens=False)["input_ids"] if head else []
            starts += [ids + head_ids] * n
            heads_ids += [head_ids] * n
        pad = pad_token_id(self.tokenizer)
        device = next(self.model.parameters()).device
        ids, mask, _ = pad_left(starts, pad, device)
        sampling = {"do_sample": False} if greedy else {
            "do_sample": True, "temperature": self.config.temperature, "top_k": 0, "top_p": 1.0}
        torch.manual_seed(seed)
        with torch.no_grad():
            gen = self.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=self.config.max_new_tokens,
                                      pad_token_id=pad, eos_token_id=self.tokenizer.eos_token_id,
                                      return_dict_in_generate=True, output_logits=True, **sampling)
        new = gen.sequences[:, ids.shape[1]:]
        logp = torch.stack(gen.logits, dim=1).float().log_softmax(-1).gather(-1, new.unsqueeze(-1)).squeeze(-1)
        texts = []
        for row in range(new.shape[0]):
            length = _length(new[row].tolist(), self.tokenizer.eos_token_id)
            text = self.tokenizer.decode(heads_ids[row] + new[row, :length].tolist(), skip_special_tokens=True).strip()
            texts.append((text, float(logp[row, :length].mean()) if length else None, length))
        return [texts[j * n:(j + 1) * n] for j in range(len(prompts))]


def _length(tokens: list[int], eos: int | None) -> int:
    """Tokens generated up to and including the first eos (all of them when there is none)."""
    return tokens.index(eos) + 1 if eos is not None and eos in tokens else len(tokens)


def attach_corrective(records: Sequence[PreferencePair], config, policy: Policy, judge: Judge, cache: VerdictCache,
                      stats: TriageStats, progress: bool = True) -> dict:
    """Find y_c for the PUNISH records (in place: ``record.corrective``), source by source in
    ``config.sources`` order; returns the summary: per source the prompts asked, found,
    candidates, tokens generated and judge calls, and the pairs with and without y_c."""
    punish = [r for r in records if r.category == PUNISH]
    prompts: dict[str, Text] = {}
    for r in punish:
        prompts.setdefault(prompt_text(r.prompt), r.prompt)
    store = VerdictStore(judge, policy, cache, progress)
    found: dict[str, dict] = {}
    per_source: dict[str, dict] = {}
    sampler = None
    for source in config.sources:
        todo = {x: p for x, p in prompts.items() if x not in found}
        before = stats.judge_calls
        if source == "old-responses" or not todo:
            made = old_response_candidates(records, list(todo)) if todo else {}
        else:
            sampler = sampler or Sampler(config, policy, cache)
            prefixes = style_prefixes(records, config.prefix_words, config.prefixes, config.opening)
            made = sampler.candidates(source, todo, prefixes)
        candidates = _fluent(made, config.min_logprob)
        chosen, judged = _best_compliant(source, candidates, store, stats, judge.identity,
                                         verified=source == "old-responses", chunk=config.judge_chunk)
        found.update(chosen)
        per_source[source] = {
            "prompts": len(todo), "found": len(chosen), "candidates": sum(len(c) for c in made.values()),
            **({"fluent": sum(len(c) for c in candidates.values())} if config.min_logprob is not None else {}),
            "generated_tokens": sum(c.tokens for cs in made.values() for c in cs),
            "judged": judged, "judge_calls": stats.judge_calls - before,
            **({"prefixes": prefixes} if source == "style-prefix" and todo else {})}
    for r in punish:
        hit = found.get(prompt_text(r.prompt))
        r.corrective = None if hit is None else {**hit, "response": as_response(hit["response"], r.chosen)}
    with_y_c = sum(r.corrective is not None for r in punish)
    return {"sources": per_source, "punish_pairs": len(punish), "punish_prompts": len(prompts),
            "pairs_with_y_c": with_y_c, "pairs_without_y_c": len(punish) - with_y_c, "judge": judge.identity,
            "model": sampler.identity if sampler is not None else None}


def _fluent(candidates: dict[str, list[Candidate]], floor: float | None) -> dict[str, list[Candidate]]:
    """The candidates whose mean token log-prob is at least ``floor`` (all of them when None;
    old responses, which have none, always)."""
    if floor is None:
        return candidates
    return {x: [c for c in cs if c.logprob is None and c.origin or c.logprob is not None and c.logprob >= floor]
            for x, cs in candidates.items()}


def _best_compliant(source: str, candidates: dict[str, list[Candidate]], store: VerdictStore, stats: TriageStats,
                    judge_identity: str, verified: bool = False, chunk: int | None = None) -> tuple[dict[str, dict], int]:
    """``{prompt key: corrective record}`` and the number of distinct candidates judged (from
    the verdict cache or by the judge): per prompt, of the candidates the judge finds
    compliant, the model's likeliest (the first, for old responses). ``verified``: the
    candidates' verdicts are the triage's own (old responses), so none is judged again.

    Candidates are judged likeliest first, ``chunk`` per prompt per round (all prompts' chunks in
    one batch, so a remote judge stays concurrent), and a prompt stops at the round that finds a
    compliant one: every likelier candidate was judged before it, so the y_c is the one judging
    every candidate would pick, for fewer calls. ``chunk`` None judges every candidate in one round."""
    out: dict[str, dict] = {}
    if verified:
        for x, cs in candidates.items():
            ok = [c for c in cs if c.text.strip()]
            if ok:
                out[x] = _corrective_record(ok[0], source, judge_identity, ok[0].verdict)
        return out, 0
    # likeliest first; a stable sort keeps ties in order, as max() over them would pick the first
    ranked = {x: sorted((c for c in cs if c.text.strip()),
                        key=lambda c: -(c.logprob if c.logprob is not None else float("-inf")))
              for x, cs in candidates.items()}
    open_prompts = [x for x, cs in ranked.items() if cs]
    verdicts: dict[JudgeItem, object] = {}
    start = 0
    while open_prompts:
        stop = None if chunk is None else start + chunk
        windows = {x: ranked[x][start:stop] for x in open_prompts}
        unique = list(dict.fromkeys(JudgeItem(x, c.text) for x, cs in windows.items() for c in cs))
        unique = [item for item in unique if item not in verdicts]
        if unique:
            verdicts.update(zip(unique, store.resolve(unique, stats)))
        still_open = []
        for x, window in windows.items():
            hit = next((c for c in window if verdicts[JudgeItem(x, c.text)].compliant), None)
            if hit is not None:
                out[x] = _corrective_record(hit, source, judge_identity, verdicts[JudgeItem(x, hit.text)].to_dict())
            elif stop is not None and stop < len(ranked[x]):
                still_open.append(x)
        open_prompts, start = still_open, stop
    return out, len(verdicts)


def _corrective_record(best: Candidate, source: str, judge_identity: str, verdict: dict | None) -> dict:
    """What a record keeps of its y_c: the text and where it came from."""
    return {"response": best.text, "source": source, "judge": judge_identity, "verdict": verdict,
            **({"prefix": best.prefix} if best.prefix else {}),
            **({"logprob": round(best.logprob, 4)} if best.logprob is not None else {}),
            **({"from": best.origin} if best.origin else {})}
