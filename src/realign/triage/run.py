"""``realign triage`` on files: read the pairs, triage them under the policy, write the triaged
records, the optional relabelled sets and ``<out>.summary.json``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..config import resolved
from ..data import read_pairs, write_pairs
from ..runs.files import check_output_paths, folder_lock, write_json
from ..judges import endpoint_named, make_judge
from ..judges.cache import VerdictCache
from ..judges.cases import gate, run_cases
from ..judges.oracle import make_oracle
from ..judges.store import VerdictStore
from ..policy import Policy
from ..runs.provenance import input_digest, model_digest, provenance
from ..runs.provenance import produced_by as record
from ..runs.stage import Paths, output_digests, summary_path
from ..data.triaged import gold_pairs, naive_pairs
from .corrective import MODEL_SOURCES, attach_corrective
from .judging import HUMAN, TriageStats, categorise_pairs, judge_pairs
from .relabel import attach_oracle_responses
from .review import apply_labels, read_human_labels, review_order, review_rows, write_review


def produced_by(config, judge=None, policy=None) -> dict:
    """What produces the triaged records: the resolved settings and the content of the pairs,
    the policy (and its test cases) and the human labels, the judge's identity (model, endpoint,
    prompt format), the second judge's and the oracle's (:func:`realign.runs.provenance.produced_by`);
    ``realign run`` skips the stage only on an exact match. ``judge``, ``policy``: the judge and
    policy already built from the config, if any."""
    policy = policy if policy is not None else Policy.load(config.policy)
    inputs = {
        "data": input_digest(config.data),
        "policy": policy.hash,
        "policy_cases": policy.cases_hash,
        "judge": (judge or make_judge(config.judge)).identity,
    }
    if config.labels is not None:
        inputs["labels"] = input_digest(config.labels)
    if config.second_judge is not None:
        inputs["second_judge"] = make_judge(config.second_judge).identity
    if config.oracle is not None:
        inputs["oracle"] = make_oracle(config.oracle).identity
    if config.corrective is not None and set(config.corrective.sources) & set(MODEL_SOURCES):
        inputs["corrective_model"] = model_digest(config.corrective.model)
    return record(config, inputs, ignore=("out", "gold_out", "naive_out", "cache"))


def run(config, progress: bool = True, judge=None, policy=None) -> dict:
    """Stage 1 on files: read ``config.data``, triage under ``config.policy`` (a person's
    ``config.labels`` over the judge's verdicts), write the triaged records, the optional
    relabelled sets and review file, and ``<out>.summary.json`` (counts, judge calls, cache
    hits, failures, labels applied, resolved config, versions, wall time). ``judge``,
    ``policy``: the judge and policy already built from the config, if any."""
    check_output_paths(*paths(config))
    with folder_lock(Path(config.out).parent):
        return _run(config, progress, judge, policy)


def paths(config) -> Paths:
    """What the stage reads and writes: checked before any work, so that no output overwrites an
    input or another output."""
    return Paths(
        {"--data": config.data, "--policy": config.policy, "--cache": config.cache_path(), "--labels": config.labels,
         "the judge model": config.judge.model if config.judge.backend == "hf" else None,
         "the corrective model": config.corrective.model if config.corrective is not None else None},
        {"--out": config.out, "--gold-out": config.gold_out, "--naive-out": config.naive_out,
         "--review-out": config.review_out, "the summary of --out": summary_path(config.out)},
    )


def _run(config, progress: bool, judge, policy) -> dict:
    """The stage's work, under the lock of its output folder."""
    start = time.perf_counter()
    policy = policy if policy is not None else Policy.load(config.policy)
    loaded = _read(config)
    judge = judge if judge is not None else make_judge(config.judge)
    made = produced_by(config, judge, policy)
    labels = read_human_labels(config.labels) if config.labels is not None else None
    cases, records, stats, extra = _judge(config, loaded.pairs, policy, judge, labels, progress)
    write_pairs(config.out, records)
    summary: dict = {"stage": "triage", "policy": {"name": policy.name, "hash": policy.hash}, "judge": judge.identity,
                     **endpoint_named(judge)}
    summary["policy_cases"] = cases.to_dict()
    summary.update(stats.to_dict())
    summary["duplicates_removed"] = loaded.duplicates
    summary["skipped_invalid"] = len(loaded.skipped)
    summary["skipped_examples"] = [str(e) for e in loaded.skipped[:20]]
    summary.update(extra)
    summary.update(_write_relabelled(config, records))
    summary["wall_s"] = round(time.perf_counter() - start, 3)
    summary["config"] = resolved(config)
    summary["produced_by"] = made
    summary["provenance"] = provenance()
    summary["outputs"] = output_digests(summary_path(config.out), [config.out, config.gold_out, config.naive_out])
    write_json(summary_path(config.out), summary)
    if not policy.cases:
        print(f"warning: policy {policy.name!r} has no test cases: nothing checked that judge {judge.identity} "
              "applies it as written (add `cases:`; see `realign policy test`)", file=sys.stderr)
    return summary


def _read(config):
    """The pairs of ``config.data``; the exact duplicates left out and the first 20 records
    skipped as invalid are said on stderr."""
    loaded = read_pairs(config.data, split=config.split, skip_invalid=config.skip_invalid,
                        invert_order=config.invert_order)
    if loaded.duplicates_line():
        print(f"triage: {loaded.duplicates_line()}", file=sys.stderr)
    for err in loaded.skipped[:20]:
        print(f"skipped: {err}", file=sys.stderr)
    if len(loaded.skipped) > 20:
        print(f"skipped: ... and {len(loaded.skipped) - 20} more", file=sys.stderr)
    return loaded


def _judge(config, pairs, policy, judge, labels, progress: bool):
    """Run the policy's test cases through the judge and stop if it fails too many
    (:func:`realign.judges.cases.gate`), then judge the pairs, put the person's ``labels`` over
    the judge's verdicts, categorise the pairs, write the review file if one is asked for, and
    with an oracle configured attach its y_c to the PUNISH records, and with ``corrective`` the
    corrective responses: (the cases' report, records, stats, the summary's ``labels``,
    ``review``, ``oracle`` and ``corrective`` entries that apply)."""
    rule = config.judge.on_unparseable
    extra: dict = {}
    with VerdictCache(config.cache_path(), commit_every=1) as cache:
        cases = check_policy_cases(policy, judge, cache, config.max_case_failure_rate, progress)
        start = time.perf_counter()
        stats = TriageStats(pairs=len(pairs))
        judged = judge_pairs(pairs, policy, judge, cache, stats, on_unparseable=rule,
                             unparseable_retries=config.judge.unparseable_retries, progress=progress,
                             source=config.data)
        if labels is not None:
            extra["labels"] = apply_labels(judged, labels, rule)
        records = categorise_pairs(judged, rule, stats)
        stats.wall_s = time.perf_counter() - start
        if config.review:
            extra["review"] = _review(config, judged, judge, policy, cache, progress)
        if config.oracle is not None:
            extra["oracle"] = attach_oracle_responses(
                records, policy, make_oracle(config.oracle), judge, cache, stats, progress
            )
        if config.corrective is not None:
            extra["corrective"] = attach_corrective(records, config.corrective, policy, judge, cache, stats, progress)
    return cases, records, stats, extra


def _review(config, judged, judge, policy, cache, progress: bool) -> dict:
    """Write the ``config.review`` verdicts most likely wrong to ``config.review_out``
    (:mod:`.review`), judging every response with the second judge first if there is one;
    the summary's ``review`` entry."""
    second, entry = None, {}
    if config.second_judge is not None:
        other = make_judge(config.second_judge)
        counts = TriageStats()
        second = VerdictStore(other, policy, cache, progress).resolve(judged.items, counts)
        entry = {"second_judge": other.identity, "second_judge_calls": counts.judge_calls,
                 "disagreements": sum(a.compliant != b.compliant for a, b, by in
                                      zip(judged.verdicts, second, judged.decided_by) if by != HUMAN)}
    elif all(v.p_compliant is None for v in judged.by_judge):
        print(f"warning: judge {judge.identity} gives no P(compliant) and no "
              "second judge is set: the review lists abstentions, then verdicts in data order", file=sys.stderr)
    order = review_order(judged, second)
    picked = order[: config.review]
    write_review(config.review_out, review_rows(judged, picked, second))
    return {"path": str(config.review_out), "written": len(picked), "candidates": len(order), **entry}


def check_policy_cases(policy, judge, cache, max_failure_rate: float, say: bool = True):
    """The policy's cases through ``judge``, gated by ``max_failure_rate`` (the outcome said on
    stderr when ``say``). A policy without cases is warned about by :func:`run` once the triage
    is done (nothing then checked that the judge reads it as written)."""
    report = run_cases(policy, judge, cache)
    if policy.cases and say:
        print(report.headline(), file=sys.stderr)
    gate(report, max_failure_rate)
    return report


def _write_relabelled(config, records) -> dict:
    """Write the DPO-Gold and naive relabelled sets that are asked for; their summary entries."""
    written: dict = {}
    if config.gold_out is not None:
        gold, excluded = gold_pairs(records)
        write_pairs(config.gold_out, gold)
        written["gold"] = {"path": str(config.gold_out), "pairs": len(gold), "punish_excluded": excluded}
    if config.naive_out is not None:
        naive = naive_pairs(records)
        write_pairs(config.naive_out, naive)
        written["naive"] = {"path": str(config.naive_out), "pairs": len(naive)}
    return written
