"""GPU figures (issue: real models): one TRACE training step and impact scoring on a randomly
initialised Llama-style model of 0.5-1B parameters in bf16 — tokens/s and peak memory — plus
the fast impact path against the exact per-sample path on the same samples.

    python benchmarks/gpu.py --out benchmarks/results     # on a CUDA machine
    python benchmarks/gpu.py --quick --device cpu          # smoke run anywhere

Writes gpu.json and gpu.md into --out and prints a one-line summary last."""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from realign.data import INVERT, PUNISH, RETAIN, PreferencePair  # noqa: E402
from realign.objective import conflict_term as training_loss  # noqa: E402
from realign.modeling.loading import attach_lora  # noqa: E402
from realign.score.scorer import Scorer, flatten  # noqa: E402
from realign.train.methods import METHODS, MethodOptions  # noqa: E402
from realign.testing.tiny import default_corpus, tiny_tokenizer  # noqa: E402
from realign.train.dataset import TermCollator, TermDataset  # noqa: E402
from realign.train.loss import term_losses  # noqa: E402
from realign.train.reference import precompute_reference  # noqa: E402


def records(n: int, words: list[str], tokens: int, rng: random.Random) -> list[PreferencePair]:
    def text(k: int) -> str:
        return " ".join(rng.choice(words) for _ in range(k))

    out = []
    ok = {"compliant": True, "p_compliant": 1.0, "raw": ""}
    bad = {"compliant": False, "p_compliant": 0.0, "raw": ""}
    for i in range(n):
        cat = (INVERT, PUNISH, RETAIN)[i % 3]
        verdicts = {"chosen": ok if cat != PUNISH else bad, "rejected": bad}
        out.append(PreferencePair(f"r{i}", text(tokens // 4), text(tokens), text(tokens), cat, cat == INVERT,
                                  verdicts, impact=1.0 if cat != RETAIN else None))
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gib(device) -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None


def reset_peak(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hidden", type=int, default=1536)
    ap.add_argument("--layers", type=int, default=24)
    ap.add_argument("--heads", type=int, default=16)
    ap.add_argument("--intermediate", type=int, default=4096)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--tokens", type=int, default=200, help="words per response (~tokens)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--score-samples", type=int, default=256)
    ap.add_argument("--exact-samples", type=int, default=32)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--score-dtype", default="float32", choices=["float32", "bfloat16"],
                    help="weights dtype while scoring (central differences need float32)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    if args.quick:
        args.hidden, args.layers, args.heads, args.intermediate, args.vocab = 64, 2, 4, 128, 1000
        args.tokens, args.steps, args.score_samples, args.exact_samples = 20, 2, 16, 8
    device = torch.device(args.device)
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tiny_tokenizer()
    words = sorted({w for line in default_corpus() for w in line.split()})
    rng = random.Random(0)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=max(args.vocab, len(tok)), hidden_size=args.hidden, num_hidden_layers=args.layers,
        num_attention_heads=args.heads, num_key_value_heads=args.heads, intermediate_size=args.intermediate,
        max_position_embeddings=2048, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    base = LlamaForCausalLM(config).to(device=device, dtype=dtype)
    n_params = sum(p.numel() for p in base.parameters())
    base.requires_grad_(False)
    model = attach_lora(base, r=32, alpha=16, targets=["q_proj", "v_proj"], seed=0)
    lora = [p for n, p in model.named_parameters() if "lora_" in n]
    for p in lora:
        p.requires_grad_(True)
    results: dict = {"model": {"parameters": n_params, "hidden": args.hidden, "layers": args.layers,
                               "dtype": str(dtype), "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu"}}

    # ---- one TRACE training step (LoRA, reference = adapter disabled, precomputed reference log-probs)
    data = records(args.batch * (args.steps + 2), words, args.tokens, rng)
    terms = METHODS["trace"].terms(data, MethodOptions(alpha_kl=0.1))
    dataset = TermDataset(terms, tok, max_length=4 * args.tokens)
    precompute_reference(dataset, model, model.disable_adapter, tok.pad_token_id, args.batch, device, progress=False)
    collate = TermCollator(dataset, tok.pad_token_id, dataset.components)
    options = {"beta": 0.3, "preference_loss": "dpo", "nll_weight": 0.0, "components": dataset.components}

    def reference_logits(m, ids, mask):
        with torch.no_grad(), m.disable_adapter():
            return m(input_ids=ids, attention_mask=mask).logits

    optimizer = torch.optim.AdamW(lora, lr=1e-4)
    model.train()
    times, tokens = [], []
    reset_peak(device)
    for step in range(args.steps + 1):
        batch = collate([{"index": i} for i in range(step * args.batch, (step + 1) * args.batch)])
        batch = {k: v.to(device) for k, v in batch.items()}
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            loss, _ = term_losses(model, batch, options, reference_logits)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        if step > 0:  # the first step warms up kernels and the allocator
            times.append(time.perf_counter() - t0)
            tokens.append(int(batch["attention_mask"].sum()))
    results["train_step"] = {
        "terms_per_step": args.batch, "kinds": sorted({t.kind for t in terms}), "seconds_per_step": sum(times) / len(times),
        "policy_tokens_per_s": sum(tokens) / sum(times), "peak_memory_gib": peak_gib(device), "steps_timed": len(times),
    }

    # ---- impact scoring: fast (central difference, batched) vs exact per-sample autograd
    model.eval()
    model.to(getattr(torch, args.score_dtype))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.zero_()  # score at θ_ref
    params = {n: p for n, p in model.named_parameters() if "lora_" in n}
    scorer = Scorer(model, tok, params, beta=0.3, preference_loss="dpo", max_length=4 * args.tokens,
                    batch_size=args.batch, device=device, reference=model.disable_adapter)
    pool = records(args.score_samples + 48, words, args.tokens, rng)
    gold = [training_loss(r) for r in pool[: 48]]
    samples = [training_loss(r) for r in pool[48:] if r.category in (INVERT, PUNISH)]
    reset_peak(device)
    sync(device)
    t0 = time.perf_counter()
    v = scorer.gradient(gold)
    sync(device)
    gj_s = time.perf_counter() - t0
    figures = {}
    try:  # forward-mode AD needs eager attention
        model.base_model.model.set_attn_implementation("eager")
        reset_peak(device)
        sync(device)
        t0 = time.perf_counter()
        fast = []
        for idx in scorer.batches(samples):
            fast.extend(zip(idx, scorer.scores([samples[i] for i in idx], v, "jvp", 0.0).tolist()))
        sync(device)
        figures["jvp"] = (time.perf_counter() - t0, dict(fast), peak_gib(device))
    except Exception as exc:  # reported, not fatal
        results["jvp_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
    finally:
        model.base_model.model.set_attn_implementation("sdpa")
    for eps in (1e-3, 1e-2):
        reset_peak(device)
        sync(device)
        t0 = time.perf_counter()
        fast = []
        for idx in scorer.batches(samples):
            fast.extend(zip(idx, scorer.scores([samples[i] for i in idx], v, "central", eps).tolist()))
        sync(device)
        figures[eps] = (time.perf_counter() - t0, dict(fast), peak_gib(device))
    reset_peak(device)
    v_flat = flatten(v)
    sync(device)
    t0 = time.perf_counter()
    exact = {i: scorer.exact_score(samples[i], v_flat) for i in range(args.exact_samples)}
    sync(device)
    exact_s = time.perf_counter() - t0
    exact_peak = peak_gib(device)
    per_exact = exact_s / len(exact)
    ex = torch.tensor([exact[i] for i in sorted(exact)], dtype=torch.float64)
    scoring = {"samples": len(samples), "gold_gradient_s": gj_s, "exact_samples": len(exact),
               "exact_seconds_per_sample": per_exact, "exact_peak_memory_gib": exact_peak}
    for eps, (seconds, fast, peak) in figures.items():
        fa = torch.tensor([fast[i] for i in sorted(exact)], dtype=torch.float64)
        rel = float((fa - ex).norm() / ex.norm())
        ra, rb = ex.argsort().argsort().double(), fa.argsort().argsort().double()
        ra, rb = ra - ra.mean(), rb - rb.mean()
        scoring[eps if isinstance(eps, str) else f"central_eps_{eps:g}"] = {
            "seconds_per_sample": seconds / len(samples), "samples_per_s": len(samples) / seconds,
            "speedup_vs_exact": per_exact / (seconds / len(samples)), "relative_error": rel,
            "spearman": float(ra @ rb / (ra.norm() * rb.norm())), "peak_memory_gib": peak,
        }
    results["impact_scoring"] = scoring
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps({**results, "argv": sys.argv, "torch": torch.__version__}, indent=2))
    ts, sc = results["train_step"], results["impact_scoring"]
    best = sc["central_eps_0.01"]
    lines = [
        "# GPU figures", "",
        f"Model: randomly initialised Llama-style, {n_params / 1e6:.0f}M parameters, {dtype}, on {results['model']['device']}.",
        f"Command: `python benchmarks/gpu.py{' --quick' if args.quick else ''}`.", "",
        "| measurement | value |", "|---|---|",
        f"| TRACE step (LoRA r=32, {args.batch} mixed terms, ~{args.tokens} tokens/response) | {ts['seconds_per_step'] * 1e3:.0f} ms |",
        f"| policy tokens/s in training | {ts['policy_tokens_per_s']:,.0f} |",
        f"| training peak memory | {ts['peak_memory_gib'] or float('nan'):.2f} GiB |",
        f"| impact scoring, fast path (central, ε=1e-2) | {best['samples_per_s']:.1f} samples/s |",
        f"| impact scoring, exact per-sample autograd | {1 / per_exact:.1f} samples/s |",
        f"| fast vs exact speed-up | {best['speedup_vs_exact']:.1f}x |",
        f"| agreement ε=1e-2 (Spearman / rel. error) | {best['spearman']:.4f} / {best['relative_error']:.2e} |",
        f"| agreement ε=1e-3 (Spearman / rel. error) | {sc['central_eps_0.001']['spearman']:.4f} / {sc['central_eps_0.001']['relative_error']:.2e} |",
        *([f"| jvp: samples/s, speed-up, Spearman, rel. error | {sc['jvp']['samples_per_s']:.1f}, {sc['jvp']['speedup_vs_exact']:.1f}x, "
           f"{sc['jvp']['spearman']:.4f}, {sc['jvp']['relative_error']:.2e} |"] if "jvp" in sc else [f"| jvp | {results.get('jvp_error')} |"]),
        f"| scoring weights dtype | {args.score_dtype} |",
        f"| scoring peak memory fast / exact | {best['peak_memory_gib'] or float('nan'):.2f} / {exact_peak or float('nan'):.2f} GiB |",
    ]
    (out / "gpu.md").write_text("\n".join(lines) + "\n")
    print(f"gpu: {n_params / 1e6:.0f}M params, train {ts['policy_tokens_per_s']:,.0f} tok/s, "
          f"scoring {best['samples_per_s']:.1f}/s fast vs {1 / per_exact:.1f}/s exact ({best['speedup_vs_exact']:.1f}x)")


if __name__ == "__main__":
    main()
