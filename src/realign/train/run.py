"""Stage 3 — re-alignment training on the Hugging Face Trainer (Alg. 1 lines 34-46), on files:
read the records, build the method's terms (:mod:`.methods`), train, save the adapter (PEFT) or
model (safetensors) with the resolved config and ``train_summary.json``.

The parts: the term dataset (:mod:`.dataset`), the loss (:mod:`.loss`), the reference pass
(:mod:`.reference`), the Trainer (:mod:`.trainer`; online-dpo's, :mod:`.online`), checkpoints and
resume (:mod:`.checkpoints`).
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

from ..config import resolved
from ..data import read_pairs
from ..errors import RealignError
from ..runs.files import check_output_paths, folder_lock, write_json, write_text, write_yaml
from ..judges import make_judge
from ..judges.cache import VerdictCache
from ..metrics.costs import FROM_SAMPLES, FROM_TRIAGE
from ..modeling.loading import attach_lora, load_adapter, load_causal_lm, load_tokenizer, resolve_device
from ..policy import Policy, resolve_policy
from ..runs.provenance import input_digest, model_digest, provenance
from ..runs.provenance import produced_by as record
from ..runs.stage import Paths, output_digests, pad_token_id, process_state
from .checkpoints import clear_unresumed, resume_point, save_trained, train_from
from .dataset import TermCollator, TermDataset
from .methods import MethodOptions, get_method
from .online import OnlineTrainer, PromptDataset, collate_indices
from .reference import reference_copy, reference_logps
from .sampling import Budget, Sampler, old_prompts, prepare_samples, triage_judgements
from .trainer import RealignTrainer, build_trainer


def produced_by(config) -> dict:
    """What produces a training run: the resolved settings (less logging, checkpoint cadence,
    device and cache; less the sampling settings, policy and judge for a method that does not
    sample) and the content of the records, the model and the adapter, and for a method that
    samples the policy's hash and the judge's identity (:func:`realign.runs.provenance.produced_by`).
    Checkpoints and precomputed reference log-probs are resumed, and ``realign run`` skips the
    stage, only on an exact match."""
    inputs = {"data": input_digest(config.data)}
    inputs.update({name: model_digest(getattr(config, name)) for name in ("model", "adapter")})
    ignore = ["out", "resume", "device", "logging_steps", "report_to", "save_steps", "save_total_limit", "cache"]
    if get_method(config.method).samples:
        if config.policy is not None and config.judge is not None:
            inputs["policy"] = Policy.load(resolve_policy(config.policy)).hash
            inputs["judge"] = make_judge(config.judge).identity
    else:  # settings only the sampling methods read: not part of the other methods' key
        ignore += ["policy", "judge", "sampling"]
    return record(config, inputs, ignore=ignore)


def run(config, progress: bool = True) -> dict:
    """Stage 3 on files: read records, build the method's terms, train, save the adapter
    (PEFT) or model (safetensors) with the resolved config and a training summary."""
    check_output_paths(*paths(config))
    with folder_lock(config.out):
        return _run(config, progress)


def _run(config, progress: bool) -> dict:
    """The stage's work, under the lock of its run folder."""
    start = time.perf_counter()
    method = get_method(config.method)
    if method.samples and (config.policy is None or config.judge is None):
        raise RealignError(f"method {method.name!r} samples the model and judges the samples: set `policy` and `judge` "
                           "in the train config (`realign run` gives it the run's)")
    out = Path(config.out)
    made = produced_by(config)
    resume_from = resume_point(config, out, made)
    loaded = read_pairs(config.data, invert_order=config.invert_order)
    if loaded.duplicates_line():
        print(f"train: {loaded.duplicates_line()}", file=sys.stderr)
    records = loaded.pairs
    options = MethodOptions(alpha_kl=config.alpha_kl, normalise=config.normalise, retain_pref=config.retain_pref,
                            retain_keep=config.retain_keep, objective=config.sampling.objective,
                            punish_without_y_c=config.punish_without_y_c)
    terms = method.terms(records, options) if method.samples is None else None
    if terms == [] or (method.samples and not records):
        raise RealignError(f"{config.data}: method {method.name!r} finds nothing to train on in {len(records)} records")

    state = process_state(config.device)
    if method.samples and state.num_processes > 1:
        raise RealignError(f"method {method.name!r} samples the model: run it in one process, not under "
                           "`accelerate launch` with several")
    device = state.device if state.num_processes > 1 else resolve_device(config.device)
    clear_unresumed(out, resume_from, state)
    with _sample_cache(config, method) as cache:
        trainer, tokenizer, prepared = _setup(config, method, records, options, terms, cache, device, state,
                                              resume_from, made, progress)
        train_loss = train_from(trainer, resume_from, out / "checkpoints")
    final = save_trained(config, trainer, tokenizer, out, state)
    summary = {
        "stage": "train",
        "method": {"name": method.name, "description": method.description},
        "terms": _term_counts(trainer),
        "records": len(records),
        **_trained(config, trainer, train_loss),
        "budget": _budget(config, method, records, trainer, prepared),
        "saved": str(final),
        "resumed": bool(resume_from),
        "wall_s": round(time.perf_counter() - start, 3),
        "config": resolved(config),
        "produced_by": made,
        "provenance": provenance(),
    }
    if prepared is not None:
        summary["samples"] = {k: prepared[k] for k in ("prompts", "samples", "passed", "failed", "abstained")}
    if state.is_main_process:
        summary["outputs"] = output_digests(out / "train_summary.json", [final])
        write_json(out / "train_summary.json", summary)
    state.wait_for_everyone()
    return summary


