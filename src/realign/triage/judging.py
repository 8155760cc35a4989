"""Judging the pairs: each unique response judged once (cache first, then the judge), the
abstentions retried or settled by the ``on_unparseable`` rule, and each pair categorised
(Alg. 1 lines 3-6)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

from ..config import UnparseableRule
from ..data import INVERT, PUNISH, RETAIN, PreferencePair, prompt_text, response_text
from ..errors import shorten
from ..judges.base import Judge, JudgeItem, Verdict
from ..judges.cache import VerdictCache
from ..judges.store import JudgingCounts, VerdictStore, retry_abstentions, settle
from ..policy import Policy
from ..data.triaged import categorise, old_pair

#: ``decided_by`` of a verdict a person's label decided (``realign triage --labels``)
HUMAN = "human"


@dataclass
class TriageStats(JudgingCounts):
    """A triage's counts: its pairs and distinct responses, what judging them met, the pairs an
    abstention dropped, the categories and the wall time."""

    pairs: int = 0
    responses: int = 0
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


@dataclass
class Judged:
    """The pairs of a triage and their verdicts, before categorising: every distinct (prompt,
    response) item once (``index``: item -> position), its verdict and who decided it
    (``decided_by``: the judge's identity, or ``human`` where a person's label replaced the
    judge's verdict, which ``by_judge`` keeps). ``pairs`` are in their old order."""

    pairs: list[PreferencePair]
    items: list[JudgeItem]
    index: dict[JudgeItem, int]
    verdicts: list[Verdict]
    by_judge: list[Verdict]
    decided_by: list[str]

    def positions(self, pair: PreferencePair) -> tuple[int, int]:
        """The items of a pair's old winner and old loser."""
        x = prompt_text(pair.prompt)
        return (self.index[JudgeItem(x, response_text(pair.chosen))],
                self.index[JudgeItem(x, response_text(pair.rejected))])


def judge_pairs(
    pairs: Sequence[PreferencePair],
    policy: Policy,
    judge: Judge,
    cache: VerdictCache,
    stats: TriageStats,
    *,
    on_unparseable: UnparseableRule = "retry",
    unparseable_retries: int = 2,
    progress: bool = True,
    source: str | None = None,
) -> Judged:
    """Judge both responses of every pair, each distinct one once (cache first), abstentions
    asked again under ``retry``. Input records that were triaged before are taken in their old
    order (:func:`old_pair`). ``source``: the file the pairs came from, named with the record in
    a judge error about one response."""
    names = _item_names(pairs, source)
    pairs = [replace(p, chosen=w, rejected=l, swapped=False) for p in pairs for _, w, l in [old_pair(p)]]
    items = list(names)
    index = {item: i for i, item in enumerate(items)}
    stats.responses = len(items)
    store = VerdictStore(judge, policy, cache, progress)
    verdicts = store.resolve(items, stats, names=[names[item] for item in items])
    stats.abstentions = sum(v.abstained for v in verdicts)
    if on_unparseable == "retry":
        retry_abstentions(store, items, verdicts, stats, unparseable_retries)
    return Judged(pairs, items, index, verdicts, list(verdicts), [judge.identity] * len(items))


def categorise_pairs(judged: Judged, rule: UnparseableRule, stats: TriageStats) -> list[PreferencePair]:
    """Each pair's triaged record from its two verdicts (Alg. 1 lines 3-6); pairs an abstention
    leaves undecided are dropped (counted in ``stats``)."""
    out: list[PreferencePair] = []
    for pair in judged.pairs:
        w, l = judged.positions(pair)
        record = _categorised(pair, judged.verdicts[w], judged.verdicts[l], rule, stats,
                              (_verdict_record(judged, w), _verdict_record(judged, l)))
        if record is not None:
            out.append(record)
    return out


def _verdict_record(judged: Judged, i: int) -> dict:
    """A verdict as a triaged record stores it: what was decided, by whom, and where a person
    decided, the judge's verdict it replaced."""
    record = {**judged.verdicts[i].to_dict(), "decided_by": judged.decided_by[i]}
    if judged.decided_by[i] == HUMAN:
        record["judge"] = judged.by_judge[i].to_dict()
    return record


def triage(
    pairs: Sequence[PreferencePair],
    policy: Policy,
    judge: Judge,
    cache: VerdictCache,
    *,
    on_unparseable: UnparseableRule = "retry",
    unparseable_retries: int = 2,
    progress: bool = True,
    source: str | None = None,
) -> tuple[list[PreferencePair], TriageStats]:
    """Judge both responses of every pair and assign INVERT / PUNISH / RETAIN
    (:func:`judge_pairs`, then :func:`categorise_pairs`)."""
    start = time.perf_counter()
    stats = TriageStats(pairs=len(pairs))
    judged = judge_pairs(pairs, policy, judge, cache, stats, on_unparseable=on_unparseable,
                         unparseable_retries=unparseable_retries, progress=progress, source=source)
    records = categorise_pairs(judged, on_unparseable, stats)
    stats.wall_s = time.perf_counter() - start
    return records, stats


def _categorised(pair: PreferencePair, v_w: Verdict, v_l: Verdict, rule: UnparseableRule,
                 stats: TriageStats, stored: tuple[dict, dict]) -> PreferencePair | None:
    """The triaged record of a pair from its two verdicts (INVERT stored swapped; ``stored``:
    the old winner's and loser's verdicts as the record keeps them); None when an abstention
    the rule does not settle leaves it undecided (counted as dropped)."""
    c_w, c_l = settle(v_w, rule), settle(v_l, rule)
    if c_w is None or (c_l is None and not c_w):
        stats.dropped.append({"id": pair.id, "reason": "judge abstained", "raw": (v_w if c_w is None else v_l).raw})
        return None
    category = categorise(c_w, bool(c_l))
    stats.counts[category] += 1
    swapped = category == INVERT
    chosen, rejected = (pair.rejected, pair.chosen) if swapped else (pair.chosen, pair.rejected)
    s_w, s_l = stored
    s_chosen, s_rejected = (s_l, s_w) if swapped else (s_w, s_l)
    return replace(
        pair,
        chosen=chosen,
        rejected=rejected,
        category=category,
        swapped=swapped,
        verdicts={"chosen": s_chosen, "rejected": s_rejected},
        corrective=None,
        impact=None,
    )


def _item_names(pairs: Sequence[PreferencePair], source: str | None) -> dict[JudgeItem, str]:
    """Every unique response to judge (in the order pairs give them: old winner, old loser),
    named by the first record that holds it: ``FILE record 'ID' field 'chosen'`` (a triaged
    record: its old winner or loser, whichever field the file keeps it in)."""
    names: dict[JudgeItem, str] = {}
    for p in pairs:
        x = prompt_text(p.prompt)
        sides = ("field 'chosen'", "field 'rejected'") if p.category is None else ("its old winner", "its old loser")
        for response, side in zip(old_pair(p)[1:], sides):
            names.setdefault(JudgeItem(x, response_text(response)),
                             f"{source + ' ' if source else ''}record {shorten(p.id)} {side}")
    return names
