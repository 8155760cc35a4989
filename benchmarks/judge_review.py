"""How much of TRACE's lost gain comes back when a person reviews the judge's least confident
verdicts before training (``realign triage --review N`` then ``--labels``)?

On the synthetic world (``synth-contextual``, where the truth is known), a judge with 20 %
errors and calibrated confidence (:class:`CalibratedNoisyJudge`): each distinct response gets
a confidence c = 0.5 + 0.5·v, v ~ Beta(1.5, 1) (mean c = 0.8), drawn from a hash of (seed,
prompt, response); the judge's verdict is the truth's flipped with probability 1 − c (a second
draw), and its P(compliant) is c for a compliant verdict, 1 − c for a violating one. So it is
calibrated by construction (among verdicts of confidence c, a share 1 − c is wrong), it errs on
E[1 − c] = 20 % of responses, and its mistakes sit nearer P = 0.5 than its right answers — but
never at worse than even odds, so the least confident k % of verdicts hold at most about k/2 %
of the responses' errors.

Each point of the curve is one unit of the efficacy benchmark (benchmarks/efficacy.py
``run_unit``: the world's bootstrapped old-policy model, TRACE with the project defaults, the
evaluation) whose triage is written by ``realign triage``'s own machinery: the noisy judge's
verdicts (:func:`realign.triage.judging.judge_pairs`), the review file of the least confident
``share`` of them (:mod:`realign.triage.review`), labelled with the truth and applied as
``--labels``, the pairs categorised. Besides the reviewed points: the clean judge (the ground
truth's triage) and no review (the noisy judge's triage as it is). A cheap table beside the
curve gives, for more review shares, the verdict errors left and the share of pairs whose
INVERT / PUNISH / RETAIN category is wrong (no training).

    nice -n 10 python benchmarks/judge_review.py --seeds 0          # ~6 units of minutes each on CPU

Writes benchmarks/results/judge_review.{json,md}. Resumable: rerun the same command.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, finish_worker, machine, worker_spec, write_results  # noqa: E402

from realign.judges.base import JudgeItem, Verdict  # noqa: E402
from realign.policy import Policy  # noqa: E402

NAME = "judge_review"
SHIFT = "synth-contextual"
ERROR = 0.2
#: Beta(a, b) of v, confidence c = 0.5 + 0.5·v: mean c = 0.5 + 0.5·a/(a+b) = 0.8
BETA = (1.5, 1.0)
#: the trained points: share of verdicts reviewed (None: the clean judge, the ground truth)
POINTS = (0.0, 0.10, 0.05, 0.20, None, 0.40)
#: the cheap table's review shares (no training)
SHARES = (0.0, 0.05, 0.10, 0.20, 0.30, 0.40, 0.50, 0.60)


class CalibratedNoisyJudge:
    """The ground truth (the rules judge under the synthetic policy) with calibrated errors
    (module docstring): deterministic per (seed, prompt, response), so a
    :class:`~realign.judges.base.Judge` whose verdicts a cache may keep."""

    def __init__(self, seed: int, beta: tuple[float, float] = BETA) -> None:
        from realign.judges.rules import RulesJudge

        self.seed, self.beta = seed, beta
        self.identity = f"calibrated-noisy-truth/beta={beta[0]},{beta[1]}/seed={seed}"
        self.calls = 0
        self._truth = RulesJudge()

    def confidence(self, item: JudgeItem) -> tuple[float, float]:
        """(c, u): the verdict's confidence and the draw that decides whether it is wrong (u > c)."""
        digest = hashlib.sha256(json.dumps([self.seed, item.prompt, item.response]).encode()).digest()
        rng = random.Random(digest)
        return 0.5 + 0.5 * rng.betavariate(*self.beta), rng.random()

    def judge(self, items: Sequence[JudgeItem], policy: Policy, on_verdict=None) -> list[Verdict]:
        out = []
        for i, (item, truth) in enumerate(zip(items, self._truth.judge(items, policy))):
            c, u = self.confidence(item)
            compliant = bool(truth.compliant) != (u > c)
            verdict = Verdict(compliant, c if compliant else 1.0 - c, f"confidence {c:.3f}")
            self.calls += 1
            out.append(verdict)
            if on_verdict is not None:
                on_verdict(i, verdict)
        return out


