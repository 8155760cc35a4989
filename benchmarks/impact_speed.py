"""Impact-score speed: the exact per-sample path against the batched fast paths, per variant.

Stage 2 (`realign score`, :func:`realign.score.run.run`) on the same triaged records and model,
once per (variant, path), each in its own process (wall time and peak memory, see
``_common.py``). The variant is pinned (``--variants``, default ``cosine,paper``: the library's
default and the published recipe), because it decides what the fast path computes:

* ``exact``   — per record: policy forward, reference forward (adapter disabled), the loss,
  one backward pass, a dot product with v (the reference code's structure); under ``cosine``
  also the gradient's norm;
* ``central`` — (dot-product variants, e.g. ``paper``) a batched central difference along v in
  fp32 (two forward passes over each batch, no backward);
* ``jvp``     — (dot-product variants) batched forward-mode AD (one forward pass carrying
  tangents; eager attention);
* ``vmap``    — (``cosine``, whose scores need ‖∇ℓ_i‖, which no directional derivative gives) every
  record's gradient in one batched ``torch.func.vmap`` pass (one forward and one backward over
  each batch; eager attention); ``--method central`` and ``--method jvp`` both take it;
* ``forward`` — the unit of cost: one plain no-grad batched forward over the same pairs.

Forward-pass equivalents per scored record: one forward pass over both sequences of a pair
= 1, a backward pass = 2. *Counted* from the passes each path makes (exact 1 + 1 + 2 = 4,
central 2, jvp 1 forward-mode pass, vmap 1 + 2 = 3), scoring-only and amortised over the
gold-batch gradient g_J (gold_size pairs × (1 forward + 1 backward) = 3 each) — the targets use
this definition; *measured* as the path's time per record in the stage's scoring phase
(tokenising, batching and the resumable progress file included) divided by the plain batched
forward's time per pre-tokenised pair.

Shapes: ``tiny`` (the synthetic world's ~1M-parameter bootstrap shape, short texts, 512
records) and ``realistic`` (~35M parameters, 128–192-token sequences, 24 records and an
8-pair gold batch so that every path's g_J and the exact paths fit the time budget on 2 CPU
cores). Each path is timed ``--repeats`` times in rotating order and the best run is
kept (other processes share this machine: the load average at the start and the end is
recorded, with the command and the library versions). Each worker uses ``--threads`` torch
threads (default 1: with other jobs on the 2 cores, 2 threads made every path 3-10× slower and
noisy). Agreement of the fast paths with the exact scores of the same variant: Spearman rank
correlation and ‖s − s_exact‖/‖s_exact‖.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python benchmarks/impact_speed.py   # both shapes, ~20 min on 2 shared cores
    .venv/bin/python benchmarks/impact_speed.py --quick     # smoke run, ~2 min
    .venv/bin/python benchmarks/impact_speed.py --device cuda --repeats 1 --realistic-repeats 1 \
        --realistic-pairs 256 --realistic-gold-size 64 --realistic-batch-size 32   # ~5 min on an H100

Writes benchmarks/results/impact_speed.json and .md (impact_speed_cuda.* with --device cuda);
prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import (RESULTS, SHAPES, PeakMemory, command, finish_machine, finish_worker, fmt, lengthen, machine,
                     relative_error, results_name, run_worker, save_model, spearman, sync, synth_records, token_stats,
                     worker_spec, world_tokenizer, write_results)

NAME = "impact_speed"
#: The variants measured unless --variants says otherwise: the library's default and the published recipe.
VARIANTS = ("cosine", "paper")
#: Forward-pass equivalents per scored record, counted from the passes each path makes (module docstring).
COUNTED = {"exact": 4, "central": 2, "jvp": 1, "vmap": 3}
HERE = Path(__file__).resolve()


def paths(variant: str) -> dict[str, str]:
    """The paths measured under ``variant``, each label with the ``--method`` that takes it: the
    exact path, and the fast paths the variant's measure has (``cosine``: one, vmap)."""
    from realign.score.weights import VARIANTS as SCORE_VARIANTS

    if SCORE_VARIANTS[variant].measure == "cosine":
        return {"exact": "exact", "vmap": "central"}
    return {"exact": "exact", "central": "central", "jvp": "jvp"}


