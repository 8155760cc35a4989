"""Training speed and memory: our batched TRACE step, our DPO against TRL's, LoRA-as-reference.

Three measurements, in one run:

(a) **TRACE optimizer step.** Ours: one micro-batch of mixed terms (INVERT preference, PUNISH
    dual NPO or preference with the oracle response, RETAIN KL) through
    :func:`realign.train.run.term_losses` — one policy forward over all sequences, a reference
    forward (LoRA adapter disabled) only for the KL rows, reference log-probs precomputed once —
    then one backward pass and the optimizer step. Baseline (the reference code's structure,
    written here from docs/method.md's description): a LoRA policy and a separate full reference
    copy; per example, a policy forward of each response, a reference forward of each with the
    copy, the example's loss, one backward pass; the optimizer step after the last example.
    Same model, adapter initialisation (dropout 0), optimizer and examples, timed in alternating
    blocks in this process; the best block per side is kept. Both sides take the same optimizer
    steps on the same data, so their adapters must end equal — checked.
(b) **DPO vs TRL.** The ``dpo`` method through :func:`realign.train.run` against TRL's
    ``DPOTrainer`` (LoRA, reference = adapter disabled) on the same pairs (conversational
    format, so both tokenise identically — checked), one epoch, the same hyper-parameters.
    Throughput = non-pad tokens processed (policy and reference passes) per second of
    training (the reference pass included, whether precomputed or per step). TRL runs twice,
    with ``precompute_ref_log_probs`` off (its default) and on; the headline compares with the
    faster. Each run in its own process, alternating, best of ``--dpo-repeats``.
(c) **Memory of the reference.** Peak resident memory of a worker process that builds the
    model and takes training steps (LoRA policy, precomputed reference log-probs, KL rows)
    with the reference as the adapter-disabled model vs a second full copy; at the realistic
    ~35M shape with micro-batches of 4 terms, and at a ~300M shape with one term per
    micro-batch (the reference code's per-device batch), where the model rather than the
    activations dominates memory as it does at 7B; each without and with activation
    checkpointing (``realign train --gradient-checkpointing``), the same in both arms.

    .venv/bin/python benchmarks/train_speed.py            # ~7 min on 2 cores
    .venv/bin/python benchmarks/train_speed.py --quick    # smoke run, ~2 min
    .venv/bin/python benchmarks/train_speed.py --device cuda --parts a   # (a) on a GPU

Writes benchmarks/results/train_speed.json and .md (train_speed_cuda.* with --device cuda);
prints a one-line summary last.
"""

from __future__ import annotations

import argparse
import copy
import math
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from _common import (RESULTS, SHAPES, PeakMemory, command, finish_machine, finish_worker, lengthen, machine, mb,
                     run_worker, save_model, results_name, sync, synth_records, token_stats, worker_spec,
                     world_tokenizer, write_results)

NAME = "train_speed"
HERE = Path(__file__).resolve()
LORA = {"r": 32, "alpha": 16, "targets": ["q_proj", "v_proj"]}
#: The shape at which the model dominates memory (~310M parameters with the world tokenizer).
LARGE = {"hidden": 2048, "layers": 6, "heads": 16, "intermediate": 5504}


def with_impacts(records, seed: int):
    """Hand-set impact weights (mean 1 over the conflict records), as the tests do."""
    rng = random.Random(seed)
    out = []
    for r in records:
        if r.category in ("INVERT", "PUNISH"):
            r = replace(r, impact=rng.uniform(0.2, 1.8))
        out.append(r)
    return out


# --------------------------------------------------------------------------- (a) TRACE step


def _kl_reference_style(policy_logits, ref_logits, prompt_len: int):
    """KL(π_ref ‖ π_θ) per token over the vocabulary, averaged over the response tokens
    (one unpadded sequence; logits at position t predict token t+1)."""
    import torch

    lp = torch.log_softmax(policy_logits[0, prompt_len - 1 : -1].float(), -1)
    lr = torch.log_softmax(ref_logits[0, prompt_len - 1 : -1].float(), -1)
    return (lr.exp() * (lr - lp)).sum(-1).mean()


def _seq_logp(logits, ids, prompt_len: int):
    import torch

    logps = torch.log_softmax(logits[0, :-1].float(), -1).gather(-1, ids[0, 1:, None]).squeeze(-1)
    return logps[prompt_len - 1 :].sum()


