"""``realign triage`` on files: read the pairs, triage them under the policy, write the triaged
records, the optional relabelled sets and ``<out>.summary.json``."""

from __future__ import annotations

import sys
import time

from ..judges.cache import VerdictCache
from ..stage import summary_path
from .judging import triage
from .corrective import MODEL_SOURCES, attach_corrective
from .relabel import attach_oracle_responses, gold_pairs, naive_pairs


def produced_by(config, judge=None) -> dict:
    """What produces the triaged records: the resolved settings and the content of the pairs
    and the policy, the judge's identity (model, endpoint, prompt format) and the oracle's
    (:func:`realign.provenance.produced_by`); ``realign run`` skips the stage only on an exact
    match. ``judge``: the judge already built from the config, if any."""
    from ..judges import make_judge
    from ..policy import Policy
    from ..provenance import input_digest
    from ..provenance import produced_by as record

    policy = Policy.load(config.policy)
    inputs = {
        "data": input_digest(config.data),
        "policy": policy.hash,
        "policy_cases": policy.cases_hash,
        "judge": (judge or make_judge(config.judge)).identity,
    }
    if config.oracle is not None:
        from ..oracle import make_oracle

        inputs["oracle"] = make_oracle(config.oracle).identity
    if config.corrective is not None and set(config.corrective.sources) & set(MODEL_SOURCES):
        from ..provenance import model_digest

        inputs["corrective_model"] = model_digest(config.corrective.model)
    return record(config, inputs, ignore=("out", "gold_out", "naive_out", "cache"))


def run(config, progress: bool = True) -> dict:
    """Stage 1 on files: read ``config.data``, triage under ``config.policy``, write the triaged
    records, the optional relabelled sets and ``<out>.summary.json`` (counts, judge calls,
    cache hits, failures, resolved config, versions, wall time)."""
    from ..files import check_output_paths

    check_output_paths(
        {"--data": config.data, "--policy": config.policy, "--cache": config.cache_path()},
        {"--out": config.out, "--gold-out": config.gold_out, "--naive-out": config.naive_out,
         "the summary of --out": summary_path(config.out)},
    )
    from ..config import resolved
    from ..data import write_pairs
    from ..files import write_json
    from ..judges import make_judge
    from ..policy import Policy
    from ..provenance import provenance

    start = time.perf_counter()
    policy = Policy.load(config.policy)
    loaded = _read(config)
    judge = make_judge(config.judge)
    made = produced_by(config, judge)
    cases, records, stats, added = _judge(config, loaded.pairs, policy, judge, progress)
    write_pairs(config.out, records)
    summary: dict = {"stage": "triage", "policy": {"name": policy.name, "hash": policy.hash}, "judge": judge.identity}
    summary["policy_cases"] = cases.to_dict()
    summary.update(stats.to_dict())
    summary["skipped_invalid"] = len(loaded.skipped)
    summary["skipped_examples"] = [str(e) for e in loaded.skipped[:20]]
    summary.update(added)
    summary.update(_write_relabelled(config, records))
    summary["wall_s"] = round(time.perf_counter() - start, 3)
    summary["config"] = resolved(config)
    summary["produced_by"] = made
    summary["provenance"] = provenance()
    write_json(summary_path(config.out), summary)
    return summary


def _read(config):
    """The pairs of ``config.data``; the first 20 records skipped as invalid are said on stderr."""
    from ..data import read_pairs

    loaded = read_pairs(config.data, split=config.split, skip_invalid=config.skip_invalid,
                        invert_order=config.invert_order)
    for err in loaded.skipped[:20]:
        print(f"skipped: {err}", file=sys.stderr)
    if len(loaded.skipped) > 20:
        print(f"skipped: ... and {len(loaded.skipped) - 20} more", file=sys.stderr)
    return loaded


def _judge(config, pairs, policy, judge, progress: bool):
    """Run the policy's test cases through the judge and stop if it fails too many
    (:func:`realign.judges.cases.gate`), then triage the pairs and, with an oracle configured,
    attach its y_c to the PUNISH records, and with ``corrective`` the corrective responses:
    (the cases' report, records, stats, the summary entries ``oracle`` and ``corrective`` of
    those configured)."""
    with VerdictCache(config.cache_path(), commit_every=1) as cache:
        cases = check_policy_cases(policy, judge, cache, config.max_case_failure_rate, progress)
        records, stats = triage(
            pairs,
            policy,
            judge,
            cache,
            on_unparseable=config.judge.on_unparseable,
            unparseable_retries=config.judge.unparseable_retries,
            progress=progress,
        )
        added = {}
        if config.oracle is not None:
            from ..oracle import make_oracle

            added["oracle"] = attach_oracle_responses(
                records, policy, make_oracle(config.oracle), judge, cache, stats, progress
            )
        if config.corrective is not None:
            added["corrective"] = attach_corrective(records, config.corrective, policy, judge, cache, stats, progress)
    return cases, records, stats, added


def check_policy_cases(policy, judge, cache, max_failure_rate: float, say: bool = True):
    """The policy's cases through ``judge``, gated by ``max_failure_rate`` (the outcome said on
    stderr when ``say``); a policy without cases is warned about: nothing then checks that the
    judge reads it as written."""
    from ..judges.cases import gate, run_cases

    if not policy.cases:
        print(f"warning: policy {policy.name!r} has no test cases: nothing checks that judge {judge.identity} "
              "applies it as written (add `cases:`; see `realign policy test`)", file=sys.stderr)
    report = run_cases(policy, judge, cache)
    if policy.cases and say:
        print(report.headline(), file=sys.stderr)
    gate(report, max_failure_rate)
    return report


def _write_relabelled(config, records) -> dict:
    """Write the DPO-Gold and naive relabelled sets that are asked for; their summary entries."""
    from ..data import write_pairs

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
