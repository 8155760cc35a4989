"""Corrective responses, diagnostic (issue 29): is it how many PUNISH pairs get y_c, or what the y_c
are, that decides whether TRACE moves a PUNISH-heavy shift?

TRACE on the world's ground-truth triage where the oracle's y_c is kept only for the PUNISH pairs
a corrective run found a y_c for (coverage-matched oracle: the same pairs, coherent texts), the
other PUNISH pairs with dual NPO (``train.punish_without_y_c: npo``) or left out (``exclude``).
Compare with the corrective run itself (same pairs, the model's own y_c) and with the oracle on
every PUNISH pair (``results/efficacy_corrective_seed100.md``).

Usage::

    python benchmarks/corrective_diagnostic.py --seed 100 --shift synth-research-referral \\
        --from benchmarks/.efficacy/runs/corrective-p8-own/synth-research-referral/seed100-n1000-noise0/trace
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, write_results  # noqa: E402


def run(seed: int, shift: str, source: Path, without: str, work: Path) -> dict:
    """One TRACE run with the oracle's y_c on the PUNISH pairs ``source`` has a corrective y_c for."""
    import torch

    from realign.config import default_cache_dir
    from realign.data import read_pairs, write_pairs
    from realign.runs.pipeline import Pipeline
    from realign.synth.bootstrap import BootstrapConfig, bootstrap
    from realign.synth.experiment import adopt_seeded_triage, outcomes, run_config, seed_triage

    torch.set_num_threads(1)
    data = work / "data" / f"seed{seed}-n1000"
    found = {r.id for r in read_pairs(source / "triage" / "triaged.jsonl").pairs if r.corrective is not None}
    run_dir = work / "diag" / f"matched-oracle-{without}" / f"{shift}-seed{seed}"
    boot = bootstrap(BootstrapConfig(world_seed=seed, seed=seed), cache_dir=default_cache_dir() / "synth", progress=False)
    seed_triage(run_dir, data, shift, 0.0, seed, oracle=True)
    path = run_dir / "triage" / "triaged.jsonl"
    records = [r if r.id in found else replace(r, oracle=None) for r in read_pairs(path).pairs]
    write_pairs(path, records)
    config = run_config(run_dir, data, str(boot.path), shift, ["trace"], seed=seed, device="cpu",
                        overrides={"train": {"precision": "fp32", "punish_without_y_c": without}})
    pipeline = Pipeline(config, "corrective_diagnostic")
    adopt_seeded_triage(pipeline)
    pipeline.execute(progress=False)
    weighted = read_pairs(run_dir / "score" / "weighted.jsonl").pairs
    y_c_weights = [r.impact for r in weighted if r.category == "PUNISH" and r.oracle is not None]
    o = outcomes(run_dir, data, shift, ["base", "trace"])["trace"]
    return {"seed": seed, "shift": shift, "without_y_c": without, "punish": sum(r.category == "PUNISH" for r in records),
            "oracle_y_c": len(y_c_weights), "y_c_weights_zero": sum(w == 0 for w in y_c_weights),
            **{k: o[k] for k in ("changed_slices", "unchanged_slices", "degenerate", "benign_accuracy")}}


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=100)
    parser.add_argument("--shift", default="synth-research-referral")
    parser.add_argument("--from", dest="source", type=Path, required=True, help="A corrective run's directory.")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.efficacy"))
    parser.add_argument("--name", default="corrective_diagnostic")
    args = parser.parse_args(argv)
    rows = [run(args.seed, args.shift, args.source, without, args.work) for without in ("npo", "exclude")]
    from realign.runs.provenance import provenance

    result = {"benchmark": "corrective_diagnostic", "command": "python benchmarks/corrective_diagnostic.py " + " ".join(argv),
              "machine": machine(1, "cpu"), "rows": rows, "provenance": provenance()}
    lines = ["# Corrective responses: coverage-matched oracle y_c (diagnostic)", "", f"Command: `{result['command']}`", "",
             "TRACE (impact-weighted, defaults) with the oracle's y_c on the PUNISH pairs the corrective run found a y_c "
             "for; the other PUNISH pairs with dual NPO or left out. Values %.", "",
             "| seed | shift | other PUNISH pairs | y_c (weight 0) | changed | unchanged | degenerate | benign |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['shift']} | {r['without_y_c']} | {r['oracle_y_c']}/{r['punish']} "
                     f"({r['y_c_weights_zero']}) | {100 * r['changed_slices']:.1f} | {100 * r['unchanged_slices']:.1f} | "
                     f"{100 * r['degenerate']:.1f} | {100 * r['benign_accuracy']:.1f} |")
    write_results(args.name, result, lines + [""])
    print(f"-> {RESULTS / args.name}.md")


if __name__ == "__main__":
    main(sys.argv[1:])
