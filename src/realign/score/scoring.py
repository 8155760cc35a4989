"""Scoring Stage 2's conflict records on the model (Alg. 1 lines 9-27): the model at θ_ref in
its :class:`~.scorer.Scorer`, the gold objective(s) J and their directions v (g_J/γ or the
conjugate-gradient solve), and each process's share of the scores ⟨v, ∇ℓ_i⟩, batch by batch,
resumed from the progress files (:mod:`.progress`)."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from ..data import CONFLICT, PreferencePair
from ..modeling.loading import attach_lora, load_adapter, load_causal_lm, load_tokenizer, resolve_device
from ..objective import Term, conflict_term
from .gold import GoldBatch
from .progress import Progress
from .weights import Variant


def build_scorer(config, state, variant: Variant):
    """The model at θ_ref (seeded: a fresh LoRA adapter is drawn) with the parameter space scored
    (``params``: a LoRA adapter's, or selected modules'), in a :class:`~.scorer.Scorer`; returns
    it and the parameters."""
    import torch

    from .scorer import Scorer, select_parameters

    device = state.device if state.num_processes > 1 else resolve_device(config.device)
    torch.manual_seed(config.seed)
    needs_eager = (
        config.method == "jvp"
        or (config.hessian == "cg" and config.hvp == "exact")
        or (variant.measure == "cosine" and config.method != "exact")  # vmap has no batching rule for CPU SDPA
    )
    model = load_causal_lm(
        config.model, device=str(device), dtype=config.dtype, attn_implementation="eager" if needs_eager else None
    )
    tokenizer = load_tokenizer(config.model, padding_side="right")
    model.requires_grad_(False)
    space = config.params
    reference = None
    if config.adapter is not None:
        model = load_adapter(model, config.adapter, is_trainable=space.kind == "lora")
        if space.kind == "modules":
            model = model.merge_and_unload()
    if space.kind == "lora":
        if config.adapter is None:
            model = attach_lora(model, space.lora_r, space.lora_alpha, space.lora_targets, config.seed)
        params = {n: p for n, p in model.named_parameters() if "lora_" in n}
        for p in params.values():
            p.requires_grad_(True)
        reference = model.disable_adapter
    else:
        params = select_parameters(model, space.modules, space.last_k_blocks)
    model.eval()
    scorer = Scorer(
        model, tokenizer, params, beta=config.beta, preference_loss=config.preference_loss,
        max_length=config.max_length, batch_size=config.batch_size, device=device, reference=reference,
    )
    return scorer, params


def gold_objectives(variant: Variant, gold: GoldBatch, conflict: list[PreferencePair]) -> dict[str, list[Term]]:
    """The gold objective(s) J the records are scored against: the whole gold batch, or with a
    split variant each category's own part (the whole one where a category has none)."""
    if not variant.split:
        return {"all": gold.samples}
    objectives = {c: gold.part(c) for c in CONFLICT if gold.part(c)}
    for c in CONFLICT:
        if c not in objectives and any(r.category == c for r in conflict):
            gold.notes.append(f"{c}: no gold samples of its own; scored against the whole gold objective")
            objectives.setdefault("all", gold.samples)
    return objectives


def find_directions(config, scorer, objectives: dict[str, list[Term]], conflict: list[PreferencePair]):
    """g_J and the direction v of each objective (Alg. 1 lines 9-17): g_J/γ, or (H + γI)⁻¹ g_J by
    conjugate gradient with H on a sample of the conflict records. Returns the directions and
    the summary's account of them (norms, the solver per objective, time)."""
    from .linalg import conjugate_gradient, norm

    t0 = time.perf_counter()
    directions, solver = {}, {}
    for name, part in objectives.items():
        g_j = scorer.gradient(part)
        if config.hessian == "identity":
            directions[name] = [g / config.damping for g in g_j]
            continue
        rng = random.Random(config.seed + 1)
        h_samples = [conflict_term(r) for r in rng.sample(conflict, min(config.hessian_samples, len(conflict)))]
        hvp = (
            scorer.hvp_exact(h_samples)
            if config.hvp == "exact"
            else scorer.hvp_gauss_newton(h_samples, "central" if config.method == "exact" else config.method, config.epsilon)
        )
        result = conjugate_gradient(
            lambda u: [h + config.damping * ui for h, ui in zip(hvp(u), u)], g_j, config.cg_iters, config.cg_tol
        )
        directions[name] = result.x
        solver[name] = {"iterations": result.iterations, "relative_residual": result.relative_residual, "converged": result.converged}
    return directions, {"objectives": list(directions), "norm": {k: norm(v) for k, v in directions.items()},
                        "hessian": config.hessian, "solver": solver, "seconds": round(time.perf_counter() - t0, 3)}


