"""How well does an audit of 100 labelled responses estimate a judge's error rate?

On the synthetic world, where the truth is known: every response of the old preference pairs
of world seeds 0-4 (1,000 pairs each) is judged by the ground-truth judge under a policy
(default ``synth-contextual``), and wrapped in a noisy judge with known error rates — each
response's verdict flipped with probability ``false_violation`` where it truly complies and
``false_compliance`` where it truly violates (the flips are fixed per response, as a real
judge's mistakes are). The judge's true error rate is then the share of the pool it gets wrong.

An audit labels 100 responses drawn at random from the pool and measures the judge with
:func:`realign.judges.audit.audit_metrics` (what ``realign judge audit`` computes); repeated
``--draws`` times per world seed, it gives the error of the estimated error rate (mean absolute
error, its 5th-95th percentile spread) and how often the Wilson 95 % interval holds the truth.
A second table does the same for what the errors do to triage: audits of 50 labelled old pairs
(100 responses) against the share of all pairs whose INVERT / PUNISH / RETAIN category the
judge changes.

    python benchmarks/judge_audit.py            # 5 world seeds x 200 audits per setting, ~1 min on 1 CPU

Writes benchmarks/results/judge_audit.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from realign import __version__ as realign_version
from realign.data import prompt_text, response_text
from realign.metrics.stats import rate
from realign.runs.files import write_json, write_text
from realign.judges.audit import audit_metrics, triage_category
from realign.judges.base import JudgeItem, Verdict
from realign.judges.rules import RulesJudge
from realign.policy import Policy
from realign.synth import World, make_pairs
from realign.synth.policies import load_policy

NAME = "judge_audit"
RESULTS = Path(__file__).resolve().parent / "results"
#: (name, P(judged violating | truly compliant), P(judged compliant | truly violating))
SETTINGS = (
    ("symmetric 5 %", 0.05, 0.05),
    ("symmetric 10 %", 0.10, 0.10),
    ("symmetric 20 %", 0.20, 0.20),
    ("false violations 10 %", 0.10, 0.0),
    ("false violations 20 %", 0.20, 0.0),
    ("false compliance 10 %", 0.0, 0.10),
    ("false compliance 20 %", 0.0, 0.20),
)


class NoisyTruthJudge:
    """The ground truth with known error rates: a compliant response is judged violating with
    probability ``false_violation``, a violating one compliant with ``false_compliance``. Which
    responses are flipped is fixed by a hash of (seed, prompt, response), so the judge is a
    deterministic :class:`~realign.judges.base.Judge`."""

    def __init__(self, false_violation: float, false_compliance: float, seed: int) -> None:
        self.false_violation, self.false_compliance, self.seed = false_violation, false_compliance, seed
        self.identity = f"noisy-truth/fv={false_violation}/fc={false_compliance}/seed={seed}"
        self.calls = 0
        self._truth = RulesJudge()

    def _draw(self, item: JudgeItem) -> float:
        digest = hashlib.sha256(json.dumps([self.seed, item.prompt, item.response]).encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    def judge(self, items: Sequence[JudgeItem], policy: Policy, on_verdict=None) -> list[Verdict]:
        out = []
        for i, (item, truth) in enumerate(zip(items, self._truth.judge(items, policy))):
            flip = self.false_violation if truth.compliant else self.false_compliance
            verdict = Verdict(truth.compliant != (self._draw(item) < flip), None, f"truth {truth.compliant}")
            self.calls += 1
            out.append(verdict)
            if on_verdict is not None:
                on_verdict(i, verdict)
        return out


def pool(seed: int, policy: Policy, n_pairs: int) -> tuple[list[JudgeItem], list[bool], list[tuple[int, int]]]:
    """World ``seed``'s old pairs as distinct responses with their true verdicts, and each pair
    as (old winner, old loser) positions."""
    index: dict[JudgeItem, int] = {}
    pairs = []
    for pair in make_pairs(World(seed), n_pairs):
        x = prompt_text(pair.prompt)
        ids = [index.setdefault(JudgeItem(x, response_text(r)), len(index)) for r in (pair.chosen, pair.rejected)]
        pairs.append((ids[0], ids[1]))
    items = list(index)
    truth = [bool(v.compliant) for v in RulesJudge().judge(items, policy)]
    return items, truth, pairs


def summarise(estimates: list[float], truths: list[float], covered: list[bool], widths: list[float]) -> dict:
    """Mean absolute error and 5th / 95th percentiles of (estimate − truth), Wilson coverage,
    mean interval width — all in rate units."""
    errors = sorted(e - t for e, t in zip(estimates, truths))
    q = statistics.quantiles(errors, n=20, method="inclusive")
    return {
        "audits": len(errors),
        "true_rate": statistics.fmean(truths),
        "mean_estimate": statistics.fmean(estimates),
        "mae": statistics.fmean(abs(e) for e in errors),
        "p05": q[0],
        "p95": q[-1],
        "coverage": rate(covered),
        "mean_ci_width": statistics.fmean(widths),
    }


def audit_setting(worlds: dict, fv: float, fc: float, draws: int, size: int) -> dict:
    """``draws`` audits per world of ``size`` responses and of ``size // 2`` pairs."""
    resp = ([], [], [], [])
    pair = ([], [], [], [])
    for seed, (items, truth, pairs, policy) in worlds.items():
        judged = [bool(v.compliant) for v in NoisyTruthJudge(fv, fc, seed).judge(items, policy)]
        true_error = sum(j != t for j, t in zip(judged, truth)) / len(truth)
        true_change = sum(triage_category(truth[w], truth[l]) != triage_category(judged[w], judged[l])
                          for w, l in pairs) / len(pairs)
        rng = random.Random(f"judge-audit:{seed}:{fv}:{fc}")
        for _ in range(draws):
            at = rng.sample(range(len(items)), size)
            m = audit_metrics([truth[i] for i in at], [Verdict(judged[i]) for i in at], ["all"] * size)
            _add(resp, m["overall"]["error_rate"], true_error)
            chosen = rng.sample(pairs, size // 2)
            at = [i for p in chosen for i in p]
            where = {i: k for k, i in enumerate(at)}
            m = audit_metrics([truth[i] for i in at], [Verdict(judged[i]) for i in at], ["all"] * len(at),
                              pairs=[(where[w], where[l]) for w, l in chosen])
            _add(pair, m["triage"]["changed"], true_change)
    return {"error_rate": summarise(*resp), "triage_changed": summarise(*pair)}


def _add(into: tuple, measured: dict, truth: float) -> None:
    lo, hi = measured["ci95"]
    for column, value in zip(into, (measured["rate"], truth, lo <= truth <= hi, hi - lo)):
        column.append(value)


def table(results: dict, key: str, unit: str) -> list[str]:
    lines = [f"| judge | true {unit} | mean estimate | mean abs. error | 90 % of errors within | "
             "Wilson 95 % covers the truth | mean interval width |", "|---|---:|---:|---:|---|---:|---:|"]
    for name, r in results.items():
        s = r[key]
        lines.append(f"| {name} | {100 * s['true_rate']:.1f} % | {100 * s['mean_estimate']:.1f} % | "
                     f"{100 * s['mae']:.1f} pts | {100 * s['p05']:+.1f} to {100 * s['p95']:+.1f} pts | "
                     f"{100 * s['coverage']['rate']:.1f} % | {100 * s['mean_ci_width']:.1f} pts |")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="synth-contextual", help="synth policy the truth follows")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="world seeds")
    parser.add_argument("--pairs", type=int, default=1000, help="old pairs per world (the pool)")
    parser.add_argument("--draws", type=int, default=200, help="audits per world seed and setting")
    parser.add_argument("--size", type=int, default=100, help="labelled responses per audit")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    policy = load_policy(args.policy)
    worlds = {seed: (*pool(seed, policy, args.pairs), policy) for seed in args.seeds}
    results = {name: audit_setting(worlds, fv, fc, args.draws, args.size) for name, fv, fc in SETTINGS}
    result = {
        "benchmark": NAME, "policy": args.policy, "seeds": args.seeds, "pairs_per_world": args.pairs,
        "pool_responses": {s: len(w[0]) for s, w in worlds.items()},
        "pool_compliant_share": {s: sum(w[1]) / len(w[1]) for s, w in worlds.items()},
        "draws_per_seed": args.draws, "audit_size": args.size,
        "settings": {name: {"false_violation": fv, "false_compliance": fc} for name, fv, fc in SETTINGS},
        "results": results, "wall_s": round(time.perf_counter() - start, 1),
        "versions": {"realign": realign_version, "python": platform.python_version()},
    }
    write_json(args.out_dir / f"{NAME}.json", result)
    write_text(args.out_dir / f"{NAME}.md", markdown(result))
    print(f"{NAME}: {len(SETTINGS)} settings x {len(args.seeds)} worlds x {args.draws} audits in {result['wall_s']} s "
          f"-> {args.out_dir / NAME}.{{json,md}}", file=sys.stderr)
    return result


