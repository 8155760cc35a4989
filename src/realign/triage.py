"""Stage 1 — triage (Alg. 1 lines 3-6).

Every old pair (x, y_w, y_l) is judged on both responses under π_new:

* INVERT  (c_w = 0, c_l = 1): stored swapped — chosen = old y_l (compliant), rejected = old y_w;
* PUNISH  (c_w = 0, c_l = 0): both violate, no usable direction (the "false dichotomy");
* RETAIN  (c_w = 1): the old winner still complies.

Verdicts come from the verdict cache where present, so an interrupted triage resumes with no
repeated judge calls. Besides the triaged records it can write the DPO-Gold relabelled set
(INVERT swapped, PUNISH paired with an oracle's compliant response y_c, or excluded) and the
naive relabelled set (swap every pair whose old winner violates) in TRL's standard format.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

from tqdm.auto import tqdm

from .config import UnparseableRule
from .data import PreferencePair, as_response, prompt_text, response_text
from .judges.base import Judge, JudgeItem, Verdict
from .judges.cache import VerdictCache
from .policy import Policy
from .stage import summary_path

INVERT, PUNISH, RETAIN = "INVERT", "PUNISH", "RETAIN"


def categorise(winner_complies: bool, loser_complies: bool) -> str:
    """Alg. 1 lines 3-6: the triage decision table."""
    if winner_complies:
        return RETAIN
    return INVERT if loser_complies else PUNISH


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

    abstained = [i for i, v in enumerate(verdicts) if v.abstained]
    stats.abstentions = len(abstained)
    if on_unparseable == "retry":
        for _ in range(unparseable_retries):
            abstained = [i for i in abstained if verdicts[i].abstained]
            if not abstained:
                break
            again = store.resolve([items[i] for i in abstained], stats, fresh=True)
            for i, v in zip(abstained, again):
                verdicts[i] = v
        stats.abstentions_resolved = stats.abstentions - sum(verdicts[i].abstained for i in abstained)

    out: list[PreferencePair] = []
    for pair in pairs:
        x = prompt_text(pair.prompt)
        v_w = verdicts[index[JudgeItem(x, response_text(pair.chosen))]]
        v_l = verdicts[index[JudgeItem(x, response_text(pair.rejected))]]
        c_w, c_l = _settle(v_w, on_unparseable), _settle(v_l, on_unparseable)
        if c_w is None or (c_l is None and not c_w):
            stats.dropped.append({"id": pair.id, "reason": "judge abstained", "raw": (v_w if c_w is None else v_l).raw})
            continue
        category = categorise(c_w, bool(c_l))
        stats.counts[category] += 1
        swapped = category == INVERT
        chosen, rejected = (pair.rejected, pair.chosen) if swapped else (pair.chosen, pair.rejected)
        v_chosen, v_rejected = (v_l, v_w) if swapped else (v_w, v_l)
        out.append(
            replace(
                pair,
                chosen=chosen,
                rejected=rejected,
                category=category,
                swapped=swapped,
                verdicts={"chosen": v_chosen.to_dict(), "rejected": v_rejected.to_dict()},
                impact=None,
            )
        )
    stats.wall_s = time.perf_counter() - start
    return out, stats


def old_pair(record: PreferencePair) -> tuple:
    """(x, old y_w, old y_l) of a triaged record, undoing the INVERT swap."""
    if record.swapped:
        return record.prompt, record.rejected, record.chosen
    return record.prompt, record.chosen, record.rejected


def gold_pairs(records: Sequence[PreferencePair]) -> tuple[list[PreferencePair], int]:
    """DPO-Gold relabelled set: RETAIN as is, INVERT swapped, PUNISH as (x, y_c ≻ y_w) when an
    oracle response exists. Returns the pairs and the number of PUNISH pairs excluded."""
    out, excluded = [], 0
    for r in records:
        if r.category == PUNISH:
            if r.oracle is None:
                excluded += 1
                continue
            x, y_w, _ = old_pair(r)
            out.append(PreferencePair(r.id, x, r.oracle, y_w, meta=dict(r.meta)))
        else:
            out.append(PreferencePair(r.id, r.prompt, r.chosen, r.rejected, meta=dict(r.meta)))
    return out, excluded


def naive_pairs(records: Sequence[PreferencePair]) -> list[PreferencePair]:
    """Naive relabelled set (the false dichotomy): swap every pair whose old winner violates."""
    out = []
    for r in records:
        x, y_w, y_l = old_pair(r)
        if r.category == RETAIN:
            out.append(PreferencePair(r.id, x, y_w, y_l, meta=dict(r.meta)))
        else:
            out.append(PreferencePair(r.id, x, y_l, y_w, meta=dict(r.meta)))
    return out


def attach_oracle_responses(
    records: Sequence[PreferencePair],
    policy: Policy,
    oracle,
    judge: Judge,
    cache: VerdictCache,
    stats: TriageStats,
    progress: bool = True,
) -> dict[str, int]:
    """Ask the oracle for a compliant y_c for each PUNISH prompt, keep it only if the judge
    finds it compliant (docs/method.md, optional oracle). Generations are cached, so a rerun asks
    nothing twice."""
    punish = [r for r in records if r.category == PUNISH]
    prompts = sorted({prompt_text(r.prompt) for r in punish})
    texts: dict[str, str] = {}
    todo = []
    for x in prompts:
        hit = cache.get_generation(oracle.identity, policy.hash, x)
        if hit is None:
            todo.append(x)
        else:
            texts[x] = hit
    if todo:
        bar = tqdm(total=len(todo), desc="oracle", unit="resp", disable=not progress, file=sys.stderr)

        def keep(j: int, text: str) -> None:
            texts[todo[j]] = text
            cache.put_generation(oracle.identity, policy.hash, todo[j], text)
            bar.update(1)

        try:
            oracle.generate(todo, policy, on_result=keep)
        finally:
            cache.commit()
            bar.close()
    written = [x for x in prompts if texts.get(x, "").strip()]
    verdicts = VerdictStore(judge, policy, cache, progress).resolve(
        [JudgeItem(x, texts[x]) for x in written], stats
    )
    accepted = {x for x, v in zip(written, verdicts) if v.compliant}
    for r in punish:
        x = prompt_text(r.prompt)
        if x in accepted:
            r.oracle = as_response(texts[x], r.chosen)
    return {
        "punish_prompts": len(prompts),
        "generated": len(todo),
        "empty": len(prompts) - len(written),
        "judged_violating": len(written) - len(accepted),
        "accepted": len(accepted),
    }


def produced_by(config, judge=None) -> dict:
    """What produces the triaged records: the resolved settings and the content of the pairs
    and the policy, the judge's identity (model, endpoint, prompt format) and the oracle's
    (:func:`realign.provenance.produced_by`); ``realign run`` skips the stage only on an exact
    match. ``judge``: the judge already built from the config, if any."""
    from .judges import make_judge
    from .policy import Policy
    from .provenance import input_digest
    from .provenance import produced_by as record

    inputs = {
        "data": input_digest(config.data),
        "policy": Policy.load(config.policy).hash,
        "judge": (judge or make_judge(config.judge)).identity,
    }
    if config.oracle is not None:
        from .oracle import make_oracle

        inputs["oracle"] = make_oracle(config.oracle).identity
    return record(config, inputs, ignore=("out", "gold_out", "naive_out", "cache"))


def run(config, progress: bool = True) -> dict:
    """Stage 1 on files: read ``config.data``, triage under ``config.policy``, write the triaged
    records, the optional relabelled sets and ``<out>.summary.json`` (counts, judge calls,
    cache hits, failures, resolved config, versions, wall time)."""
    from .files import check_output_paths

    check_output_paths(
        {"--data": config.data, "--policy": config.policy, "--cache": config.cache_path()},
        {"--out": config.out, "--gold-out": config.gold_out, "--naive-out": config.naive_out,
         "the summary of --out": summary_path(config.out)},
    )
    from .config import resolved
    from .data import read_pairs, write_pairs
    from .files import write_json
    from .judges import make_judge
    from .policy import Policy
    from .provenance import provenance

    start = time.perf_counter()
    policy = Policy.load(config.policy)
    loaded = read_pairs(config.data, split=config.split, skip_invalid=config.skip_invalid,
                        invert_order=config.invert_order)
    for err in loaded.skipped[:20]:
        print(f"skipped: {err}", file=sys.stderr)
    if len(loaded.skipped) > 20:
        print(f"skipped: ... and {len(loaded.skipped) - 20} more", file=sys.stderr)
    judge = make_judge(config.judge)
    made = produced_by(config, judge)
    with VerdictCache(config.cache_path(), commit_every=1) as cache:
        records, stats = triage(
            loaded.pairs,
            policy,
            judge,
            cache,
            on_unparseable=config.judge.on_unparseable,
            unparseable_retries=config.judge.unparseable_retries,
            progress=progress,
        )
        oracle_stats = None
        if config.oracle is not None:
            from .oracle import make_oracle

            oracle_stats = attach_oracle_responses(
                records, policy, make_oracle(config.oracle), judge, cache, stats, progress
            )
    write_pairs(config.out, records)
    summary: dict = {"stage": "triage", "policy": {"name": policy.name, "hash": policy.hash}, "judge": judge.identity}
    summary.update(stats.to_dict())
    summary["skipped_invalid"] = len(loaded.skipped)
    summary["skipped_examples"] = [str(e) for e in loaded.skipped[:20]]
    if oracle_stats is not None:
        summary["oracle"] = oracle_stats
    if config.gold_out is not None:
        gold, excluded = gold_pairs(records)
        write_pairs(config.gold_out, gold)
        summary["gold"] = {"path": str(config.gold_out), "pairs": len(gold), "punish_excluded": excluded}
    if config.naive_out is not None:
        naive = naive_pairs(records)
        write_pairs(config.naive_out, naive)
        summary["naive"] = {"path": str(config.naive_out), "pairs": len(naive)}
    summary["wall_s"] = round(time.perf_counter() - start, 3)
    summary["config"] = resolved(config)
    summary["produced_by"] = made
    summary["provenance"] = provenance()
    write_json(summary_path(config.out), summary)
    return summary
