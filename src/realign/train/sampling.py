"""Sampling the model and judging its samples: what the two baselines a practitioner would use
share (``self-distill``, ``online-dpo``; docs/method.md, "Baselines a practitioner would use"),
and what every training run spent (:class:`Budget`, train_summary.json's ``budget``).

Budgets are counted in units that do not depend on what a cache held, so that a resumed or
repeated run spends exactly what an uninterrupted one does: a *judgement* is one distinct
response judged (the verdict cache may answer it; the backend requests actually made are
counted apart as ``backend_calls``), and generated tokens are those of every sample used, from
the sample cache or not.

``self-distill``'s samples are a preparation step before training (:func:`prepare_samples`):
``samples.jsonl`` in the run folder, with ``samples.summary.json`` recording what produced it
(the key of the model, records, policy, judge and sampling settings) — reused only on an exact
match, like every stage output. Samples are kept in the sample cache as each batch is drawn and
verdicts in the verdict cache, so an interrupted preparation resumes where it stopped and draws
exactly what an uninterrupted one would (a batch is drawn whole, with its own seed).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from ..data import PreferencePair, Text, prompt_text, response_text
from ..runs.files import write_json, write_jsonl
from ..modeling.generation import generate, prompt_ids, prompt_room
from ..judges import make_judge
from ..judges.base import JudgeItem
from ..judges.cache import VerdictCache
from ..judges.store import JudgingCounts, VerdictStore, settle
from ..modeling.sequences import prompt_messages
from ..policy import Policy, resolve_policy
from ..runs.provenance import input_digest, model_digest, provenance, what_changed
from ..runs.stage import output_digests, outputs_changed, summary_path
from ..data.triaged import old_pair
from .methods import JudgedSample


@dataclass
class Budget:
    """What a training run spent: ``judgements`` (distinct responses judged: the budget's unit),
    ``backend_calls`` (requests the judge backend made in this run: cache misses and retries),
    ``generated_tokens`` (of every sample used), ``training_tokens`` (non-padding tokens of every
    sequence in a training forward pass) and ``train_s`` (seconds of training kept in the last
    checkpoint and after it: work lost to an interruption is not counted)."""

    judgements: int = 0
    backend_calls: int = 0
    generated_tokens: int = 0
    training_tokens: int = 0
    train_s: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Budget":
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def old_prompts(records: Sequence[PreferencePair]) -> list[Text]:
    """The records' distinct prompts (by text), in record order: all the sampling methods read of them."""
    seen: dict[str, Text] = {}
    for r in records:
        seen.setdefault(prompt_text(r.prompt), r.prompt)
    return list(seen.values())


def triage_judgements(records: Sequence[PreferencePair]) -> int:
    """The judgements a triage of ``records`` takes: one per distinct (prompt, response) of the
    triaged records' old pairs — TRACE's judge budget (and that of every method trained on the
    triage), counted from the records themselves so that it holds however they were triaged."""
    items = set()
    for r in records:
        if r.category is not None:
            x, y_w, y_l = old_pair(r)
            items |= {(prompt_text(x), response_text(y_w)), (prompt_text(x), response_text(y_l))}
    return len(items)


class Sampler:
    """Samples a model under the run's sampling settings and judges the samples under its policy,
    adding what both cost to ``budget``."""

    def __init__(self, config, model, tokenizer, budget: Budget, cache, progress: bool = False) -> None:
        self.settings = config.sampling
        self.model, self.tokenizer, self.budget, self.cache = model, tokenizer, budget, cache
        self.policy = Policy.load(resolve_policy(config.policy))
        self.judge_config = config.judge
        self.store = VerdictStore(make_judge(config.judge), self.policy, cache, progress=progress)

    def guided(self, prompt: Text) -> Text:
        """The prompt as sampled: with the policy text as the system message when ``system_prompt`` is on."""
        if not self.settings.system_prompt:
            return prompt
        return [{"role": "system", "content": self.policy.text}, *prompt_messages(prompt)]

    def generate(self, prompts: Sequence[Text], seed: int) -> list[str]:
        """One sample per prompt (guided), in one batch, seeded by ``seed`` alone; the global RNG
        (the trainer's dropout and data order) is left as it was."""
        import torch

        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            return generate(self.model, self.tokenizer, [self.guided(p) for p in prompts],
                            max_new_tokens=self.settings.max_new_tokens, batch_size=max(1, len(prompts)),
                            temperature=self.settings.temperature, seed=seed)

    def count_tokens(self, texts: Sequence[str]) -> None:
        """Add the samples' lengths (re-tokenised) to the generated tokens."""
        self.budget.generated_tokens += sum(len(self.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)

    def judge(self, prompts: Sequence[Text], responses: Sequence[str]) -> list[bool | None]:
        """The judge's verdict on each (prompt, response), each distinct one judged once and counted
        once as a judgement. An abstention is settled by the judge's ``on_unparseable`` rule
        (``violating``, ``compliant``); under ``retry`` or ``drop`` it is None: left out."""
        items = [JudgeItem(prompt_text(p), r) for p, r in zip(prompts, responses)]
        unique = list(dict.fromkeys(items))
        stats = JudgingCounts()
        verdicts = dict(zip(unique, self.store.resolve(unique, stats)))
        self.budget.judgements += len(unique)
        self.budget.backend_calls += stats.judge_calls
        rule = self.judge_config.on_unparseable
        return [settle(verdicts[it], "drop" if rule == "retry" else rule) for it in items]

    def affordable(self, judgements: int) -> bool:
        """Whether the judge budget pays for ``judgements`` more."""
        cap = self.settings.judge_budget
        return cap is None or self.budget.judgements + judgements <= cap


# --------------------------------------------------------------------------- self-distill's preparation


def samples_produced_by(config) -> dict:
    """What produces self-distill's samples: the model, adapter and records (by content), the
    policy and the judge (hash, identity), the seed and the settings that change a sample or a
    verdict — not the training settings, so a changed learning rate reuses them."""
    settings = config.sampling.model_dump(mode="json", exclude={"on_budget", "objective"})
    body = {"config": {**settings, "seed": config.seed},
            "inputs": {"data": input_digest(config.data), "model": model_digest(config.model),
                       "adapter": model_digest(config.adapter), "policy": Policy.load(resolve_policy(config.policy)).hash,
                       "judge": make_judge(config.judge).identity}}
    key = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"key": key, **body}


def prepare_samples(config, records: Sequence[PreferencePair], model, tokenizer, budget: Budget,
                    progress: bool = True) -> tuple[list[JudgedSample], dict]:
    """self-distill's judged samples of the starting model (see the module docstring): read back
    when ``samples.jsonl`` was produced by the same inputs and settings, else drawn. Adds their
    cost to ``budget``; returns the samples and their summary."""
    out = Path(config.out) / "samples.jsonl"
    made = samples_produced_by(config)
    if summary_path(out).exists():
        summary = json.loads(summary_path(out).read_text(encoding="utf-8"))
        before = summary.get("produced_by")
        stale = what_changed(before, made) if (before or {}).get("key") != made["key"] else outputs_changed(
            summary_path(out), summary.get("outputs"))
        if stale is None:
            for name in ("judgements", "backend_calls", "generated_tokens"):
                setattr(budget, name, getattr(budget, name) + summary["budget"][name])
            return _read_samples(out), summary
        print(f"train: drawing the samples again ({stale})", file=sys.stderr)
    with VerdictCache(config.cache_path(), commit_every=32) as cache:
        return _draw(config, old_prompts(records), model, tokenizer, budget, cache, made, progress)


def _draw(config, prompts: list[Text], model, tokenizer, budget: Budget, cache, made: dict,
          progress: bool) -> tuple[list[JudgedSample], dict]:
    """Round r = 0..samples-1 draws one more sample of every prompt the remaining budget still
    covers (prompts in a seeded order, so a budget short of a round spreads over random prompts),
    and judges the new distinct ones; stops when the budget is spent."""
    start = time.perf_counter()
    own = Budget()
    sampler = Sampler(config, model, tokenizer, own, cache, progress=False)
    order = list(range(len(prompts)))
    random.Random(config.seed).shuffle(order)
    kept: list[JudgedSample] = []
    seen: set[tuple[str, str]] = set()
    for round_ in range(config.sampling.samples):
        room = len(order) if config.sampling.judge_budget is None else config.sampling.judge_budget - own.judgements
        todo = [prompts[i] for i in order[: max(0, min(len(order), room))]]
        if not todo:
            break
        texts = _cached_samples(sampler, todo, f"{made['key']}/round{round_}", config.seed * 1009 + round_)
        sampler.count_tokens(texts)
        new = [(p, t) for p, t in dict.fromkeys((prompt_text(p), t) for p, t in zip(todo, texts)) if (p, t) not in seen]
        seen.update(new)
        by_text = {prompt_text(p): p for p in todo}
        verdicts = sampler.judge([by_text[p] for p, _ in new], [t for _, t in new])
        kept += [JudgedSample(by_text[p], t, v) for (p, t), v in zip(new, verdicts)]
        if progress:
            print(f"self-distill: round {round_ + 1}: {len(todo)} samples, {own.judgements} judged so far", file=sys.stderr)
    out = Path(config.out) / "samples.jsonl"
    write_jsonl(out, [{"prompt": s.prompt, "response": s.response, "compliant": s.compliant} for s in kept])
    summary = {
        "stage": "self-distill samples", "prompts": len(prompts), "samples": len(kept),
        "passed": sum(s.compliant is True for s in kept), "failed": sum(s.compliant is False for s in kept),
        "abstained": sum(s.compliant is None for s in kept), "budget": own.to_dict(),
        "judge": sampler.store.judge.identity, "wall_s": round(time.perf_counter() - start, 3),
        "produced_by": made, "provenance": provenance(),
        "outputs": output_digests(summary_path(out), [out]),
    }
    write_json(summary_path(out), summary)
    for name in ("judgements", "backend_calls", "generated_tokens"):
        setattr(budget, name, getattr(budget, name) + getattr(own, name))
    return kept, summary


def _cached_samples(sampler: Sampler, prompts: list[Text], identity: str, seed: int) -> list[str]:
    """One sample per prompt, drawn in fixed batches (sorted by prompt length) with a seed per
    batch; a batch whose samples are all in the cache is read from it, any other is drawn whole
    again, so an interrupted run resumes to exactly what an uninterrupted one draws."""
    room = prompt_room(sampler.model, sampler.tokenizer, sampler.settings.max_new_tokens)
    length = [len(prompt_ids(sampler.tokenizer, sampler.guided(p), room)[0]) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: length[i])
    size = sampler.settings.batch_size
    keys, cache = [prompt_text(p) for p in prompts], sampler.cache
    out: list[str] = [""] * len(prompts)
    for number, first in enumerate(range(0, len(order), size)):
        batch = order[first : first + size]
        texts = [cache.get_generation(identity, "", keys[i]) for i in batch]
        if any(t is None for t in texts):
            texts = sampler.generate([prompts[i] for i in batch], seed * 100_003 + number)
            for i, text in zip(batch, texts):
                cache.put_generation(identity, "", keys[i], text)
            cache.commit()
        for i, text in zip(batch, texts):
            out[i] = text
    return out


def _read_samples(path: Path) -> list[JudgedSample]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [JudgedSample(r["prompt"], r["response"], r["compliant"]) for r in rows]