def markdown(result: dict) -> str:
    n = len(result["seeds"]) * result["draws_per_seed"]
    sizes = ", ".join(str(v) for v in result["pool_responses"].values())
    share = statistics.fmean(result["pool_compliant_share"].values())
    return "\n".join([
        f"# Judge audit: estimating a judge's error rate from {result['audit_size']} labelled responses",
        "",
        f"Synthetic world, policy `{result['policy']}`, world seeds {result['seeds']}: the pool is every distinct "
        f"response of {result['pairs_per_world']} old pairs per world ({sizes} responses; "
        f"{100 * share:.1f} % truly compliant). A noisy judge flips the ground truth with known rates: "
        "\"symmetric 10 %\" judges 10 % of the compliant responses violating and 10 % of the violating ones "
        "compliant; \"false violations 20 %\" judges 20 % of the compliant responses violating and never errs "
        "the other way (its overall error rate is about half that). "
        f"{n} audits per judge ({result['draws_per_seed']} per world), each of {result['audit_size']} responses drawn "
        "at random. Error = estimate − the judge's true rate on its world's pool, in percentage points (pts); "
        "\"90 % of errors within\": their 5th to 95th percentile.",
        "",
        f"## Error rate from {result['audit_size']} labelled responses",
        "",
        *table(result["results"], "error_rate", "error rate"),
        "",
        f"## Share of old pairs whose triage category changes, from {result['audit_size'] // 2} labelled pairs",
        "",
        *table(result["results"], "triage_changed", "change share"),
        "",
        f"Reproduce: `python benchmarks/judge_audit.py` ({result['wall_s']} s).",
        "",
    ])


if __name__ == "__main__":
    main()
