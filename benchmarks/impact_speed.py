"""Impact-score speed: the exact per-sample path against the batched fast paths.

Stage 2 (`realign score`, :func:`realign.score.run.run`) on the same triaged records and model,
once per path, each in its own process (wall time and peak memory, see ``_common.py``):

* ``exact``   — per record: policy forward, reference forward (adapter disabled), the loss,
  one backward pass, a dot product with v (the reference code's structure);
* ``central`` — the default fast path: a batched central difference along v in fp32 (two
  forward passes over each batch, no backward);
* ``jvp``     — batched forward-mode AD (one forward pass carrying tangents; eager attention);
* ``forward`` — the unit of cost: one plain no-grad batched forward over the same pairs.

Forward-pass equivalents per scored record: one forward pass over both sequences of a pair
= 1, a backward pass = 2. *Counted* from the passes each path makes (exact 1 + 1 + 2 = 4,
central 2, jvp 1 forward-mode pass), scoring-only and amortised over the gold-batch gradient
g_J (gold_size pairs × (1 forward + 1 backward) = 3 each) — the targets use this definition;
*measured* as the path's time per record in the stage's scoring phase (tokenising, batching and
the resumable progress file included) divided by the plain batched forward's time per
pre-tokenised pair.

Shapes: ``tiny`` (the synthetic world's ~1M-parameter bootstrap shape, short texts, 512
records) and ``realistic`` (~35M parameters, 128–192-token sequences, 24 records and an
8-pair gold batch so that three g_J computations and the exact path fit the time budget on
2 CPU cores). Each path is timed ``--repeats`` times in rotating order and the best run is
kept (other processes share this machine). Each worker uses ``--threads`` torch threads
(default 1: with other jobs on the 2 cores, 2 threads made every path 3-10× slower and noisy). Agreement of the fast
paths with the exact scores: Spearman rank correlation and ‖s − s_exact‖/‖s_exact‖.

    .venv/bin/python benchmarks/impact_speed.py             # both shapes, ~10 min on 2 cores
    .venv/bin/python benchmarks/impact_speed.py --quick     # smoke run, 1-2 min
    .venv/bin/python benchmarks/impact_speed.py --device cuda --realistic-pairs 256 \
        --realistic-gold-size 64 --realistic-batch-size 32 --realistic-repeats 2

Writes benchmarks/results/impact_speed.json and .md (impact_speed_cuda.* with --device cuda);
prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import (RESULTS, SHAPES, PeakMemory, fmt, finish_worker, lengthen, machine, relative_error,
                     results_name, run_worker, save_model, spearman, sync, synth_records, token_stats, worker_spec,
                     world_tokenizer, write_results)

NAME = "impact_speed"
PATHS = ("exact", "central", "jvp")
HERE = Path(__file__).resolve()


# --------------------------------------------------------------------------- workers


def _score_worker(spec: dict) -> dict:
    """One `realign score` run (score.run) with the given method."""
    import torch

    from realign.score import run as score
    from realign.config import ScoreConfig

    import accelerate, peft, transformers  # noqa: F401  (imported before the memory baseline)
    from realign.score.scorer import Scorer

    torch.set_num_threads(spec["threads"])
    memory = PeakMemory(spec["device"])
    phases: dict[str, dict] = {}
    gradient = Scorer.gradient

    def timed_gradient(self, samples):  # instrumentation: a memory reading after g_J, then a reset
        out = gradient(self, samples)
        phases["through_g_j"] = memory.read()
        memory.reset()
        return out

    Scorer.gradient = timed_gradient
    cfg = ScoreConfig(model=spec["model"], data=spec["data"], out=Path(spec["tmp"]) / f"{spec['path']}.jsonl",
                       device=spec["device"], method=spec["path"], batch_size=spec["batch_size"],
                       max_length=spec["max_length"], gold_size=spec["gold_size"], seed=0)
    memory.reset()
    start = time.perf_counter()
    summary = score.run(cfg, progress=False)
    sync(spec["device"])
    wall = time.perf_counter() - start
    import json

    rows = [json.loads(line) for line in cfg.out.read_text(encoding="utf-8").splitlines()]
    return {
        "scoring_s": summary["timing"]["scoring_s"],
        "direction_s": summary["direction"]["seconds"],
        "stage_wall_s": round(wall, 3),
        "scored": summary["timing"]["scored_now"],
        "forward_sequences_per_record": summary["timing"]["forward_sequences_per_record"],
        "gold": summary["gold"]["counts"],
        "parameters": summary["parameters"],
        "truncated_sequences": summary["truncated_sequences"],
        "memory": _phase_memory(phases.get("through_g_j"), memory.read()),
        "scores": {r["id"]: r["meta"]["impact_score"] for r in rows if "impact_score" in r.get("meta", {})},
        "config": summary["config"],
    }


def _phase_memory(through_g_j: dict | None, scoring: dict) -> dict:
    """Peak of the whole stage (model load, tokenising, g_J, scoring) over the RSS before it,
    and peak of the scoring phase alone over the RSS after g_J."""
    first = through_g_j or scoring
    out = {"rss_before_mb": first["rss_before_mb"],
           "stage_peak_mb": max(first["rss_peak_mb"], scoring["rss_peak_mb"]),
           "scoring_peak_increase_mb": scoring["rss_peak_increase_mb"]}
    out["stage_peak_increase_mb"] = round(out["stage_peak_mb"] - out["rss_before_mb"], 1)
    if "cuda_peak_allocated_mb" in scoring:
        out["cuda_stage_peak_mb"] = max(first["cuda_peak_allocated_mb"], scoring["cuda_peak_allocated_mb"])
        out["cuda_scoring_peak_increase_mb"] = scoring["cuda_peak_increase_mb"]
    return out


def _forward_worker(spec: dict) -> dict:
    """The unit of cost: plain no-grad batched forward passes over the conflict records' pairs,
    with the model prepared exactly as score.run prepares it (fresh LoRA adapter)."""
    import torch

    from realign.data import read_pairs
    from realign.score.run import CONFLICT, training_loss
    from realign.models import attach_lora
    from realign.score.scorer import Scorer
    from realign.models import load_causal_lm, load_tokenizer

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    records = [r for r in read_pairs(spec["data"]).pairs if r.category in CONFLICT]
    model = load_causal_lm(spec["model"], device=spec["device"], dtype="float32")
    tokenizer = load_tokenizer(spec["model"], padding_side="right")
    model.requires_grad_(False)
    model = attach_lora(model, 32, 16, ["q_proj", "v_proj"], 0).eval()
    params = {n: p for n, p in model.named_parameters() if "lora_" in n}
    scorer = Scorer(model, tokenizer, params, beta=0.3, preference_loss="dpo", max_length=spec["max_length"],
                    batch_size=spec["batch_size"], device=device)
    samples = [training_loss(r) for r in records]
    batches = list(scorer.batches(samples))
    memory = PeakMemory(spec["device"])
    sweeps = []
    with torch.no_grad():
        scorer.logps([samples[i] for i in batches[0]])  # warm-up
        memory.reset()
        for _ in range(spec["sweeps"]):  # best of a few sweeps over all pairs
            sync(spec["device"])
            start = time.perf_counter()
            for idx in batches:
                scorer.logps([samples[i] for i in idx])
            sync(spec["device"])
            sweeps.append(time.perf_counter() - start)
    seconds = min(sweeps)
    return {"seconds": round(seconds, 4), "sweeps_s": [round(x, 4) for x in sweeps], "pairs": len(samples),
            "seconds_per_pair": seconds / len(samples), "memory": memory.read()}


# --------------------------------------------------------------------------- one shape


def measure_shape(label: str, args, tmp: Path) -> dict:
    n_records = args.pairs if label == "tiny" else args.realistic_pairs
    shape = SHAPES[label]
    tokenizer = world_tokenizer(args.seed)
    records = synth_records(n_records, seed=args.seed)
    max_length = 256
    if label == "realistic":
        records = lengthen(records, tokenizer, 128, 192, seed=args.seed)
    from realign.data import write_pairs
    from realign.score.run import CONFLICT

    data = tmp / f"{label}.jsonl"
    write_pairs(data, records)
    model_dir, n_params = save_model(tmp / f"{label}-model", tokenizer, shape, seed=args.seed)
    batch_size = args.batch_size if label == "tiny" else args.realistic_batch_size
    spec = {"model": str(model_dir), "data": str(data), "tmp": str(tmp), "device": args.device,
            "threads": args.threads, "batch_size": batch_size, "max_length": max_length,
            "gold_size": args.gold_size if label == "tiny" else args.realistic_gold_size,
            "sweeps": 3 if label == "tiny" else 1}
    runs: dict[str, list[dict]] = {p: [] for p in (*PATHS, "forward")}
    repeats = args.repeats if label == "tiny" else args.realistic_repeats
    order = list(PATHS) + ["forward"]
    for rep in range(repeats):
        for path in order[rep % len(order):] + order[: rep % len(order)]:  # rotate: no path always first
            worker = "forward" if path == "forward" else "score"
            result = run_worker(HERE, {**spec, "path": path, "worker": worker}, args.threads)
            runs[path].append(result)
            t = result.get("scoring_s", result.get("seconds"))
            print(f"  {label} {path:8s} run {rep + 1}/{repeats}: {t:.2f} s", file=sys.stderr, flush=True)

    n_conflict = sum(r.category in CONFLICT for r in records)
    best = {p: min(runs[p], key=lambda r: r["scoring_s"]) for p in PATHS}
    fwd = min(runs["forward"], key=lambda r: r["seconds"])
    per_pair = fwd["seconds_per_pair"]
    exact_scores = best["exact"]["scores"]
    keys = sorted(exact_scores)
    gold_pairs = sum(best["exact"]["gold"].values())
    counted = {"exact": 1 + 1 + 2, "central": 2, "jvp": 1}
    paths = {}
    for p in PATHS:
        r = best[p]
        n = r["scored"]
        paths[p] = {
            "scoring_s": r["scoring_s"],
            "scoring_s_all_runs": [x["scoring_s"] for x in runs[p]],
            "direction_s": r["direction_s"],
            "stage_wall_s": r["stage_wall_s"],
            "ms_per_record": round(1000 * r["scoring_s"] / n, 3),
            "forward_sequences_per_record": r["forward_sequences_per_record"],
            "forward_equivalents_counted": counted[p],
            "forward_equivalents_counted_amortised": round(counted[p] + 3 * gold_pairs / n, 3),
            "forward_equivalents_measured": round(r["scoring_s"] / n / per_pair, 3),
            "forward_equivalents_measured_amortised": round((r["scoring_s"] + r["direction_s"]) / n / per_pair, 3),
            "memory": r["memory"],
        }
        if p != "exact":
            other = [r["scores"][k] for k in keys]
            ref = [exact_scores[k] for k in keys]
            paths[p].update(
                speedup=round(best["exact"]["scoring_s"] / r["scoring_s"], 3),
                speedup_with_g_j=round((best["exact"]["scoring_s"] + best["exact"]["direction_s"])
                                       / (r["scoring_s"] + r["direction_s"]), 3),
                speedup_stage_wall=round(best["exact"]["stage_wall_s"] / r["stage_wall_s"], 3),
                spearman=round(spearman(ref, other), 6),
                relative_error=float(f"{relative_error(ref, other):.3g}"),
                scoring_memory_ratio_vs_exact=round(r["memory"]["scoring_peak_increase_mb"]
                                                    / max(1e-9, best["exact"]["memory"]["scoring_peak_increase_mb"]), 3),
            )
    return {
        "shape": {**shape, "parameters": n_params, "vocab": len(tokenizer),
                  "lora_parameters": best["exact"]["parameters"]["count"]},
        "records": n_records,
        "scored_records": n_conflict,
        "categories": {c: sum(r.category == c for r in records) for c in ("INVERT", "PUNISH", "RETAIN")},
        "punish_with_oracle": sum(r.category == "PUNISH" and r.oracle is not None for r in records),
        "tokens": token_stats(records, tokenizer, max_length),
        "truncated_sequences": best["exact"]["truncated_sequences"],
        "gold_batch": best["exact"]["gold"],
        "batch_size": batch_size,
        "repeats": repeats,
        "plain_forward": {"ms_per_pair": round(1000 * per_pair, 3), "all_runs_s": [x["seconds"] for x in runs["forward"]],
                          "memory": fwd["memory"]},
        "paths": paths,
        "settings": {k: v for k, v in best["central"]["config"].items() if k not in ("out", "data", "model")},
    }


# --------------------------------------------------------------------------- report


def markdown(result: dict) -> list[str]:
    lines = [
        "# Impact-score speed: exact per-sample autograd vs batched fast paths",
        "",
        f"Machine: {result['machine']['cpus']} CPUs, torch threads {result['machine']['torch_threads']}, "
        f"device {result['machine']['device']}; load average at start {result['machine'].get('load_average')}. "
        "Best of the repeats per path; each path in its own process.",
        "",
        "Forward-pass equivalents per record: a forward over both sequences of a pair = 1, a backward = 2; "
        "*counted* from the passes made, *measured* as time per record / time of a plain batched forward per pair; "
        "*amortised* includes the gold-batch gradient g_J.",
        "",
    ]
    for label, s in result["shapes"].items():
        sh = s["shape"]
        lines += [
            f"## {label}: {sh['parameters'] / 1e6:.1f}M parameters (hidden {sh['hidden']}, {sh['layers']} layers), "
            f"LoRA space {sh['lora_parameters']:,} parameters",
            "",
            f"{s['records']} triaged records ({', '.join(f'{k} {v}' for k, v in s['categories'].items())}; "
            f"{s['punish_with_oracle']} PUNISH with oracle), {s['scored_records']} scored; "
            f"{s['tokens']['mean_tokens']} tokens per sequence on average ({s['tokens']['min_tokens']}–"
            f"{s['tokens']['max_tokens']}); gold batch {sum(s['gold_batch'].values())}; batch size {s['batch_size']}; "
            f"plain batched forward {s['plain_forward']['ms_per_pair']:.2f} ms per pair.",
            "",
            "| path | scoring s | ms/record | speedup vs exact | with g_J | fwd-eq counted (amortised) "
            "| fwd-eq measured (amortised) | Spearman | rel. error | peak memory MB: scoring / stage |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for p, r in s["paths"].items():
            lines.append(
                f"| {p} | {r['scoring_s']:.2f} | {r['ms_per_record']:.2f} | {fmt(r.get('speedup', 1.0))}× | "
                f"{fmt(r.get('speedup_with_g_j', 1.0))}× | {r['forward_equivalents_counted']} "
                f"({r['forward_equivalents_counted_amortised']:.2f}) | {r['forward_equivalents_measured']:.2f} "
                f"({r['forward_equivalents_measured_amortised']:.2f}) | {fmt(r.get('spearman', 1.0), 6)} | "
                f"{fmt(r.get('relative_error', 0.0))} | {r['memory']['scoring_peak_increase_mb']:.0f} / "
                f"{r['memory']['stage_peak_increase_mb']:.0f}"
                + (f" (CUDA {r['memory']['cuda_scoring_peak_increase_mb']:.0f} / {r['memory']['cuda_stage_peak_mb']:.0f})"
                   if "cuda_stage_peak_mb" in r["memory"] else "")
                + " |"
            )
        ex = s["paths"]["exact"]
        lines += ["", f"Exact path: {ex['forward_equivalents_measured'] / ex['forward_equivalents_counted']:.1f}× the time "
                  "its passes would take at the batched forward's rate (per-call overhead of one-record batches).", ""]
    t = result["targets"]
    lines += [
        "## Targets (tiny shape, default fast path `central`)",
        "",
        f"- fast path >= 20× faster: {result['speedup']:.2f}× — {'met' if t['speedup_20x'] else 'NOT met'}",
        f"- <= 3 forward-pass equivalents per sample (counted, amortised over g_J): "
        f"{result['forward_equivalents_per_sample']} scoring-only, "
        f"{result['forward_equivalents_per_sample_amortised']:.2f} amortised — "
        f"{'met' if t['forward_equivalents_3'] else 'NOT met'}; measured in time "
        f"{result['forward_equivalents_per_sample_measured']:.2f} "
        f"({'<=' if t['forward_equivalents_3_measured'] else '>'} 3; the stage's scoring time includes tokenising "
        "and writing the resumable progress file, the plain forward it is divided by does not)",
        *( [f"- realistic shape: central {result['realistic_speedup']:.2f}×, jvp {result['realistic_speedup_jvp']:.2f}×, "
             f"measured {result['realistic_forward_equivalents_measured']:.2f} forward equivalents per record"]
           if "realistic_speedup" in result else []),
        f"- Spearman >= 0.99 and relative error <= 1e-3: {result['spearman']:.6f}, {result['relative_error']:.3g} — "
        f"{'met' if t['agreement'] else 'NOT met'}",
        "",
    ]
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=512, help="triaged records at the tiny shape")
    parser.add_argument("--realistic-pairs", type=int, default=24, help="triaged records at the realistic shape")
    parser.add_argument("--shapes", default="tiny,realistic", help="comma-separated: tiny, realistic")
    parser.add_argument("--batch-size", type=int, default=32, help="records per batch (fast paths), tiny shape")
    parser.add_argument("--realistic-batch-size", type=int, default=8, help="records per batch, realistic shape")
    parser.add_argument("--gold-size", type=int, default=64, help="gold batch size B")
    parser.add_argument("--realistic-gold-size", type=int, default=8, help="gold batch size B, realistic shape")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per path (best kept), tiny shape")
    parser.add_argument("--realistic-repeats", type=int, default=1, help="timed runs per path, realistic shape")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (same for every path)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 tiny records, 1 repeat, tiny shape only")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.repeats, args.shapes, args.gold_size = 64, 1, "tiny", 12

    from realign.provenance import provenance

    start = time.perf_counter()
    info = machine(args.threads, args.device)
    shapes = {}
    with tempfile.TemporaryDirectory(prefix="impact-speed-") as tmp:
        for label in [s.strip() for s in args.shapes.split(",") if s.strip()]:
            print(f"{label}:", file=sys.stderr, flush=True)
            shapes[label] = measure_shape(label, args, Path(tmp))
    head = shapes.get("tiny") or next(iter(shapes.values()))
    central = head["paths"]["central"]
    result = {
        "benchmark": NAME,
        "speedup": central["speedup"],
        "speedup_jvp": head["paths"]["jvp"]["speedup"],
        "forward_equivalents_per_sample": central["forward_equivalents_counted"],
        "forward_equivalents_per_sample_amortised": central["forward_equivalents_counted_amortised"],
        "forward_equivalents_per_sample_measured": central["forward_equivalents_measured"],
        "spearman": central["spearman"],
        "relative_error": central["relative_error"],
        "spearman_jvp": head["paths"]["jvp"]["spearman"],
        "relative_error_jvp": head["paths"]["jvp"]["relative_error"],
    }
    if "realistic" in shapes:
        rp = shapes["realistic"]["paths"]
        result.update(realistic_speedup=rp["central"]["speedup"], realistic_speedup_jvp=rp["jvp"]["speedup"],
                      realistic_forward_equivalents_measured=rp["central"]["forward_equivalents_measured"])
    result["targets"] = {
        "speedup_20x": result["speedup"] >= 20,
        "forward_equivalents_3": central["forward_equivalents_counted_amortised"] <= 3,
        "forward_equivalents_3_measured": central["forward_equivalents_measured"] <= 3,
        "agreement": result["spearman"] >= 0.99 and result["relative_error"] <= 1e-3,
    }
    result.update(
        shapes=shapes,
        settings={"pairs": args.pairs, "realistic_pairs": args.realistic_pairs, "batch_size": args.batch_size,
                  "realistic_batch_size": args.realistic_batch_size, "gold_size": args.gold_size,
                  "realistic_gold_size": args.realistic_gold_size,
                  "repeats": args.repeats, "realistic_repeats": args.realistic_repeats, "threads": args.threads,
                  "device": args.device, "seed": args.seed, "quick": args.quick,
                  "data": "realign.synth world seed 0, ground-truth triage under synth-contextual; "
                          "75% conflict (INVERT = PUNISH), half the PUNISH records with an oracle response",
                  "model": "random-initialised Llama-style (realign.testing.tiny.tiny_llama, sdpa attention) "
                           "with the world tokenizer; LoRA r=32 alpha=16 on q_proj,v_proj (ScoreConfig defaults)",
                  "memory": "per path in its own process (CPU: VmHWM, reset via /proc/self/clear_refs; CUDA: "
                            "max_memory_allocated). scoring: peak after g_J over the RSS after g_J; stage: peak of "
                            "score.run (model load, g_J, scoring) over the RSS before it"},
        machine=info,
        provenance=provenance(),
        wall_s=round(time.perf_counter() - start, 1),
    )
    write_results(results_name(NAME, args.device), result, markdown(result), args.out_dir)
    line = (f"{NAME}: central {result['speedup']:.2f}x, jvp {result['speedup_jvp']:.2f}x faster than exact "
            f"(tiny, {head['scored_records']} records); ")
    if "realistic" in shapes:
        line += (f"realistic {result['realistic_speedup']:.2f}x / {result['realistic_speedup_jvp']:.2f}x "
                 f"({shapes['realistic']['scored_records']} records); ")
    line += (f"{result['forward_equivalents_per_sample']} fwd-eq/sample "
             f"({result['forward_equivalents_per_sample_amortised']:.2f} amortised, "
             f"{result['forward_equivalents_per_sample_measured']:.2f} measured); "
             f"Spearman {result['spearman']:.5f}, rel. error {result['relative_error']:.2g}")
    print(line)
    return result


if __name__ == "__main__":
    spec = worker_spec(sys.argv[1:])
    if spec is not None:
        finish_worker(spec, _forward_worker(spec) if spec["worker"] == "forward" else _score_worker(spec))
    else:
        main()