def reviewed_triage(pairs: list, policy: Policy, seed: int, share: float, folder: Path) -> tuple[list, dict]:
    """The triage ``realign triage --review N --labels`` gives when the noisy judge decides and a
    person labels the least confident ``share`` of its verdicts with the truth: the records
    and what it did (verdict errors and wrong pair categories before and after, labels counts).
    The review file and its labelled copy are written into ``folder``."""
    from realign.judges.audit import triage_category
    from realign.judges.cache import VerdictCache
    from realign.judges.rules import RulesJudge
    from realign.triage.judging import TriageStats, categorise_pairs, judge_pairs
    from realign.triage.review import apply_labels, read_human_labels, review_order, review_rows, write_review

    stats = TriageStats(pairs=len(pairs))
    with VerdictCache(folder / "verdicts.sqlite") as cache:
        judged = judge_pairs(pairs, policy, CalibratedNoisyJudge(seed), cache, stats, progress=False)
    truth = [bool(v.compliant) for v in RulesJudge().judge(judged.items, policy)]
    picked = review_order(judged)[: round(share * len(judged.items))]
    info = {"responses": len(judged.items), "reviewed": len(picked), "pairs": len(judged.pairs)}
    info["errors_before"] = _wrong(judged, truth)
    if picked:
        write_review(folder / "review.csv", review_rows(judged, picked))
        _label_with_truth(folder / "review.csv", folder / "labelled.csv", judged, truth)
        info["labels"] = apply_labels(judged, read_human_labels(folder / "labelled.csv"), "retry")
    info["errors_after"] = _wrong(judged, truth)
    records = categorise_pairs(judged, "retry", stats)
    positions = [judged.positions(p) for p in judged.pairs]
    info["pairs_wrong_category"] = sum(
        triage_category(truth[w], truth[l]) != triage_category(judged.verdicts[w].compliant, judged.verdicts[l].compliant)
        for w, l in positions) / len(positions)
    return records, info


def _wrong(judged, truth: list[bool]) -> float:
    return sum(v.compliant != t for v, t in zip(judged.verdicts, truth)) / len(truth)


def _label_with_truth(review: Path, labelled: Path, judged, truth: list[bool]) -> None:
    """The person's work, done by the truth: the review file with its label column filled."""
    with review.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        i = judged.index[JudgeItem(row["prompt"], row["response"])]
        row["label"] = "compliant" if truth[i] else "violating"
    with labelled.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def seed_reviewed(spec: dict) -> None:
    """Write the unit's ``RUN/triage/triaged.jsonl`` (and summary) from :func:`reviewed_triage`."""
    from realign.data import read_pairs, write_pairs
    from realign.runs.files import write_json
    from realign.runs.stage import summary_path
    from realign.synth.policies import load_policy
    from realign.data import INVERT, PUNISH, RETAIN

    out = Path(spec["run_dir"]) / "triage" / "triaged.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    pairs = read_pairs(Path(spec["data"]) / "pairs.jsonl").pairs
    records, info = reviewed_triage(pairs, load_policy(spec["shift"]), spec["seed"], spec["review"], out.parent)
    write_pairs(out, records)
    write_json(summary_path(out), {
        "stage": "triage", "source": "calibrated noisy judge, least confident verdicts reviewed against the truth",
        "policy": {"name": spec["shift"]}, "counts": {c: sum(r.category == c for r in records) for c in (INVERT, PUNISH, RETAIN)},
        "review": info})


# --------------------------------------------------------------------------- the grid and the tables


def cells(seeds: list[int], size: int) -> list[dict]:
    """One efficacy cell per (world seed, point), TRACE only; seed by seed, the points in
    :data:`POINTS` order (a run cut short still has the first points of the first seed)."""
    return [{"variant": "clean" if share is None else f"review{round(share * 100)}", "review": share,
             "judge": None if share is None else {"error": ERROR, "beta": list(BETA)},
             "shift": SHIFT, "seed": seed, "size": size, "noise": 0.0, "methods": ["trace"], "oracle": False,
             "overrides": {}} for seed in seeds for share in POINTS]