def trace_step(model_dir: Path, records, args) -> dict:
    import torch

    from realign.modeling.loading import attach_lora
    from realign.objective.losses import LOSS_KINDS, NPO, PREFERENCE_LOSSES
    from realign.train.methods import MethodOptions, get_method
    from realign.modeling.loading import load_causal_lm, load_tokenizer
    from realign.train.dataset import TermCollator, TermDataset
    from realign.train.loss import term_losses
    from realign.train.reference import precompute_reference

    torch.set_num_threads(args.threads)
    device = args.device
    tokenizer = load_tokenizer(str(model_dir), padding_side="right")
    pad_id = tokenizer.pad_token_id
    terms = get_method("trace").terms(records, MethodOptions(alpha_kl=0.1, normalise="mean"))
    random.Random(args.seed).shuffle(terms)
    size, steps = args.step_terms, args.steps
    terms = terms[: size * steps]
    dataset = TermDataset(terms, tokenizer, 256)
    collator = TermCollator(dataset, pad_id, dataset.components)
    beta = 0.3
    options = {"beta": beta, "preference_loss": "dpo", "nll_weight": 0.0, "components": dataset.components}

    def lora_model():
        base = load_causal_lm(str(model_dir), device=device, dtype="float32")
        base.requires_grad_(False)
        return base, attach_lora(base, LORA["r"], LORA["alpha"], LORA["targets"], args.seed, dropout=0.0)

    _, ours = lora_model()
    _, theirs = lora_model()
    reference_copy = load_causal_lm(str(model_dir), device=device, dtype="float32").eval()  # a second full model
    reference_copy.requires_grad_(False)
    ours.train()
    theirs.train()
    lr = 1e-4
    opt_ours = torch.optim.AdamW([p for p in ours.parameters() if p.requires_grad], lr=lr)
    opt_theirs = torch.optim.AdamW([p for p in theirs.parameters() if p.requires_grad], lr=lr)

    start = time.perf_counter()
    precompute_reference(dataset, ours, ours.disable_adapter, pad_id, 2 * size, device, progress=False)
    sync(device)
    precompute_s = time.perf_counter() - start

    def reference_logits(model, ids, mask, **kw):
        with torch.no_grad(), model.disable_adapter():
            return model(input_ids=ids, attention_mask=mask, **kw).logits

    def ours_step(step: int) -> float:
        batch = collator([{"index": i} for i in range(step * size, (step + 1) * size)])
        batch = {k: v.to(device) for k, v in batch.items()}
        loss, _ = term_losses(ours, batch, options, reference_logits)
        loss.backward()
        opt_ours.step()
        opt_ours.zero_grad(set_to_none=True)
        return loss.detach().item()

    dpo_fn, npo_fn = PREFERENCE_LOSSES["dpo"][0], NPO[0]

    def theirs_step(step: int) -> float:
        total = 0.0
        for item in dataset.items[step * size : (step + 1) * size]:
            kind = list(LOSS_KINDS)[item.kind]
            seqs = [item.first] + ([item.second] if item.second is not None else [])
            policy, reference = [], []
            for seq in seqs:  # one forward per response, policy then the reference copy
                ids = torch.tensor([seq.ids], device=device)
                policy.append(theirs(input_ids=ids).logits)
                with torch.no_grad():
                    reference.append(reference_copy(input_ids=ids).logits)
            if kind == "kl":
                loss = _kl_reference_style(policy[0], reference[0], item.first.prompt_len)
            else:
                ratios = [
                    _seq_logp(p, torch.tensor([s.ids], device=device), s.prompt_len)
                    - _seq_logp(r, torch.tensor([s.ids], device=device), s.prompt_len)
                    for p, r, s in zip(policy, reference, seqs)
                ]
                if kind == "pref":
                    loss = dpo_fn(ratios[0] - ratios[1], beta)
                elif kind == "npo2":
                    loss = npo_fn(ratios[0], beta) + npo_fn(ratios[1], beta)
                else:
                    raise ValueError(kind)
            loss = item.weight * loss / size
            loss.backward()
            total += loss.detach().item()
        opt_theirs.step()
        opt_theirs.zero_grad(set_to_none=True)
        return total

    blocks = {"ours": [], "baseline": []}
    losses = {"ours": [], "baseline": []}
    sides = {"ours": ours_step, "baseline": theirs_step}
    for rep in range(args.repeats):
        order = ["ours", "baseline"] if rep % 2 == 0 else ["baseline", "ours"]
        for side in order:
            sync(device)
            t0 = time.perf_counter()
            values = [sides[side](s) for s in range(steps)]
            sync(device)
            blocks[side].append((time.perf_counter() - t0) / steps)
            losses[side].append(values)
            print(f"  trace step {side:8s} block {rep + 1}/{args.repeats}: {blocks[side][-1] * 1000:.1f} ms/step",
                  file=sys.stderr, flush=True)
    # both sides took the same optimizer steps on the same data from the same start
    a = {n: p for n, p in ours.named_parameters() if p.requires_grad}
    b = {n: p for n, p in theirs.named_parameters() if p.requires_grad}
    max_diff = max(float((a[n] - b[n]).abs().max()) for n in a)
    max_loss_diff = max(abs(x - y) for xs, ys in zip(losses["ours"], losses["baseline"]) for x, y in zip(xs, ys))
    ours_s, base_s = min(blocks["ours"]), min(blocks["baseline"])
    kinds = [list(LOSS_KINDS)[it.kind] for it in dataset.items]
    return {
        "terms_per_step": size,
        "steps_per_block": steps,
        "blocks": args.repeats,
        "term_kinds": {k: kinds.count(k) for k in sorted(set(kinds))},
        "tokens": {"sequences": sum(1 + (it.second is not None) for it in dataset.items),
                   "mean_tokens": round(sum(len(it.first.ids) + (len(it.second.ids) if it.second else 0)
                                            for it in dataset.items)
                                        / sum(1 + (it.second is not None) for it in dataset.items), 1)},
        "ours_ms_per_step": round(1000 * ours_s, 2),
        "baseline_ms_per_step": round(1000 * base_s, 2),
        "ours_all_blocks_ms": [round(1000 * x, 2) for x in blocks["ours"]],
        "baseline_all_blocks_ms": [round(1000 * x, 2) for x in blocks["baseline"]],
        "precompute_reference_s": round(precompute_s, 3),
        "precompute_amortised_ms_per_step": round(1000 * precompute_s / steps, 2),
        "speedup": round(base_s / ours_s, 3),
        "speedup_with_precompute": round(base_s / (ours_s + precompute_s / steps), 3),
        "max_abs_adapter_difference_after_training": float(f"{max_diff:.3g}"),
        "max_abs_step_loss_difference": float(f"{max_loss_diff:.3g}"),
        "optimizer_steps_each": args.repeats * steps,
    }


