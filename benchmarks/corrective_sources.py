"""Corrective responses without an oracle (issue 29): how often does each candidate source find
a judge-verified compliant y_c for the PUNISH pairs of a shift, and at what cost?

For each world seed and shift: the world's ground-truth triage (what the rules judge decides),
the bootstrapped old-policy model of that world, and :func:`realign.triage.corrective.attach_corrective`
run once per source alone (and once with the sources in the order given by ``--combined``), with
the run's judge (rules). Reported per source: PUNISH pairs and prompts, the share of PUNISH
pairs that get y_c, candidates, judge calls and tokens generated, and the styles of the y_c
accepted (the rules judge's reading). Every candidate is written for its own prompt.

Usage::

    python benchmarks/corrective_sources.py --seeds 100 \\
        --shifts synth-contextual-referral synth-research-referral   # results/corrective_sources.*
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine, write_results  # noqa: E402

SOURCES = ["old-responses", "samples", "style-prefix", "system-prompt"]
#: The synthetic world's responses open by naming the request's slice, "(You ask about ...)":
#: the part a response says about its own prompt, written by the model before a style prefix.
SYNTH_OPENING = r"^\([^)]*\)\s*"


def measure(data: Path, model: str, shift: str, sources: list[str], settings: dict, cache_path: Path) -> dict:
    """attach_corrective with ``sources`` on the ground-truth triage of ``shift``: its summary,
    the wall time, and the styles of the y_c accepted."""
    from realign.config import CorrectiveConfig, JudgeConfig
    from realign.data import read_pairs
    from realign.judges import make_judge
    from realign.judges.cache import VerdictCache
    from realign.synth.policies import load_policy
    from realign.triage.corrective import attach_corrective
    from realign.triage.judging import TriageStats

    records = read_pairs(data / "truth" / f"{shift}.jsonl").pairs
    for r in records:
        r.oracle = None
    config = CorrectiveConfig(sources=sources, model=model, device="cpu", **settings)
    start = time.perf_counter()
    with VerdictCache(cache_path) as cache:
        summary = attach_corrective(records, config, load_policy(shift), make_judge(JudgeConfig(backend="rules")),
                                    cache, TriageStats(), progress=False)
    summary["wall_s"] = round(time.perf_counter() - start, 1)
    styles = Counter(next((w[6:] for w in str(r.corrective["verdict"].get("raw", "")).split() if w.startswith("style=")),
                          "?") for r in records if r.corrective is not None)
    summary["styles"] = dict(styles)
    summary["on_topic"] = on_topic(records)
    slices = Counter(r.meta.get("slice") for r in records if r.category == "PUNISH")
    got = Counter(r.meta.get("slice") for r in records if r.category == "PUNISH" and r.corrective is not None)
    summary["by_slice"] = {s: {"punish": n, "with_y_c": got.get(s, 0)} for s, n in sorted(slices.items())}
    return summary


def on_topic(records) -> dict:
    """How many y_c name their own prompt's topic, and how many are exactly a response the world
    writes for their prompt (the world's truth checks neither: a candidate about another topic,
    or a garbled one that contains a referral phrase, passes the rules judge)."""
    from realign.synth import World

    world = World(0)  # topic names are the same in every world
    from realign.synth.export import prompt_from_meta

    found = [r for r in records if r.corrective is not None and r.meta.get("topic")]
    hits = sum(world.topic(r.meta["topic"])[1].name in str(r.corrective["response"]) for r in found)
    exact = sum(str(r.corrective["response"]) in {world.response(prompt_from_meta(r.meta), style)
                                                   for style in ("referral", "helpful", "refusal")} for r in found)
    logprobs = [r.corrective["logprob"] for r in found if r.corrective.get("logprob") is not None]
    return {"with_y_c": len(found), "naming_their_topic": hits, "world_text": exact,
            "mean_logprob": round(sum(logprobs) / len(logprobs), 3) if logprobs else None}


def markdown(result: dict) -> list[str]:
    lines = ["# Corrective responses: sources of y_c for PUNISH pairs (no oracle)", "",
             f"Command: `{result['command']}`  ", f"Machine: {result['machine']['cpus']} CPUs; settings "
             f"`{json.dumps(result['settings'])}`. Judge: the rules judge (the world's ground truth). "
             "Every candidate is written by the model for its own prompt (old responses: to the exact same prompt).",
             *([result["note"]] if result.get("note") else []), "",
             "| seed | shift | sources | PUNISH pairs (prompts) | with y_c | candidates | judged (cache or call) | tokens generated "
             "| wall s | y_c styles | y_c naming their prompt's topic | y_c = the world's own text | y_c mean token log-prob |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
    for row in result["rows"]:
        s = row["summary"]
        tokens = sum(v["generated_tokens"] for v in s["sources"].values())
        calls = sum(v.get("judged", v["judge_calls"]) for v in s["sources"].values())
        cands = sum(v["candidates"] for v in s["sources"].values())
        share = s["pairs_with_y_c"] / s["punish_pairs"] if s["punish_pairs"] else 0.0
        lines.append(f"| {row['seed']} | {row['shift']} | {' → '.join(row['sources'])} | {s['punish_pairs']} "
                     f"({s['punish_prompts']}) | {s['pairs_with_y_c']} ({100 * share:.1f} %) | {cands} | {calls} | "
                     f"{tokens} | {s['wall_s']} | {json.dumps(s['styles'])} | "
                     f"{s['on_topic']['naming_their_topic']}/{s['on_topic']['with_y_c']} | "
                     f"{s['on_topic'].get('world_text', '–')}/{s['on_topic']['with_y_c']} | {s['on_topic'].get('mean_logprob', '–')} |")
    return lines + [""]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100])
    parser.add_argument("--shifts", nargs="+", default=["synth-contextual-referral", "synth-research-referral"])
    parser.add_argument("--sources", nargs="+", default=SOURCES, help="Each measured alone.")
    parser.add_argument("--combined", nargs="*", default=["old-responses", "style-prefix", "samples"],
                        help="Also measured: these sources in this order (empty: none).")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--prefixes", type=int, default=4, help="style-prefix: distinct prefixes tried.")
    parser.add_argument("--work", type=Path, default=Path("benchmarks/.efficacy"))
    parser.add_argument("--name", default="corrective_sources")
    parser.add_argument("--note", default="", help="A line for the results header.")
    args = parser.parse_args(argv)

    import torch

    from realign.config import default_cache_dir
    from realign.synth.bootstrap import BootstrapConfig, bootstrap
    from realign.synth.experiment import prepare_data
    from realign.synth.policies import SHIFTS, VALIDATION_SHIFTS

    torch.set_num_threads(1)
    settings = {"samples": args.samples, "temperature": args.temperature, "prefixes": args.prefixes,
                "opening": SYNTH_OPENING}
    rows = []
    for seed in args.seeds:
        data = prepare_data(args.work / "data" / f"seed{seed}-n1000", seed=seed, shifts=(*SHIFTS, *VALIDATION_SHIFTS))
        model = bootstrap(BootstrapConfig(world_seed=seed, seed=seed), cache_dir=default_cache_dir() / "synth",
                          progress=False).path
        for shift in args.shifts:
            runs = [[s] for s in args.sources] + ([args.combined] if args.combined else [])
            for sources in runs:
                summary = measure(data, str(model), shift, sources, settings, args.work / "corrective_cache.sqlite")
                rows.append({"seed": seed, "shift": shift, "sources": sources, "summary": summary})
                print(f"seed {seed} {shift} {sources}: {summary['pairs_with_y_c']}/{summary['punish_pairs']} "
                      f"({summary['wall_s']} s)", file=sys.stderr, flush=True)
    from realign.runs.provenance import provenance

    shown = [a for i, a in enumerate(argv) if a != "--note" and (i == 0 or argv[i - 1] != "--note")]
    result = {"benchmark": "corrective_sources", "command": "python benchmarks/corrective_sources.py " + " ".join(shown),
              "settings": settings, "machine": machine(1, "cpu"), "rows": rows, "note": args.note,
              "provenance": provenance()}
    write_results(args.name, result, markdown(result))
    print(f"-> {RESULTS / args.name}.md")


if __name__ == "__main__":
    main(sys.argv[1:])