def cheap_table(seeds: list[int], data: dict[int, Path]) -> dict:
    """Per review share: verdict errors left and wrong pair categories, mean over world seeds."""
    from realign.data import read_pairs
    from realign.synth.policies import load_policy

    policy = load_policy(SHIFT)
    out: dict = {}
    for seed in seeds:
        pairs = read_pairs(data[seed] / "pairs.jsonl").pairs
        for share in SHARES:
            with tempfile.TemporaryDirectory() as tmp:
                _, info = reviewed_triage(pairs, policy, seed, share, Path(tmp))
            out.setdefault(str(share), []).append(info)
    return {share: {"verdict_errors_before": statistics.fmean(i["errors_before"] for i in infos),
                    "verdict_errors_left": statistics.fmean(i["errors_after"] for i in infos),
                    "pairs_wrong_category": statistics.fmean(i["pairs_wrong_category"] for i in infos),
                    "reviewed": statistics.fmean(i["reviewed"] for i in infos)}
            for share, infos in out.items()}


def curve(results: list[dict]) -> list[dict]:
    """The trained points, means over the world seeds that have them: TPA, changed and
    unchanged slices, and the share of the lost gain recovered, (TPA − TPA without review) /
    (TPA of the clean judge − TPA without review), over the seeds that have all three."""
    by = {(r["seed"], r["variant"]): r["outcomes"] for r in results}
    tpa = lambda s, v: by[s, v]["trace"]["agreement"]  # noqa: E731
    rows = []
    for point in POINTS:
        variant = "clean" if point is None else f"review{round(point * 100)}"
        have = sorted(s for s, v in by if v == variant)
        if not have:
            continue
        mean = lambda method, metric: statistics.fmean(by[s, variant][method][metric] for s in have)  # noqa: E731
        full = [s for s in have if (s, "review0") in by and (s, "clean") in by]
        lost = statistics.fmean(tpa(s, "clean") - tpa(s, "review0") for s in full) if full else 0.0
        regained = statistics.fmean(tpa(s, variant) - tpa(s, "review0") for s in full) if full else 0.0
        by_seed = [tpa(s, variant) for s in have]
        rows.append({"point": variant, "reviewed_share": point, "seeds": have, "tpa": mean("trace", "agreement"),
                     "tpa_by_seed": by_seed, "tpa_sd": statistics.stdev(by_seed) if len(by_seed) > 1 else 0.0,
                     "changed_slices": mean("trace", "changed_slices"), "unchanged_slices": mean("trace", "unchanged_slices"),
                     "base_tpa": mean("base", "agreement"),
                     "lost_gain_recovered": regained / lost if lost > 0 else None})
    return sorted(rows, key=lambda r: (r["reviewed_share"] is None, r["reviewed_share"] or 0.0))