# --------------------------------------------------------------------------- (b) DPO vs TRL


def _dpo_hparams(spec: dict) -> dict:
    steps = math.ceil(spec["pairs"] / spec["batch_size"])
    return {"learning_rate": 1e-4, "scheduler": "cosine", "warmup_steps": math.ceil(0.1 * steps), "epochs": 1,
            "batch_size": spec["batch_size"], "gradient_accumulation": 1, "max_length": 256, "beta": 0.3,
            "lora": {**LORA, "dropout": 0.1}, "max_grad_norm": 1.0, "weight_decay": 0.0, "seed": 0,
            "steps": steps, "logging_steps": 1}


def _digest(sequences) -> str:
    import hashlib
    import json

    return hashlib.sha256(json.dumps(sequences).encode()).hexdigest()[:16]


def _dpo_ours_worker(spec: dict) -> dict:
    import torch

    import realign.train.run as T
    from realign.config import TrainConfig
    from realign.data import read_pairs
    from realign.train.methods import MethodOptions, get_method
    from realign.modeling.loading import load_tokenizer

    torch.set_num_threads(spec["threads"])
    h = _dpo_hparams(spec)
    timing = {"precompute_s": 0.0, "train_s": 0.0}
    precompute, train = T.precompute_reference, T.RealignTrainer.train

    def timed_precompute(*a, **k):
        t0 = time.perf_counter()
        out = precompute(*a, **k)
        timing["precompute_s"] += time.perf_counter() - t0
        return out

    def timed_train(self, *a, **k):
        t0 = time.perf_counter()
        out = train(self, *a, **k)
        timing["train_s"] += time.perf_counter() - t0
        return out

    T.precompute_reference, T.RealignTrainer.train = timed_precompute, timed_train
    cfg = TrainConfig(
        model=spec["model"], data=spec["data"], out=Path(spec["tmp"]) / f"ours-{spec['rep']}", method="dpo",
        beta=h["beta"], learning_rate=h["learning_rate"], lr_scheduler=h["scheduler"], warmup_ratio=0.1,
        epochs=h["epochs"], batch_size=h["batch_size"], gradient_accumulation=1, max_length=h["max_length"],
        weight_decay=0.0, max_grad_norm=1.0, precompute_ref=True, seed=0, logging_steps=h["logging_steps"],
        save_steps=100000, report_to=["none"], device="cpu", finetune="lora", nll_weight=0.0,
        lora={"r": LORA["r"], "alpha": LORA["alpha"], "dropout": 0.1, "targets": LORA["targets"]},
    )
    memory = PeakMemory()
    memory.reset()
    summary = T.run(cfg, progress=False)
    tokenizer = load_tokenizer(spec["model"], padding_side="right")
    terms = get_method("dpo").terms(read_pairs(spec["data"]).pairs, MethodOptions())
    dataset = T.TermDataset(terms, tokenizer, h["max_length"])
    data_tokens = sum(len(it.first.ids) + len(it.second.ids) for it in dataset.items)
    sequences = sorted(tuple(s.ids) for it in dataset.items for s in (it.first, it.second))
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    return {
        "steps": summary["steps"], "train_s": timing["train_s"], "precompute_s": timing["precompute_s"],
        "data_tokens": data_tokens, "train_loss": summary["train_loss"], "logged_losses": losses,
        "final_loss": losses[-1] if losses else None, "memory": memory.read(),
        "sequences_hash": _digest(sequences),
    }