def _sample_cache(config, method):
    """The verdict and sample cache of a method that samples the model (a context; nothing for the others)."""
    if not method.samples:
        return nullcontext(None)
    return VerdictCache(config.cache_path(), commit_every=32)


def _setup(config, method, records, options, terms, cache, device, state, resume_from, made: dict,
           progress: bool) -> tuple[RealignTrainer, object, dict | None]:
    """The model, the method's terms (self-distill: from its judged samples, drawn first) and the
    trainer, with the budget of a resumed checkpoint taken back; the tokenizer; and self-distill's
    samples summary (None for the other methods)."""
    out = Path(config.out)
    model, tokenizer, reference = _load(config, device)
    pad_id = pad_token_id(tokenizer)
    budget, prepared = Budget(), None
    if method.samples == "before":
        samples, prepared = prepare_samples(config, records, model, tokenizer, budget, progress)
        terms = method.terms(records, replace(options, samples=tuple(samples)))
        if not terms:
            raise RealignError(f"{out / 'samples.jsonl'}: method {method.name!r} finds nothing to train on: the judge "
                               f"passed {prepared['passed']} and failed {prepared['failed']} of {len(samples)} samples")
    if state.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_yaml(out / "train_config.yaml", resolved(config))
        write_text(out / ".config_key", json.dumps(made))
    if method.samples == "online":
        trainer = _online_trainer(config, method, options, old_prompts(records), model, tokenizer, cache, budget,
                                  state, device, progress)
    else:
        dataset = TermDataset(terms, tokenizer, config.max_length)
        reference_logps(config, dataset, model, reference, pad_id, device, state, resume_from, progress)
        trainer = build_trainer(config, method, model, dataset, TermCollator(dataset, pad_id, dataset.components),
                                dataset.components, reference_copy(config, model, dataset), state, device, progress,
                                budget=budget)
    if resume_from:
        trainer.load_budget_state(resume_from)
    return trainer, tokenizer, prepared


