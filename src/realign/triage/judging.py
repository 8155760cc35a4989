"""Judging the pairs: each unique response judged once (cache first, then the judge), the
abstentions retried or settled by the ``on_unparseable`` rule, and each pair categorised
(Alg. 1 lines 3-6)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

from tqdm.auto import tqdm

from ..config import UnparseableRule
from ..data import PreferencePair, prompt_text, response_text
from ..judges.base import Judge, JudgeItem, Verdict
from ..judges.cache import VerdictCache
from ..policy import Policy
from . import INVERT, PUNISH, RETAIN, categorise, old_pair


@dataclass
class TriageStats:
    pairs: int = 0
    responses: int = 0
    cache_hits: int = 0
    judged: int = 0
    judge_calls: int = 0
    abstentions: int = 0
    abstentions_resolved: int = 0
    dropped: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: {INVERT: 0, PUNISH: 0, RETAIN: 0})
    wall_s: float = 0.0

    def to_dict(self) -> dict:
        return {
            "pairs": self.pairs,
            "counts": self.counts,
            "unique_responses": self.responses,
            "cache_hits": self.cache_hits,
            "judged": self.judged,
            "judge_calls": self.judge_calls,
            "abstentions": self.abstentions,
            "abstentions_resolved_by_retry": self.abstentions_resolved,
            "dropped": len(self.dropped),
            "dropped_examples": self.dropped[:20],
            "wall_s": round(self.wall_s, 3),
        }


class VerdictStore:
    """Verdicts for unique (prompt, response) items: cache first, then the judge."""

    def __init__(self, judge: Judge, policy: Policy, cache: VerdictCache, progress: bool = True) -> None:
        self.judge, self.policy, self.cache, self.progress = judge, policy, cache, progress

    def resolve(self, items: Sequence[JudgeItem], stats: TriageStats, *, fresh: bool = False) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(items)
        if not fresh:
            for i, v in self.cache.get_many(self.judge.identity, self.policy.hash, items).items():
                verdicts[i] = v
        missing = [i for i, v in enumerate(verdicts) if v is None]
        stats.cache_hits += len(items) - len(missing)
        if missing:
            todo = [items[i] for i in missing]
            bar = tqdm(total=len(todo), desc="judging", unit="resp", disable=not self.progress, file=sys.stderr)
            calls_before = self.judge.calls

            def store(j: int, verdict: Verdict) -> None:
                verdicts[missing[j]] = verdict
                self.cache.put(self.judge.identity, self.policy.hash, todo[j], verdict)
                bar.update(1)

            try:
                self.judge.judge(todo, self.policy, on_verdict=store)
            finally:
                self.cache.commit()
                bar.close()
                stats.judge_calls += self.judge.calls - calls_before
            stats.judged += len(todo)
        assert all(v is not None for v in verdicts), "judge returned fewer verdicts than items"
        return verdicts  # type: ignore[return-value]


def _settle(verdict: Verdict, rule: UnparseableRule) -> bool | None:
    """Apply the ``on_unparseable`` rule to an abstention; None means drop the pair."""
    if verdict.compliant is not None:
        return verdict.compliant
    return {"violating": False, "compliant": True}.get(rule)


def triage(
    pairs: Sequence[PreferencePair],
    policy: Policy,
    judge: Judge,
    cache: VerdictCache,
    *,
    on_unparseable: UnparseableRule = "retry",
    unparseable_retries: int = 2,
    progress: bool = True,
) -> tuple[list[PreferencePair], TriageStats]:
    """Judge both responses of every pair and assign INVERT / PUNISH / RETAIN. Input records
    that were triaged before are taken in their old order (:func:`old_pair`)."""
    start = time.perf_counter()
    stats = TriageStats(pairs=len(pairs))
    pairs = [replace(p, chosen=w, rejected=l, swapped=False) for p in pairs for _, w, l in [old_pair(p)]]
    index: dict[JudgeItem, int] = {}
    for pair in pairs:
        x = prompt_text(pair.prompt)
        for response in (pair.chosen, pair.rejected):
            index.setdefault(JudgeItem(x, response_text(response)), len(index))
    items = list(index)
    stats.responses = len(items)
    store = VerdictStore(judge, policy, cache, progress)
    verdicts = store.resolve(items, stats)
    stats.abstentions = sum(v.abstained for v in verdicts)
    if on_unparseable == "retry":
        _retry_abstentions(store, items, verdicts, stats, unparseable_retries)

    out: list[PreferencePair] = []
    for pair in pairs:
        x = prompt_text(pair.prompt)
        v_w = verdicts[index[JudgeItem(x, response_text(pair.chosen))]]
        v_l = verdicts[index[JudgeItem(x, response_text(pair.rejected))]]
        record = _categorised(pair, v_w, v_l, on_unparseable, stats)
        if record is not None:
            out.append(record)
    stats.wall_s = time.perf_counter() - start
    return out, stats


def _retry_abstentions(store: VerdictStore, items: Sequence[JudgeItem], verdicts: list[Verdict],
                       stats: TriageStats, retries: int) -> None:
    """Judge the abstained items again (no cache), up to ``retries`` times, in place."""
    abstained = [i for i, v in enumerate(verdicts) if v.abstained]
    for _ in range(retries):
        abstained = [i for i in abstained if verdicts[i].abstained]
        if not abstained:
            break
        again = store.resolve([items[i] for i in abstained], stats, fresh=True)
        for i, v in zip(abstained, again):
            verdicts[i] = v
    stats.abstentions_resolved = stats.abstentions - sum(verdicts[i].abstained for i in abstained)


def _categorised(pair: PreferencePair, v_w: Verdict, v_l: Verdict, rule: UnparseableRule,
                 stats: TriageStats) -> PreferencePair | None:
    """The triaged record of a pair from its two verdicts (INVERT stored swapped); None when an
    abstention the rule does not settle leaves it undecided (counted as dropped)."""
    c_w, c_l = _settle(v_w, rule), _settle(v_l, rule)
    if c_w is None or (c_l is None and not c_w):
        stats.dropped.append({"id": pair.id, "reason": "judge abstained", "raw": (v_w if c_w is None else v_l).raw})
        return None
    category = categorise(c_w, bool(c_l))
    stats.counts[category] += 1
    swapped = category == INVERT
    chosen, rejected = (pair.rejected, pair.chosen) if swapped else (pair.chosen, pair.rejected)
    v_chosen, v_rejected = (v_l, v_w) if swapped else (v_w, v_l)
    return replace(
        pair,
        chosen=chosen,
        rejected=rejected,
        category=category,
        swapped=swapped,
        verdicts={"chosen": v_chosen.to_dict(), "rejected": v_rejected.to_dict()},
        corrective=None,
        impact=None,
    )