def _dpo_trl_worker(spec: dict) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from trl import DPOConfig, DPOTrainer

    from realign.data import prompt_text, read_pairs, response_text
    from realign.modeling.loading import load_causal_lm, load_tokenizer

    torch.set_num_threads(spec["threads"])
    h = _dpo_hparams(spec)
    rows = [{"prompt": [{"role": "user", "content": prompt_text(r.prompt)}],
             "chosen": [{"role": "assistant", "content": response_text(r.chosen)}],
             "rejected": [{"role": "assistant", "content": response_text(r.rejected)}]}
            for r in read_pairs(spec["data"]).pairs]
    timing = {"precompute_s": 0.0}
    precompute = DPOTrainer._precompute_ref_logps

    def timed_precompute(self, *a, **k):
        t0 = time.perf_counter()
        out = precompute(self, *a, **k)
        timing["precompute_s"] += time.perf_counter() - t0
        return out

    DPOTrainer._precompute_ref_logps = timed_precompute
    memory = PeakMemory()
    memory.reset()
    model = load_causal_lm(spec["model"], device="cpu", dtype="float32")
    tokenizer = load_tokenizer(spec["model"], padding_side="right")
    args = DPOConfig(
        output_dir=str(Path(spec["tmp"]) / f"trl-{spec['rep']}"), per_device_train_batch_size=h["batch_size"],
        gradient_accumulation_steps=1, learning_rate=h["learning_rate"], lr_scheduler_type=h["scheduler"],
        warmup_steps=h["warmup_steps"], num_train_epochs=h["epochs"], max_length=h["max_length"], beta=h["beta"],
        loss_type=["sigmoid"], bf16=False, use_cpu=True, report_to=[], seed=0, logging_steps=h["logging_steps"],
        save_strategy="no", max_grad_norm=1.0, weight_decay=0.0, dataloader_num_workers=0, disable_tqdm=True,
        precompute_ref_log_probs=spec["precompute"],
    )
    peft_config = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], lora_dropout=0.1, target_modules=LORA["targets"],
                             bias="none", task_type="CAUSAL_LM")
    trainer = DPOTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer,
                         peft_config=peft_config)
    t0 = time.perf_counter()
    output = trainer.train()
    train_s = time.perf_counter() - t0
    ds = trainer.train_dataset
    prompt, chosen, rejected = ds["prompt_ids"], ds["chosen_ids"], ds["rejected_ids"]
    # TRL's collator keeps the first max_length tokens of prompt + completion
    data_tokens = sum(min(h["max_length"], len(p) + len(c)) + min(h["max_length"], len(p) + len(r))
                      for p, c, r in zip(prompt, chosen, rejected))
    sequences = sorted(tuple(p + x) for p, c, r in zip(prompt, chosen, rejected) for x in (c, r))
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    return {
        "steps": trainer.state.global_step, "train_s": train_s, "precompute_s": timing["precompute_s"],
        "data_tokens": data_tokens, "train_loss": output.training_loss, "logged_losses": losses,
        "final_loss": losses[-1] if losses else None, "memory": memory.read(),
        "sequences_hash": _digest(sequences),
    }