def markdown(result: dict) -> list[str]:
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}"  # noqa: E731
    lines = [f"# Review before training: the least confident verdicts of a 20 %-error judge, on `{SHIFT}`", "",
             f"Command: `{result['command']}`  ",
             (f"Wall time {result['wall_s'] / 60:.1f} min" if result["wall_s"] is not None else "Aggregated from units run "
              "earlier") + f"; the units' own wall times sum to {result['units_wall_s'] / 60:.0f} min "
             f"({result['machine']['cpus']} CPUs shared with other jobs, 1 worker × 1 thread, nice 10, fp32 training). "
             "World seeds "
             f"{result['seeds']}, {result['size']} old pairs each, 1 training seed; eval: 8 held-out prompts per slice.  ",
             *([result["note"]] if result.get("note") else []), "",
             "Judge: the world's truth with calibrated errors — confidence c = 0.5 + 0.5·v, v ~ Beta(1.5, 1) per "
             "response (mean 0.8); verdict wrong with probability 1 − c; P(compliant) = c or 1 − c. Reviewing = the "
             "least confident verdicts (|P − 0.5| smallest) written by `realign triage --review`, labelled with the "
             "truth, applied with `--labels`; then TRACE with the project defaults.", "",
             "## TPA by share of verdicts reviewed", "",
             "TPA = agreement with the new policy on all sensitive eval prompts (mean ± sd over world seeds; then per "
             "seed); changed / unchanged = on the slices the shift changed / left as they were; pairs miscategorised = "
             "old pairs whose INVERT / PUNISH / RETAIN category differs from the truth's; lost gain recovered = (TPA − "
             "TPA without review) / (TPA of the clean judge − TPA without review).", "",
             "| point | verdicts reviewed | pairs miscategorised % | TPA % | TPA per seed | changed % | unchanged % | "
             "lost gain recovered % |", "|---|---:|---:|---:|---|---:|---:|---:|"]
    for r in result["curve"]:
        shown = "clean judge" if r["reviewed_share"] is None else "no review" if r["reviewed_share"] == 0 else "reviewed"
        share = "–" if r["reviewed_share"] is None else f"{round(100 * r['reviewed_share'])} %"
        wrong = 0.0 if r["reviewed_share"] is None else result["fixes"][str(r["reviewed_share"])]["pairs_wrong_category"]
        seeds = " / ".join(pct(t) for t in r["tpa_by_seed"])
        lines.append(f"| {shown} | {share} | {pct(wrong)} | {pct(r['tpa'])} ± {pct(r['tpa_sd'])} | {seeds} | "
                     f"{pct(r['changed_slices'])} | {pct(r['unchanged_slices'])} | {pct(r['lost_gain_recovered'])} |")
    base = [r["base_tpa"] for r in result["curve"]]
    if base:
        lines += ["", f"Base model (old policy, no training): TPA {pct(statistics.fmean(base))} %. One training seed per "
                  "world: neighbouring points differ by less than the spread over world seeds, so read the trend, not "
                  "each step."]
    lines += ["", "## What a review fixes (no training)", "",
              "| verdicts reviewed | verdict errors left | pairs with a wrong triage category |", "|---:|---:|---:|"]
    for share, r in result["fixes"].items():
        lines.append(f"| {round(100 * float(share))} % | {pct(r['verdict_errors_left'])} % | {pct(r['pairs_wrong_category'])} % |")
    if result["missing_units"]:
        lines += ["", f"**Not run** (no result; not in the curve): {', '.join(result['missing_units'])}"]
    return lines + [""]


def main(argv: list[str]) -> None:
    spec = worker_spec(argv)
    if spec is not None:
        from efficacy import run_unit

        finish_worker(spec, run_unit(spec, seed=None if spec["review"] is None else seed_reviewed))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="world seeds")
    parser.add_argument("--size", type=int, default=1000, help="old pairs per world")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.efficacy"), help="Run directories (resumable).")
    parser.add_argument("--cache", type=Path, help="Bootstrap model cache (default: the realign cache).")
    parser.add_argument("--threads", type=int, default=1, help="Torch threads of the worker.")
    parser.add_argument("--aggregate-only", action="store_true", help="Only collect the units already run.")
    parser.add_argument("--note", default="", help="A line for the results header (e.g. how the units were run).")
    args = parser.parse_args(argv)

    from efficacy import command_line, prepare, run_grid

    from realign.config import default_cache_dir
    from realign.runs.provenance import provenance

    cache = args.cache or default_cache_dir() / "synth"
    grid = cells(args.seeds, args.size)
    start = time.perf_counter()
    if not args.aggregate_only:
        prepare(args.work, grid, cache, 1, args.threads)
    command = command_line(argv, "benchmarks/judge_review.py")
    results, missing = run_grid(args.work, grid, cache, 1, args.threads, "cpu", command,
                                run_missing=not args.aggregate_only, script=__file__)
    data = {s: args.work / "data" / f"seed{s}-n{args.size}" for s in args.seeds}
    result = {"benchmark": NAME, "shift": SHIFT, "seeds": args.seeds, "size": args.size, "note": args.note,
              "judge": {"error": ERROR, "beta": list(BETA), "construction": CalibratedNoisyJudge.__doc__},
              "command": command,
              "curve": curve(results), "fixes": cheap_table(args.seeds, data), "missing_units": missing,
              "wall_s": None if args.aggregate_only else time.perf_counter() - start,
              "units_wall_s": sum(r["wall_s"] for r in results), "machine": machine(args.threads), "cell_results": results,
              "provenance": provenance()}
    write_results(NAME, result, markdown(result))
    print(f"{NAME}: " + "; ".join(f"{r['point']} TPA {100 * r['tpa']:.1f}" for r in result["curve"])
          + f" -> {RESULTS / NAME}.md", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