# --------------------------------------------------------------------------- workers


def _score_worker(spec: dict) -> dict:
    """One `realign score` run (score.run) with the given variant and method."""
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
    cfg = ScoreConfig(model=spec["model"], data=spec["data"],
                      out=Path(spec["tmp"]) / f"{spec['variant']}-{spec['path']}.jsonl", device=spec["device"],
                      variant=spec["variant"], method=spec["method"], batch_size=spec["batch_size"],
                      max_length=spec["max_length"], gold_size=spec["gold_size"], seed=0)
    memory.reset()
    start = time.perf_counter()
    summary = score.run(cfg, progress=False)
    sync(spec["device"])
    wall = time.perf_counter() - start
    import json

    rows = [json.loads(line) for line in cfg.out.read_text(encoding="utf-8").splitlines()]
    return {
        "scoring_path": summary["timing"]["path"],
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
    from realign.data import CONFLICT
    from realign.objective import conflict_term as training_loss
    from realign.modeling.loading import attach_lora
    from realign.score.scorer import Scorer
    from realign.modeling.loading import load_causal_lm, load_tokenizer

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
    """Every variant's paths and the plain forward on one shape's records and model."""
    n_records = args.pairs if label == "tiny" else args.realistic_pairs
    shape = SHAPES[label]
    tokenizer = world_tokenizer(args.seed)
    records = synth_records(n_records, seed=args.seed)
    max_length = 256
    if label == "realistic":
        records = lengthen(records, tokenizer, 128, 192, seed=args.seed)
    from realign.data import write_pairs
    from realign.data import CONFLICT

    data = tmp / f"{label}.jsonl"
    write_pairs(data, records)
    model_dir, n_params = save_model(tmp / f"{label}-model", tokenizer, shape, seed=args.seed)
    batch_size = args.batch_size if label == "tiny" else args.realistic_batch_size
    spec = {"model": str(model_dir), "data": str(data), "tmp": str(tmp), "device": args.device,
            "threads": args.threads, "batch_size": batch_size, "max_length": max_length,
            "gold_size": args.gold_size if label == "tiny" else args.realistic_gold_size,
            "sweeps": 3 if label == "tiny" else 1}
    repeats = args.repeats if label == "tiny" else args.realistic_repeats
    runs = _timed_runs(label, spec, args.variants, repeats, args.threads)
    forward = runs.pop("forward")
    fwd = min(forward, key=lambda r: r["seconds"])
    variants = {v: _variant_paths(runs[v], fwd["seconds_per_pair"]) for v in args.variants}
    return {
        "shape": {**shape, "parameters": n_params, "vocab": len(tokenizer),
                  "lora_parameters": variants[args.variants[0]]["lora_parameters"]},
        "records": n_records,
        "scored_records": sum(r.category in CONFLICT for r in records),
        "categories": {c: sum(r.category == c for r in records) for c in ("INVERT", "PUNISH", "RETAIN")},
        "punish_with_oracle": sum(r.category == "PUNISH" and r.oracle is not None for r in records),
        "tokens": token_stats(records, tokenizer, max_length),
        "batch_size": batch_size,
        "repeats": repeats,
        "plain_forward": {"ms_per_pair": round(1000 * fwd["seconds_per_pair"], 3),
                          "all_runs_s": [x["seconds"] for x in forward], "memory": fwd["memory"]},
        "variants": {v: {k: x for k, x in r.items() if k != "lora_parameters"} for v, r in variants.items()},
    }


def _timed_runs(label: str, spec: dict, variants: list[str], repeats: int, threads: int) -> dict:
    """``repeats`` runs of every (variant, path) and of the plain forward, each in its own
    process, in rotating order (no path always first); {variant: {path: [runs]}, "forward": [runs]}."""
    jobs = [(v, p, m) for v in variants for p, m in paths(v).items()] + [(None, "forward", None)]
    runs: dict = {v: {p: [] for p in paths(v)} for v in variants}
    runs["forward"] = []
    for rep in range(repeats):
        for variant, path, method in jobs[rep % len(jobs):] + jobs[: rep % len(jobs)]:
            job = {**spec, "path": path, "worker": "forward" if variant is None else "score",
                   "variant": variant, "method": method}
            result = run_worker(HERE, job, threads)
            (runs["forward"] if variant is None else runs[variant][path]).append(result)
            t = result.get("scoring_s", result.get("seconds"))
            print(f"  {label} {variant or '':7s} {path:8s} run {rep + 1}/{repeats}: {t:.2f} s", file=sys.stderr,
                  flush=True)
    return runs


def _variant_paths(runs: dict[str, list[dict]], per_pair: float) -> dict:
    """One variant's paths: the best run of each, its speed-ups over the exact path of the same
    variant, forward-pass equivalents (counted, measured) and agreement with the exact scores."""
    best = {p: min(rs, key=lambda r: r["scoring_s"]) for p, rs in runs.items()}
    exact = best["exact"]
    keys = sorted(exact["scores"])
    gold_pairs = sum(exact["gold"].values())
    out = {}
    for p, r in best.items():
        n = r["scored"]
        out[p] = {
            "scoring_path": r["scoring_path"],
            "scoring_s": r["scoring_s"],
            "scoring_s_all_runs": [x["scoring_s"] for x in runs[p]],
            "direction_s": r["direction_s"],
            "stage_wall_s": r["stage_wall_s"],
            "ms_per_record": round(1000 * r["scoring_s"] / n, 3),
            "forward_sequences_per_record": r["forward_sequences_per_record"],
            "forward_equivalents_counted": COUNTED[p],
            "forward_equivalents_counted_amortised": round(COUNTED[p] + 3 * gold_pairs / n, 3),
            "forward_equivalents_measured": round(r["scoring_s"] / n / per_pair, 3),
            "forward_equivalents_measured_amortised": round((r["scoring_s"] + r["direction_s"]) / n / per_pair, 3),
            "memory": r["memory"],
        }
        if p != "exact":
            other, ref = [r["scores"][k] for k in keys], [exact["scores"][k] for k in keys]
            out[p].update(
                speedup=round(exact["scoring_s"] / r["scoring_s"], 3),
                speedup_with_g_j=round((exact["scoring_s"] + exact["direction_s"])
                                       / (r["scoring_s"] + r["direction_s"]), 3),
                speedup_stage_wall=round(exact["stage_wall_s"] / r["stage_wall_s"], 3),
                spearman=round(spearman(ref, other), 6),
                relative_error=float(f"{relative_error(ref, other):.3g}"),
                scoring_memory_ratio_vs_exact=round(r["memory"]["scoring_peak_increase_mb"]
                                                    / max(1e-9, exact["memory"]["scoring_peak_increase_mb"]), 3),
            )
    fast = next(p for p in best if p != "exact")
    return {"paths": out, "gold_batch": exact["gold"], "truncated_sequences": exact["truncated_sequences"],
            "lora_parameters": exact["parameters"]["count"],
            "settings": {k: v for k, v in best[fast]["config"].items() if k not in ("out", "data", "model")}}


# --------------------------------------------------------------------------- report


def markdown(result: dict) -> list[str]:
    m, versions = result["machine"], result["provenance"]["versions"]
    lines = [
        "# Impact-score speed: exact per-sample autograd vs batched fast paths, per variant",
        "",
        f"Machine: {m['cpus']} CPUs, torch threads {m['torch_threads']}, device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f"; load average at start {m.get('load_average')}, at the end {m.get('load_average_end')}; "
        f"torch {versions.get('torch')}, transformers {versions.get('transformers')}. Command: `{result['command']}`. "
        "Best of the repeats per path; each path in its own process; speed-ups are against the exact path of the "
        f"same variant, in the same run. Library default variant when this ran: `{result['default_variant']}`.",
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
            f"{s['tokens']['max_tokens']}); batch size {s['batch_size']}; "
            f"plain batched forward {s['plain_forward']['ms_per_pair']:.2f} ms per pair.",
            "",
        ]
        for variant, v in s["variants"].items():
            lines += [f"### variant `{variant}`" + (" (the default)" if variant == result["default_variant"] else ""),
                      "", f"Gold batch {sum(v['gold_batch'].values())}.", "", *_path_table(v["paths"]), ""]
    lines += ["## Targets (tiny shape, each variant's default fast path)", ""]
    for variant, t in result["targets"].items():
        h = result["headline"][variant][t["path"]]
        lines += [
            f"- `{variant}`, {t['path']} ({h['scoring_path']}): {h['speedup']:.2f}× faster than exact "
            f"({h['speedup_with_g_j']:.2f}× with g_J), >= 20× {'met' if t['speedup_20x'] else 'NOT met'}; "
            f"<= 3 forward-pass equivalents per record counted, amortised over g_J: "
            f"{h['forward_equivalents_counted_amortised']:.2f} {'met' if t['forward_equivalents_3'] else 'NOT met'}, "
            f"measured {h['forward_equivalents_measured']:.2f} "
            f"{'met' if t['forward_equivalents_3_measured'] else 'NOT met'} (the stage's scoring time includes "
            "tokenising and the resumable progress file, the plain forward does not); "
            f"Spearman {h['spearman']:.6f}, rel. error {h['relative_error']:.3g}: "
            f"{'met' if t['agreement'] else 'NOT met'}"
            + (f"; realistic shape {h['realistic_speedup']:.2f}×" if "realistic_speedup" in h else ""),
        ]
    return lines + [""]


def _path_table(paths: dict) -> list[str]:
    lines = ["| path | how | scoring s | ms/record | speedup vs exact | with g_J | fwd-eq counted (amortised) "
             "| fwd-eq measured (amortised) | Spearman | rel. error | peak memory MB: scoring / stage |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p, r in paths.items():
        lines.append(
            f"| {p} | {r['scoring_path']} | {r['scoring_s']:.2f} | {r['ms_per_record']:.2f} | "
            f"{fmt(r.get('speedup', 1.0))}× | {fmt(r.get('speedup_with_g_j', 1.0))}× | "
            f"{r['forward_equivalents_counted']} ({r['forward_equivalents_counted_amortised']:.2f}) | "
            f"{r['forward_equivalents_measured']:.2f} ({r['forward_equivalents_measured_amortised']:.2f}) | "
            f"{fmt(r.get('spearman', 1.0), 6)} | {fmt(r.get('relative_error', 0.0))} | "
            f"{r['memory']['scoring_peak_increase_mb']:.0f} / {r['memory']['stage_peak_increase_mb']:.0f}"
            + (f" (CUDA {r['memory']['cuda_scoring_peak_increase_mb']:.0f} / {r['memory']['cuda_stage_peak_mb']:.0f})"
               if "cuda_stage_peak_mb" in r["memory"] else "")
            + " |"
        )
    return lines


def headline(shapes: dict, variant: str) -> dict:
    """Per fast path of ``variant``, the figures the README's table shows: the tiny shape's (or the
    first measured), with the realistic shape's speed-up where it was measured."""
    head = shapes.get("tiny") or next(iter(shapes.values()))
    keys = ("scoring_path", "speedup", "speedup_with_g_j", "forward_equivalents_counted",
            "forward_equivalents_counted_amortised", "forward_equivalents_measured",
            "forward_equivalents_measured_amortised", "spearman", "relative_error")
    out = {}
    for p, r in head["variants"][variant]["paths"].items():
        if p == "exact":
            continue
        out[p] = {k: r[k] for k in keys}
        if "realistic" in shapes:
            rr = shapes["realistic"]["variants"][variant]["paths"][p]
            out[p].update(realistic_speedup=rr["speedup"], realistic_speedup_with_g_j=rr["speedup_with_g_j"],
                          realistic_forward_equivalents_measured=rr["forward_equivalents_measured"])
    return out


def targets(fast: str, h: dict) -> dict:
    """The targets, checked on a variant's default fast path ``fast`` (its headline figures ``h``)."""
    return {"path": fast, "speedup_20x": h["speedup"] >= 20,
            "forward_equivalents_3": h["forward_equivalents_counted_amortised"] <= 3,
            "forward_equivalents_3_measured": h["forward_equivalents_measured"] <= 3,
            "agreement": h["spearman"] >= 0.99 and h["relative_error"] <= 1e-3}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated score variants, each timed on its own paths (default: %(default)s)")
    parser.add_argument("--pairs", type=int, default=512, help="triaged records at the tiny shape")
    parser.add_argument("--realistic-pairs", type=int, default=24, help="triaged records at the realistic shape")
    parser.add_argument("--shapes", default="tiny,realistic", help="comma-separated: tiny, realistic")
    parser.add_argument("--batch-size", type=int, default=32, help="records per batch (fast paths), tiny shape")
    parser.add_argument("--realistic-batch-size", type=int, default=8, help="records per batch, realistic shape")
    parser.add_argument("--gold-size", type=int, default=64, help="gold batch size B")
    parser.add_argument("--realistic-gold-size", type=int, default=8, help="gold batch size B, realistic shape")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per path (best kept), tiny shape")
    parser.add_argument("--realistic-repeats", type=int, default=2, help="timed runs per path, realistic shape")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker (same for every path)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: 64 tiny records, 1 repeat, tiny shape only")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.pairs, args.repeats, args.shapes, args.gold_size = 64, 1, "tiny", 12
    from realign.config import ScoreConfig
    from realign.runs.provenance import provenance
    from realign.score.weights import VARIANTS as SCORE_VARIANTS

    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in args.variants if v not in SCORE_VARIANTS]
    if unknown or not args.variants:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(SCORE_VARIANTS)}")

    start = time.perf_counter()
    info = machine(args.threads, args.device)
    shapes = {}
    with tempfile.TemporaryDirectory(prefix="impact-speed-") as tmp:
        for label in [s.strip() for s in args.shapes.split(",") if s.strip()]:
            print(f"{label}:", file=sys.stderr, flush=True)
            shapes[label] = measure_shape(label, args, Path(tmp))
    heads = {v: headline(shapes, v) for v in args.variants}
    result = {
        "benchmark": NAME,
        "variants": args.variants,
        "default_variant": ScoreConfig.model_fields["variant"].default,
        "headline": heads,
        "targets": {v: targets(next(iter(h)), next(iter(h.values()))) for v, h in heads.items()},
        "shapes": shapes,
        "settings": _settings(args),
        "command": command(),
        "machine": finish_machine(info),
        "provenance": provenance(),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    write_results(results_name(NAME, args.device), result, markdown(result), args.out_dir)
    print(summary_line(result))
    return result


def _settings(args) -> dict:
    return {"variants": args.variants, "pairs": args.pairs, "realistic_pairs": args.realistic_pairs,
            "batch_size": args.batch_size, "realistic_batch_size": args.realistic_batch_size,
            "gold_size": args.gold_size, "realistic_gold_size": args.realistic_gold_size,
            "repeats": args.repeats, "realistic_repeats": args.realistic_repeats, "threads": args.threads,
            "device": args.device, "seed": args.seed, "quick": args.quick,
            "data": "realign.synth world seed 0, ground-truth triage under synth-contextual; "
                    "75% conflict (INVERT = PUNISH), half the PUNISH records with an oracle response",
            "model": "random-initialised Llama-style (realign.testing.tiny.tiny_llama, sdpa attention) "
                     "with the world tokenizer; LoRA r=32 alpha=16 on q_proj,v_proj (ScoreConfig defaults)",
            "memory": "per path in its own process (CPU: VmHWM, reset via /proc/self/clear_refs; CUDA: "
                      "max_memory_allocated). scoring: peak after g_J over the RSS after g_J; stage: peak of "
                      "score.run (model load, g_J, scoring) over the RSS before it"}


def summary_line(result: dict) -> str:
    """One line: each variant's fast paths against its exact path, tiny (and realistic) shape."""
    parts = []
    for variant, h in result["headline"].items():
        paths_ = ", ".join(f"{p} {r['speedup']:.2f}x" + (f" ({r['realistic_speedup']:.2f}x realistic)"
                                                         if "realistic_speedup" in r else "")
                           for p, r in h.items())
        first = next(iter(h.values()))
        parts.append(f"{variant}: {paths_} faster than exact; Spearman {first['spearman']:.5f}, "
                     f"rel. error {first['relative_error']:.2g}")
    return f"{NAME} ({result['settings']['device']}): " + "; ".join(parts)


if __name__ == "__main__":
    spec = worker_spec(sys.argv[1:])
    if spec is not None:
        finish_worker(spec, _forward_worker(spec) if spec["worker"] == "forward" else _score_worker(spec))
    else:
        main()