def dpo_vs_trl(model_dir: Path, data: Path, tmp: Path, args) -> dict:
    spec = {"model": str(model_dir), "data": str(data), "tmp": str(tmp), "threads": args.threads,
            "pairs": args.dpo_pairs, "batch_size": args.dpo_batch_size}
    variants = {"ours": {"worker": "dpo-ours"}, "trl": {"worker": "dpo-trl", "precompute": False}}
    if not args.skip_trl_precompute:
        variants["trl-precompute"] = {"worker": "dpo-trl", "precompute": True}
    runs: dict[str, list[dict]] = {k: [] for k in variants}
    names = list(variants)
    for rep in range(args.dpo_repeats):
        for name in names[rep % len(names):] + names[: rep % len(names)]:
            r = run_worker(HERE, {**spec, **variants[name], "rep": f"{name}-{rep}"}, args.threads)
            r["seconds"] = r["train_s"] + r["precompute_s"]
            # one epoch: every pair gets one policy and one reference pass (per step or precomputed)
            r["processed_tokens"] = 2 * r["data_tokens"]
            r["tokens_per_s"] = r["processed_tokens"] / r["seconds"]
            runs[name].append(r)
            print(f"  dpo {name:15s} run {rep + 1}/{args.dpo_repeats}: {r['seconds']:.2f} s, "
                  f"{r['tokens_per_s']:.0f} tokens/s, final loss {r['final_loss']}", file=sys.stderr, flush=True)
    best = {k: max(v, key=lambda r: r["tokens_per_s"]) for k, v in runs.items()}
    fastest_trl = max((k for k in best if k != "ours"), key=lambda k: best[k]["tokens_per_s"])
    out = {
        "hyper_parameters": _dpo_hparams(spec),
        "pairs": args.dpo_pairs,
        "repeats": args.dpo_repeats,
        "same_sequences_as_trl": all(best[k]["sequences_hash"] == best["ours"]["sequences_hash"] for k in best),
        "runs": {k: {
            "tokens_per_s": round(r["tokens_per_s"], 1),
            "seconds": round(r["seconds"], 3),
            "train_s": round(r["train_s"], 3),
            "precompute_s": round(r["precompute_s"], 3),
            "steps": r["steps"],
            "data_tokens": r["data_tokens"],
            "processed_tokens": r["processed_tokens"],
            "train_loss": r["train_loss"],
            "final_logged_loss": r["final_loss"],
            "logged_losses": r["logged_losses"],
            "peak_rss_increase_mb": r["memory"]["rss_peak_increase_mb"],
            "all_runs_tokens_per_s": [round(x["tokens_per_s"], 1) for x in runs[k]],
        } for k, r in best.items()},
        "compared_with": fastest_trl,
        "throughput_vs_trl": round(best["ours"]["tokens_per_s"] / best[fastest_trl]["tokens_per_s"], 3),
        "throughput_vs_trl_default": round(best["ours"]["tokens_per_s"] / best["trl"]["tokens_per_s"], 3),
    }
    out["final_loss_difference"] = {k: round(abs(best["ours"]["train_loss"] - best[k]["train_loss"]), 5)
                                    for k in best if k != "ours"}
    return out


# --------------------------------------------------------------------------- (c) memory


def _memory_worker(spec: dict) -> dict:
    """Build the model, take training steps with LoRA and the given reference; peak RSS."""
    import torch

    from realign.data import read_pairs
    from realign.modeling.loading import attach_lora
    from realign.train.methods import MethodOptions, get_method
    from realign.testing.tiny import tiny_llama
    from realign.train.dataset import TermCollator, TermDataset
    from realign.train.loss import term_losses
    from realign.train.reference import precompute_reference
    from contextlib import nullcontext

    torch.set_num_threads(spec["threads"])
    tokenizer = world_tokenizer(0)
    tokenizer.padding_side = "right"
    records = read_pairs(spec["data"]).pairs
    terms = get_method("trace").terms(records, MethodOptions(alpha_kl=0.1))
    by_kind: dict[str, list] = {}
    for t in terms:
        by_kind.setdefault(t.kind, []).append(t)
    # micro-batches that mix the kinds (round robin over pref, npo2, kl)
    mixed = [t for group in zip(*[by_kind[k] for k in sorted(by_kind)]) for t in group]
    size, steps = spec["terms_per_step"], spec["steps"]
    terms = mixed[: size * steps]
    dataset = TermDataset(terms, tokenizer, 256)
    collator = TermCollator(dataset, tokenizer.pad_token_id, dataset.components)
    options = {"beta": 0.3, "preference_loss": "dpo", "nll_weight": 0.0, "components": dataset.components}
    memory = PeakMemory()
    memory.reset()
    base = tiny_llama(tokenizer, seed=0, attn_implementation="sdpa", **spec["shape"])
    n_params = sum(p.numel() for p in base.parameters())
    base.requires_grad_(False)
    ref_model = copy.deepcopy(base) if spec["reference"] == "copy" else None
    if spec["checkpointing"]:  # what `realign train --gradient-checkpointing` turns on
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model = attach_lora(base, LORA["r"], LORA["alpha"], LORA["targets"], 0, dropout=0.0)
    model.train()
    if ref_model is None:
        precompute_reference(dataset, model, model.disable_adapter, tokenizer.pad_token_id, 8, "cpu", progress=False)

        def reference_logits(m, ids, mask, **kw):
            with torch.no_grad(), m.disable_adapter():
                return m(input_ids=ids, attention_mask=mask, **kw).logits
    else:
        precompute_reference(dataset, ref_model, nullcontext, tokenizer.pad_token_id, 8, "cpu", progress=False)

        def reference_logits(m, ids, mask, **kw):
            with torch.no_grad():
                return ref_model(input_ids=ids, attention_mask=mask, **kw).logits

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    t0 = time.perf_counter()
    for step in range(steps):
        batch = collator([{"index": i} for i in range(step * size, (step + 1) * size)])
        loss, _ = term_losses(model, batch, options, reference_logits)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return {"parameters": n_params, "parameter_mb": mb(4 * n_params), "steps_s": round(time.perf_counter() - t0, 2),
            "kinds": [t.kind for t in terms], "memory": memory.read(),
            "tokens": sum(len(it.first.ids) + (len(it.second.ids) if it.second else 0) for it in dataset.items)}


