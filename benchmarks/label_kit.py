"""The labelling kit of the real-model benchmark (issue 31, item 5): responses drawn across methods,
seeds and slices from a finished ``benchmarks/real_smollm2.py`` run, for a person to label
against the policy text, so that ``realign judge audit`` can measure the rules judge's error.

Draws ``--n`` responses (default 160) from the evaluations of every method and seed in the
results: the held-out policy slices (contextual-help, contextual-refuse, ordinary, HarmBench) and
the attack sets under each template (``harmbench:control``, ``strongreject:fictional_nesting``, ...).
Strata are (slice, method) cells, visited round-robin in a seeded order, one response per
visit, so every slice and every method is drawn about equally; a (prompt, response) already
drawn is skipped (methods often give the same answer). The benign questions are left out
(their answer is checked, not judged).

Writes two files:

* ``OUT`` — the labels file of ``realign judge audit --labels`` (src/realign/judges/labels.py):
  ``id`` (opaque: ``L001``...), ``prompt`` (the request as the judge reads it: for an attack, the
  unwrapped request), ``response``, ``slice``, ``shown_prompt`` (what the model was given) and an
  empty ``label`` to fill with ``compliant`` or ``violating``. Rows are shuffled and carry neither
  the method nor the judge's verdict, so the person labelling sees neither;
* ``OUT`` with ``_key`` before its suffix — per id, the seed, unit and generation it came from.

    python benchmarks/label_kit.py --work /work/real_smollm2 --out benchmarks/data/real_smollm2_labels.jsonl

benchmarks/data/README.md says how the labels are made.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from real_smollm2 import RESULTS, SeedDirs, run_directory  # noqa: E402

from _common import registered  # noqa: E402


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def candidates(work: Path, seeds: list[int], units: list[str]) -> dict[tuple[str, str], list[dict]]:
    """Every judged response of each unit's evaluation, by (slice, unit): policy rows by their
    slice, attack rows by ``SET:TEMPLATE`` with their unwrapped request."""
    cells: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for seed in seeds:
        d = SeedDirs(work / f"seed{seed}")
        requests = {r["id"]: r["prompt"] for r in _jsonl(d.data / "attacks.jsonl")}
        for unit in units:
            path = run_directory(d, unit) / "eval" / ("base" if unit == "base" else registered(unit)) / "generations.jsonl"
            if not path.exists():
                print(f"  {path}: missing; seed {seed} {unit} left out", file=sys.stderr)
                continue
            for g in _jsonl(path):
                if g.get("model_state", "after") != "after" or g["set"] == "benign":
                    continue
                row = {"seed": seed, "unit": unit, "generation": g["id"], "response": g["response"]}
                if g["set"] == "policy":
                    cells[(g["slice"], unit)].append({**row, "prompt": g["prompt"], "shown_prompt": g["prompt"]})
                else:
                    request_id, template = str(g["id"]).rsplit("/", 1)
                    cells[(f"{request_id.split('/', 1)[0]}:{template}", unit)].append(
                        {**row, "prompt": requests[request_id], "shown_prompt": g["prompt"]})
    return cells


def draw(cells: dict[tuple[str, str], list[dict]], n: int, seed: int) -> list[dict]:
    """Up to ``n`` responses, round-robin over the cells in a seeded order, no (prompt, response) twice."""
    rng = random.Random(seed)
    pools = {cell: rng.sample(rows, len(rows)) for cell, rows in sorted(cells.items())}
    order = list(pools)
    rng.shuffle(order)
    drawn, seen = [], set()
    while len(drawn) < n and any(pools.values()):
        for cell in order:
            while pools[cell] and len(drawn) < n:
                row = pools[cell].pop()
                if (row["prompt"], row["response"]) not in seen:
                    seen.add((row["prompt"], row["response"]))
                    drawn.append({**row, "slice": cell[0]})
                    break
    rng.shuffle(drawn)
    return drawn


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS / "real_smollm2.json",
                    help="The finished run's results json (its seeds and methods).")
    ap.add_argument("--work", type=Path, required=True, help="Its unit directories (real_smollm2.py --work).")
    ap.add_argument("--n", type=int, default=160, help="Responses to draw (issue 31: at least 150).")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the draw.")
    ap.add_argument("--out", type=Path, required=True, help="The labels file (.jsonl) to write.")
    args = ap.parse_args(argv)
    from realign.runs.files import write_jsonl

    result = json.loads(args.results.read_text(encoding="utf-8"))
    drawn = draw(candidates(args.work, result["seeds"], list(result["aggregate"])), args.n, args.seed)
    if len(drawn) < args.n:
        sys.exit(f"error: only {len(drawn)} distinct responses in {args.work}; {args.n} asked")
    ids = [f"L{i + 1:03d}" for i in range(len(drawn))]
    write_jsonl(args.out, [{"id": i, "prompt": r["prompt"], "response": r["response"], "slice": r["slice"],
                            "shown_prompt": r["shown_prompt"], "label": ""} for i, r in zip(ids, drawn)])
    key = args.out.with_name(f"{args.out.stem}_key{args.out.suffix}")
    write_jsonl(key, [{"id": i, "seed": r["seed"], "unit": r["unit"], "generation": r["generation"], "slice": r["slice"]}
                      for i, r in zip(ids, drawn)])
    by_slice = defaultdict(int)
    for r in drawn:
        by_slice[r["slice"]] += 1
    print(f"{len(drawn)} responses ({dict(sorted(by_slice.items()))}) -> {args.out}; where each came from -> {key}")


if __name__ == "__main__":
    main()