def score_share(config, scorer, conflict: list[PreferencePair], directions: dict, variant: Variant, state, made: dict,
                progress: bool) -> dict:
    """This process's share of the scores (Alg. 1 lines 18-27): the batches dealt round robin to
    the processes, the records already scored in the progress files (:class:`.progress.Progress`)
    taken as they are."""
    from tqdm.auto import tqdm

    def direction_of(record: PreferencePair) -> str:
        return record.category if record.category in directions else "all"

    tracker = Progress(Path(config.out), state.process_index if state.num_processes > 1 else None, made)
    mine = _batches(scorer, conflict, directions, direction_of)[state.process_index :: state.num_processes]
    assigned = sum(len(batch) for _, batch, _ in mine)
    resumed = sum(r.id in tracker.done for _, batch, _ in mine for r in batch)
    t0 = time.perf_counter()
    forward_before = scorer.forward_sequences
    bar = tqdm(total=assigned, initial=resumed, desc="scoring", unit="rec",
               disable=not progress or not state.is_main_process, file=sys.stderr)
    for name, batch, samples in mine:
        todo = [i for i, r in enumerate(batch) if r.id not in tracker.done]
        if todo:
            values = score_batch(scorer, [samples[i] for i in todo], directions[name], config, variant.measure)
            tracker.add({batch[i].id: x for i, x in zip(todo, values)})
            bar.update(len(todo))
    bar.close()
    return {
        "scores": {r.id: tracker.done[r.id] for _, batch, _ in mine for r in batch},
        "records": assigned, "resumed": resumed, "forward_sequences": scorer.forward_sequences - forward_before,
        "seconds": time.perf_counter() - t0, "vmap_failure": scorer.vmap_failure,
    }


def _batches(scorer, conflict: list[PreferencePair], directions: dict, direction_of) -> list[tuple]:
    """(direction, records, their losses ℓ_i) for every batch of conflict records, in a fixed
    order: per direction, records of similar length together (``Scorer.batches``)."""
    batches = []
    for name in directions:
        members = [r for r in conflict if direction_of(r) == name]
        samples = [conflict_term(r) for r in members]
        batches += [(name, [members[i] for i in idx], [samples[i] for i in idx]) for idx in scorer.batches(samples)]
    return batches


def score_batch(scorer, samples: list[Term], v, config, measure: str) -> list[float]:
    """Alg. 1 lines 18-27 for one batch: ⟨v, ∇ℓ_i⟩ from batched directional derivatives (or
    per-sample autograd, ``exact``); for the ``cosine`` measure ⟨v, ∇ℓ_i⟩ / ‖∇ℓ_i‖."""
    from .linalg import flatten

    if measure == "cosine":
        return scorer.cosine_scores(samples, v, config.method).tolist()
    if config.method == "exact":
        v_flat = flatten(v)
        return [scorer.exact_score(s, v_flat) for s in samples]
    return scorer.scores(samples, v, config.method, config.epsilon).tolist()


def _scoring_path(config, variant: Variant, vmap_failure: str | None) -> str:
    """How the scores were computed, in words, for the summary."""
    if config.method == "exact":
        return "per-sample autograd"
    if variant.measure == "cosine":
        if vmap_failure:
            return f"per-sample autograd (vmap failed: {vmap_failure})"
        return "per-sample gradients batched with torch.func.vmap"
    return {"central": "batched central difference", "jvp": "batched forward-mode AD"}[config.method]


def timing_summary(config, variant: Variant, shares: list[dict], vmap_failure: str | None) -> dict:
    """How the scores were computed and how long it took, over all processes."""
    n_resumed = sum(s["resumed"] for s in shares)
    n_done = sum(s["records"] for s in shares) - n_resumed
    return {"path": _scoring_path(config, variant, vmap_failure),
            "scoring_s": round(max(s["seconds"] for s in shares), 3), "scored_now": n_done, "resumed": n_resumed,
            "forward_sequences_per_record": sum(s["forward_sequences"] for s in shares) / max(1, n_done)}