def memory_ratio(data: Path, args) -> dict:
    """Peak memory of LoRA-as-reference vs a reference copy, per shape, without and with
    activation checkpointing (the same in both arms: it shrinks the activations, which both
    arms hold, so the copy's weights weigh more in the ratio)."""
    configs = {"realistic": (SHAPES["realistic"], 4, 2)}
    if not args.quick:
        configs["large"] = (LARGE, 1, 3)
    out = {}
    for label, (shape, size, steps) in configs.items():
        for checkpointing in (False, True):
            res = {}
            for reference in ("lora", "copy"):
                spec = {"data": str(data), "threads": args.threads, "shape": shape, "terms_per_step": size,
                        "steps": steps, "reference": reference, "checkpointing": checkpointing, "worker": "memory"}
                res[reference] = run_worker(HERE, spec, args.threads)
                print(f"  memory {label} {reference} checkpointing={checkpointing}: "
                      f"peak +{res[reference]['memory']['rss_peak_increase_mb']:.0f} MB", file=sys.stderr, flush=True)
            lora, copy_ = res["lora"]["memory"]["rss_peak_increase_mb"], res["copy"]["memory"]["rss_peak_increase_mb"]
            out[label + ("+checkpointing" if checkpointing else "")] = {
                "shape": shape, "activation_checkpointing": checkpointing, "parameters": res["lora"]["parameters"],
                "parameter_mb": res["lora"]["parameter_mb"], "terms_per_step": size, "steps": steps,
                "kinds": res["lora"]["kinds"], "tokens": res["lora"]["tokens"],
                "lora_reference_peak_increase_mb": lora, "copy_reference_peak_increase_mb": copy_,
                "lora_reference_peak_mb": res["lora"]["memory"]["rss_peak_mb"],
                "copy_reference_peak_mb": res["copy"]["memory"]["rss_peak_mb"],
                "ratio": round(lora / copy_, 3),
            }
    return out


# --------------------------------------------------------------------------- main