def _online_trainer(config, method, options, prompts, model, tokenizer, cache, budget, state, device, progress):
    """online-dpo's trainer (:mod:`realign.train.online`): micro-batches of prompts, sampled and judged each step."""
    if config.sampling.judge_budget is not None and config.sampling.judge_budget < 2 * config.batch_size * config.gradient_accumulation:
        raise RealignError(f"field 'sampling.judge_budget': {config.sampling.judge_budget} does not pay for one step of "
                           f"{method.name!r} (2 samples x {config.batch_size} prompts x {config.gradient_accumulation} "
                           "micro-batches judged)")
    sampler = Sampler(config, model, tokenizer, budget, cache)
    ref_model = reference_copy(config, model, None)
    return build_trainer(config, method, model, PromptDataset(prompts), collate_indices, ["L_pref"], ref_model, state,
                         device, progress, budget=budget, trainer_class=OnlineTrainer, prompts=prompts,
                         sampler=sampler, realign_method=method, options=options, tokenizer=tokenizer,
                         max_length=config.max_length, pad_id=pad_token_id(tokenizer))


def _term_counts(trainer: RealignTrainer) -> dict[str, int]:
    """Terms per component: of the term dataset, or (online-dpo) the pairs the judge split."""
    dataset = trainer.train_dataset
    if isinstance(dataset, TermDataset):
        return {c: sum(1 for it in dataset.items if it.component == c) for c in dataset.components}
    return {"L_pref": len(getattr(trainer, "pairs", []))}


def _budget(config, method, records, trainer: RealignTrainer, prepared: dict | None) -> dict:
    """train_summary.json's ``budget``: judge calls (a method that samples: the distinct responses
    it had judged; any other: those its records' triage judged — TRACE's budget), the judge
    backend's requests, generated and training tokens, and wall time (training, plus
    self-distill's sampling)."""
    trainer.tick()
    b = trainer.budget
    own = method.samples is not None
    return {
        "judge_calls": b.judgements if own else triage_judgements(records),
        "judge_calls_from": FROM_SAMPLES if own else FROM_TRIAGE,
        "judge_budget": config.sampling.judge_budget if own else None,
        "backend_calls": b.backend_calls if own else None,
        "generated_tokens": b.generated_tokens,
        "training_tokens": b.training_tokens,
        "wall_s": round(b.train_s + (prepared["wall_s"] if prepared else 0.0), 3),
    }


def paths(config) -> Paths:
    """What the stage reads and writes: checked before anything is loaded, so that no output
    changes an input (no input lies in the run folder, and the run folder is not in the model's,
    whose digest would then change with every run, so that resuming never matched) and every
    output can be written."""
    return Paths(
        {"--data": config.data, "--model": config.model, "--adapter": config.adapter},
        {f"the run's {name}": Path(config.out) / name
         for name in ("train_config.yaml", ".config_key", "reference_logps.pt", "train_summary.json", "samples.jsonl",
                      "samples.summary.json")},
        {"--out": config.out, **{f"the run's {name}/": Path(config.out) / name for name in (
            "checkpoints", "adapter", ".adapter.partial", ".adapter.old", "model", ".model.partial", ".model.old")}},
    )


def _load(config, device):
    """The model to train (any ``adapter`` merged in; with LoRA, a fresh adapter on the frozen
    model), its tokenizer, and the context in which it computes as the reference."""
    model = load_causal_lm(config.model, device=str(device), dtype="float32")
    tokenizer = load_tokenizer(config.model, padding_side="right")
    if config.adapter is not None:
        model = load_adapter(model, config.adapter).merge_and_unload()
    if config.finetune == "lora":
        model.requires_grad_(False)
        model = attach_lora(model, config.lora.r, config.lora.alpha, config.lora.targets, config.seed, config.lora.dropout)
        return model, tokenizer, model.disable_adapter
    return model, tokenizer, nullcontext


def _trained(config, trainer: RealignTrainer, train_loss: float) -> dict:
    """The summary's account of the training: truncation, processes, steps, losses."""
    return {
        "truncated_sequences": getattr(trainer.train_dataset, "truncated", None),
        "processes": {
            "count": trainer.args.world_size,
            "per_device_batch": config.batch_size,
            "global_batch": config.batch_size * config.gradient_accumulation * trainer.args.world_size,
        },
        "steps": trainer.state.global_step,
        "train_loss": train_loss,
        "log_history": trainer.state.log_history,
    }