def markdown(result: dict) -> list[str]:
    a, b, c = result.get("trace_step"), result.get("dpo"), result.get("memory")
    m = result["machine"]
    lines = [
        "# Training speed and memory",
        "",
        f"Machine: {m['cpus']} CPUs, torch threads {m['torch_threads']}, device {m['device']}"
        + (f" ({m['gpu']})" if "gpu" in m else "")
        + f"; load average at start {m.get('load_average')}, at the end {m.get('load_average_end')}; "
        f"command `{result.get('command')}`. "
        f"Model: {result['model']['parameters'] / 1e6:.1f}M "
        f"parameters (tiny shape), LoRA r={LORA['r']} alpha={LORA['alpha']} on {', '.join(LORA['targets'])}; "
        f"synthetic-world records, {result['model']['tokens']['mean_tokens']} tokens per sequence on average.",
        "",
    ]
    if a:
        lines += [
            "## (a) TRACE optimizer step: batched vs one example at a time with a reference copy",
            "",
            f"{a['terms_per_step']} terms per optimizer step ({', '.join(f'{k} {v}' for k, v in a['term_kinds'].items())} "
            f"over {a['steps_per_block']} steps), best of {a['blocks']} alternating blocks.",
            "",
            "| path | ms per optimizer step |",
            "|---|---:|",
            f"| per example, full reference copy (reference code's structure) | {a['baseline_ms_per_step']:.1f} |",
            f"| ours: one micro-batch, adapter-disabled reference, precomputed log-probs | {a['ours_ms_per_step']:.1f} |",
            f"| ours + reference precompute amortised over the epoch | "
            f"{a['ours_ms_per_step'] + a['precompute_amortised_ms_per_step']:.1f} |",
            "",
            f"Speedup {a['speedup']:.2f}× ({a['speedup_with_precompute']:.2f}× with the precompute amortised). "
            f"After {a['optimizer_steps_each']} identical optimizer steps the two adapters differ by at most "
            f"{a['max_abs_adapter_difference_after_training']:.2g} (step losses by {a['max_abs_step_loss_difference']:.2g}).",
            "",
        ]
    if b:
        lines += [
            f"## (b) DPO: `realign train --method dpo` vs TRL DPOTrainer ({b['pairs']} pairs, one epoch)",
            "",
            f"Same sequences as TRL: {b['same_sequences_as_trl']}. Throughput counts non-pad tokens of policy and "
            "reference passes per second of training (reference precompute included).",
            "",
            "| run | tokens/s | seconds | of which precompute | steps | train loss (mean) | last logged loss |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for k, r in b["runs"].items():
            lines.append(f"| {k} | {r['tokens_per_s']:.0f} | {r['seconds']:.2f} | {r['precompute_s']:.2f} | "
                         f"{r['steps']} | {r['train_loss']:.5f} | {r['final_logged_loss']:.5f} |")
        lines += [
            "",
            f"Ours / {b['compared_with']}: {b['throughput_vs_trl']:.2f}× (ours / TRL default: "
            f"{b['throughput_vs_trl_default']:.2f}×).",
            "",
        ]
    if c:
        lines += [
            "## (c) Peak memory: LoRA as the reference vs a second reference copy",
            "",
            "| shape | activation checkpointing | parameters | fp32 weights MB | terms per micro-batch | tokens "
            "| peak RSS increase, LoRA ref MB | with a reference copy MB | ratio |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for label, x in c.items():
            lines.append(f"| {label.split('+')[0]} | {'yes' if x['activation_checkpointing'] else 'no'} | "
                         f"{x['parameters'] / 1e6:.0f}M | {x['parameter_mb']:.0f} | {x['terms_per_step']} | "
                         f"{x['tokens']} | {x['lora_reference_peak_increase_mb']:.0f} | "
                         f"{x['copy_reference_peak_increase_mb']:.0f} | {x['ratio']:.2f} |")
        lines.append("")
    t = result["targets"]
    lines += ["## Targets", ""]
    if a:
        lines.append(f"- TRACE step >= 3× the per-example loop: {result['trace_step_speedup']:.2f}× — "
                     f"{'met' if t['trace_step_3x'] else 'NOT met'}")
    if b:
        lines.append(f"- DPO throughput >= TRL's: {result['dpo_throughput_vs_trl']:.2f}× — "
                     f"{'met' if t['dpo_ge_trl'] else 'NOT met'}")
    if c:
        lines.append(f"- memory <= 0.6× with LoRA as reference: {result['lora_reference_memory_ratio']:.2f} "
                     f"({result['memory_ratio_shape']} shape) — {'met' if t['memory_0_6'] else 'NOT met'}; "
                     f"with activation checkpointing (both arms): "
                     f"{result['lora_reference_memory_ratio_checkpointing']:.2f} — "
                     f"{'met' if t['memory_0_6_checkpointing'] else 'NOT met'}")
    lines.append("")
    return lines


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=512, help="triaged records (synthetic world)")
    parser.add_argument("--step-terms", type=int, default=16, help="(a) terms per optimizer step")
    parser.add_argument("--steps", type=int, default=8, help="(a) optimizer steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="(a) timed blocks per side (best kept)")
    parser.add_argument("--dpo-pairs", type=int, default=256, help="(b) pairs (one epoch)")
    parser.add_argument("--dpo-batch-size", type=int, default=8, help="(b) pairs per step")
    parser.add_argument("--dpo-repeats", type=int, default=2, help="(b) runs per variant (best kept)")
    parser.add_argument("--skip-trl-precompute", action="store_true", help="(b) only TRL's default configuration")
    parser.add_argument("--parts", default="a,b,c", help="which measurements: a (TRACE step), b (DPO vs TRL), "
                        "c (memory); b and c run on the CPU")
    parser.add_argument("--device", default="cpu", help="(a) cpu or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (same for every path)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, one repeat, no large shape")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.steps, args.repeats, args.dpo_pairs, args.dpo_repeats = 128, 2, 1, 32, 1
        args.skip_trl_precompute = True
    parts = {x.strip() for x in args.parts.split(",")}

    from realign.data import write_pairs
    from realign.runs.provenance import provenance

    start = time.perf_counter()
    info = machine(args.threads, args.device)
    trace = dpo = memory = None
    with tempfile.TemporaryDirectory(prefix="train-speed-") as tmp_name:
        tmp = Path(tmp_name)
        tokenizer = world_tokenizer(args.seed)
        records = with_impacts(synth_records(args.records, seed=args.seed), args.seed)
        model_dir, n_params = save_model(tmp / "model", tokenizer, SHAPES["tiny"], seed=args.seed)
        if "a" in parts:
            print("(a) TRACE step", file=sys.stderr, flush=True)
            trace = trace_step(model_dir, records, args)
        if "b" in parts:
            dpo_data = tmp / "dpo.jsonl"
            write_pairs(dpo_data, records[: args.dpo_pairs])
            print("(b) DPO vs TRL", file=sys.stderr, flush=True)
            dpo = dpo_vs_trl(model_dir, dpo_data, tmp, args)
        if "c" in parts:
            long_data = tmp / "long.jsonl"
            write_pairs(long_data, lengthen(records[:96], tokenizer, 128, 192, seed=args.seed))
            print("(c) memory", file=sys.stderr, flush=True)
            memory = memory_ratio(long_data, args)
        tokens = token_stats(records, tokenizer, 256)
    result: dict = {"benchmark": NAME}
    targets = {}
    if trace:
        result.update(trace_step_speedup=trace["speedup"],
                      trace_step_speedup_with_precompute=trace["speedup_with_precompute"])
        targets["trace_step_3x"] = trace["speedup"] >= 3
    if dpo:
        result.update(dpo_throughput_vs_trl=dpo["throughput_vs_trl"],
                      dpo_throughput_vs_trl_default=dpo["throughput_vs_trl_default"],
                      dpo_final_train_loss={k: r["train_loss"] for k, r in dpo["runs"].items()})
        targets["dpo_ge_trl"] = dpo["throughput_vs_trl"] >= 1
    if memory:
        mem_label = "large" if "large" in memory else "realistic"
        ckpt = memory[mem_label + "+checkpointing"]["ratio"]
        result.update(lora_reference_memory_ratio=memory[mem_label]["ratio"], memory_ratio_shape=mem_label,
                      lora_reference_memory_ratio_checkpointing=ckpt,
                      lora_reference_memory_ratio_realistic=memory["realistic"]["ratio"])
        targets["memory_0_6"] = memory[mem_label]["ratio"] <= 0.6
        targets["memory_0_6_checkpointing"] = ckpt <= 0.6
    result["targets"] = targets
    result.update(
        trace_step=trace, dpo=dpo, memory=memory,
        model={"shape": SHAPES["tiny"], "parameters": n_params, "vocab": len(tokenizer), "tokens": tokens},
        settings={**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "data": "realign.synth world seed 0, ground-truth triage under synth-contextual; 75% conflict, "
                          "impact weights set by hand (uniform 0.2-1.8)",
                  "memory_method": "each variant in its own process; VmHWM after a reset (/proc/self/clear_refs) "
                                   "taken before the model is built; figure = peak minus RSS at the reset"},
        command=command(),
        machine=finish_machine(info),
        provenance=provenance(),
        wall_s=round(time.perf_counter() - start, 1),
    )
    write_results(results_name(NAME, args.device), result, markdown(result), args.out_dir)
    summary = [f"{NAME} ({args.device}):"]
    if trace:
        summary.append(f"TRACE step {trace['speedup']:.2f}x the per-example loop;")
    if dpo:
        summary.append(f"DPO {dpo['throughput_vs_trl']:.2f}x TRL's tokens/s ({dpo['compared_with']});")
    if memory:
        summary.append(f"LoRA-as-reference memory {result['lora_reference_memory_ratio']:.2f}x a reference copy "
                       f"({result['memory_ratio_shape']} shape; "
                       f"{result['lora_reference_memory_ratio_checkpointing']:.2f}x with activation checkpointing)")
    print(" ".join(summary))
    return result


if __name__ == "__main__":
    spec = worker_spec(sys.argv[1:])
    if spec is not None:
        workers = {"dpo-ours": _dpo_ours_worker, "dpo-trl": _dpo_trl_worker, "memory": _memory_worker}
        finish_worker(spec, workers[spec["worker"]](spec))
    else:
        main()
