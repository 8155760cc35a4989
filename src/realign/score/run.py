"""Stage 2 — alignment impact scores (Alg. 1 lines 9-31; gold batch: Alg. 2).

For each conflict record i (INVERT or PUNISH) the score is the influence of up-weighting ℓ_i
on the policy-agreement objective J, w_i = g_Jᵀ H⁻¹ ∇ℓ_i at θ_ref:

* ``hessian="identity"`` (the paper): H ≈ γI, so w_i = ⟨g_J, ∇ℓ_i⟩ / γ;
* ``hessian="cg"``: v = (H + γI)⁻¹ g_J solved once by conjugate gradient (exact or
  Gauss-Newton Hessian-vector products), then w_i = ⟨v, ∇ℓ_i⟩.

Then w ← max(0, w) and the weights are normalised over D_conflict: ``sum`` (to 1, the
reference code) or ``mean`` (to average 1, so the loss scale does not depend on the dataset
size). RETAIN records carry no weight. Variants (:data:`VARIANTS`) say which part of the gold
objective each category is scored against, whether the score is the dot product or its
size-normalised form ⟨v, ∇ℓ_i⟩/‖∇ℓ_i‖ (``cosine``), and where the normalisation happens.

Under ``accelerate launch`` the processes share the scoring: the conflict records are cut into
batches of similar length once, in a fixed order, and the batches are dealt round robin, so a
record is scored in the same batch — to the same bits — whatever the number of processes; the
main process gathers the scores and alone writes the outputs.

Edge cases, each a defined outcome recorded in the summary: no conflict records — the records
are written unweighted with a warning; every score of a group ≤ 0 — that group gets uniform
weights with a warning (clamping would otherwise remove it from training), or, under the
``paper`` variant, weights 0 as in the reference code, with a warning that its terms will not train.
"""

from __future__ import annotations

import glob
import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..config import resolved
from ..data import CONFLICT, INVERT, PUNISH, RETAIN, PreferencePair, prompt_text, read_pairs, response_text, write_pairs
from ..errors import RealignError
from ..files import check_output_paths, folder_lock, write_json
from ..modeling.loading import attach_lora, load_adapter, load_causal_lm, load_tokenizer, resolve_device
from ..objective import Term, conflict_term, gold_term
from ..provenance import input_digest, model_digest, provenance, what_changed
from ..provenance import produced_by as record
from ..stage import Paths, output_digests, process_state, summary_path


# --------------------------------------------------------------------------- Alg. 2


@dataclass
class GoldBatch:
    samples: list[Term]
    parts: list[str]  # the category each gold sample stands for
    notes: list[str]

    def part(self, category: str) -> list[Term]:
        return [s for s, p in zip(self.samples, self.parts) if p == category]

    def counts(self) -> dict[str, int]:
        return {c: self.parts.count(c) for c in (RETAIN, INVERT, PUNISH)}


def allocate(size: int, available: dict[str, int], remainder: str = "spread") -> dict[str, int]:
    """⌊B/3⌋ RETAIN, ⌊B/3⌋ INVERT, the rest PUNISH (Alg. 2). Where a category has too few
    records: ``spread`` gives its unfilled share to the others, round robin (the default, so a
    short PUNISH part is filled too); ``punish`` is Alg. 2 and the reference code, B_P = B − |D_gold|:
    PUNISH takes the whole remainder after RETAIN and INVERT, and a short PUNISH part stays short."""
    nominal = {RETAIN: size // 3, INVERT: size // 3, PUNISH: size - 2 * (size // 3)}
    take = {c: min(nominal[c], available[c]) for c in nominal}
    if remainder == "punish":
        take[PUNISH] = min(available[PUNISH], size - take[RETAIN] - take[INVERT])
        return take
    deficit = size - sum(take.values())
    while deficit > 0:
        spare = [c for c in (RETAIN, INVERT, PUNISH) if take[c] < available[c]]
        if not spare:
            break
        for c in spare:
            if deficit == 0:
                break
            take[c] += 1
            deficit -= 1
    return take


def _shortfall(size: int, available: dict[str, int], take: dict[str, int]) -> str | None:
    """One line when the gold batch is not Alg. 2's ⌊B/3⌋ / ⌊B/3⌋ / rest: fewer records than
    ``gold_size`` (what is used instead, and how to set the size), or a category short of its
    share (which categories took its places). None when every category got its share."""
    nominal = allocate(size, {c: size for c in take})
    used = sum(take.values())
    counts = ", ".join(f"{available[c]} {c}" for c in (RETAIN, INVERT, PUNISH))
    if used < size:
        return (f"gold batch: {used} samples, not gold_size {size}: the data has only {counts} usable records, so all "
                f"are used; set gold_size to {used} or less to say so (--gold-size, gold_size in a score config, "
                "score: {gold_size: N} in a run config)")
    short = [c for c in take if take[c] < nominal[c]]
    if not short:
        return None
    extra = [f"{c} +{take[c] - nominal[c]}" for c in take if take[c] > nominal[c]]
    return ("gold batch: " + ", ".join(f"{c} has {take[c]} of its {nominal[c]} samples ({available[c]} available)"
                                        for c in short)
            + f"; the other categories took the rest ({', '.join(extra)})")


def build_gold_batch(records: Sequence[PreferencePair], size: int, seed: int, remainder: str = "spread",
                     punish: str = "compliant") -> GoldBatch:
    """Alg. 2: RETAIN pairs as they are, swapped INVERT pairs, and PUNISH prompts paired as
    (x, y ~ Uniform(Y_compliant), old y_w), where Y_compliant = chosen of RETAIN ∪ chosen of
    swapped INVERT — or, with ``punish`` "own-y_c", as (x, y_c, old y_w) where the record has a
    compliant response of its own (an oracle's or a corrective one): a response drawn from other
    prompts shows the old behaviour (mostly refusals) where the shift asks for a new one, and
    would score the y_c terms against their own direction. Seeded; a shortfall is redistributed
    as ``remainder`` says (:func:`allocate`) and noted."""
    rng = random.Random(seed)
    by = {c: [r for r in records if r.category == c] for c in (RETAIN, INVERT, PUNISH)}
    compliant = [r.chosen for r in by[RETAIN]] + [r.chosen for r in by[INVERT]]
    notes = []
    available = {c: len(v) for c, v in by.items()}
    if not compliant:
        available[PUNISH] = 0
        if by[PUNISH]:
            notes.append("no RETAIN or INVERT records: no compliant responses to pair PUNISH prompts with")
    take = allocate(size, available, remainder)
    if sum(take.values()) == 0:
        raise RealignError("gold batch: no usable records (need RETAIN or INVERT records)")
    note = _shortfall(size, available, take)
    if note is not None:
        notes.append(note)
    samples, parts = [], []
    for r in rng.sample(by[RETAIN], take[RETAIN]):
        samples.append(gold_term(r.prompt, r.chosen, r.rejected))
        parts.append(RETAIN)
    for r in rng.sample(by[INVERT], take[INVERT]):
        samples.append(gold_term(r.prompt, r.chosen, r.rejected))
        parts.append(INVERT)
    for r in rng.sample(by[PUNISH], take[PUNISH]):
        own = r.y_c if punish == "own-y_c" else None
        samples.append(gold_term(r.prompt, own if own is not None else rng.choice(compliant), r.chosen))  # chosen = y_w
        parts.append(PUNISH)
    return GoldBatch(samples, parts, notes)


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """How scores become weights. ``split``: each conflict category is scored against the
    gradient of its own part of the gold batch (else all against the whole gold objective).
    ``scope``: normalise over all of D_conflict ("global") or within each category.
    ``measure``: the score, ``dot`` ⟨v, ∇ℓ_i⟩ (Alg. 1 lines 18-27) or ``cosine`` ⟨v, ∇ℓ_i⟩/‖∇ℓ_i‖.
    ``gold_remainder``: where a short category's share of the gold batch goes (:func:`allocate`).
    ``nonpositive``: the weights of a group whose scores are all ≤ 0 (:func:`normalise`)."""

    name: str
    split: bool
    scope: str
    description: str
    measure: str = "dot"
    gold_remainder: str = "spread"
    nonpositive: str = "uniform"


VARIANTS = {
    "paper": Variant("paper", False, "global", "one gold objective, dot product, clamp, one normalisation",
                     gold_remainder="punish", nonpositive="zero"),
    "per-category": Variant(
        "per-category", True, "category", "each category against its own gold part, normalised within category"
    ),
    # docs/method.md, "Where we differ": the dot product is dominated by gradient size (records with a
    # low-probability harmful response have ~6x larger gradients), so divide it out.
    "cosine": Variant(
        "cosine", False, "global", "one gold objective, ⟨v, ∇ℓ_i⟩ / ‖∇ℓ_i‖, clamp, one normalisation",
        measure="cosine",
    ),
}


def normalise(scores: dict[str, float], groups: dict[str, str], mode: str,
              nonpositive: str = "uniform") -> tuple[dict[str, float], list[str]]:
    """Clamp at 0 and normalise within each group: ``sum`` — the whole set sums to 1, each
    group in proportion to its size (one group: the reference code); ``mean`` — each group
    averages 1. A group whose scores are all ≤ 0 has nothing to normalise (Alg. 1 divides by
    their sum): ``nonpositive="uniform"`` gives it uniform weights, so it still trains;
    ``"zero"`` (the reference code) leaves its weights 0, so its terms do not train. Noted."""
    notes = []
    total = len(scores)
    weights: dict[str, float] = {}
    for group in sorted(set(groups.values())):
        ids = [i for i in scores if groups[i] == group]
        clamped = {i: max(0.0, scores[i]) for i in ids}
        mass = sum(clamped.values())
        if mass <= 0.0 and nonpositive == "zero":
            notes.append(f"{group}: all {len(ids)} scores are <= 0; their weights are 0 (the reference code's "
                         "outcome, --variant paper), so their terms will not train")
            weights.update(dict.fromkeys(ids, 0.0))
            continue
        if mass <= 0.0:
            notes.append(f"{group}: all {len(ids)} scores are <= 0; using uniform weights")
            clamped = {i: 1.0 for i in ids}
            mass = float(len(ids))
        scale = (len(ids) / total) / mass if mode == "sum" else len(ids) / mass
        weights.update({i: w * scale for i, w in clamped.items()})
    return weights, notes


def weight_stats(values: Sequence[float], total: float | None = None) -> dict:
    """Distribution of one category's scores or weights; with ``total`` (the sum over every
    category) also ``share``, the category's share of it."""
    if not values:
        return {"n": 0, **({"share": 0.0} if total is not None else {})}
    ordered = sorted(values)
    shared = {"share": sum(values) / total if total else 0.0} if total is not None else {}
    return {
        "n": len(values),
        "mean": statistics.fmean(values),
        "std": statistics.pstdev(values),
        "min": ordered[0],
        "median": ordered[len(ordered) // 2],
        "max": ordered[-1],
        "fraction_zero": sum(v == 0.0 for v in values) / len(values),
        **shared,
    }


def histogram(values: Sequence[float], bins: int = 20) -> dict:
    if not values:
        return {"edges": [], "counts": []}
    lo, hi = min(values), max(values)
    width = (hi - lo) / bins or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((v - lo) / width))] += 1
    return {"edges": [lo + k * width for k in range(bins + 1)], "counts": counts}


# --------------------------------------------------------------------------- the stage on files


def produced_by(config) -> dict:
    """What produces the weighted records: the resolved settings and the content of the
    triaged records, the gold records and the model (:func:`realign.provenance.produced_by`).
    Partial scores are resumed, and ``realign run`` skips the stage, only on an exact match."""
    inputs = {name: input_digest(getattr(config, name)) for name in ("data", "gold_data")}
    inputs.update({name: model_digest(getattr(config, name)) for name in ("model", "adapter")})
    return record(config, inputs, ignore=("out", "batch_size", "device", "skip_invalid"))


def _read_progress(path: Path, made: dict) -> dict[str, float] | None:
    """The scores in one progress file, or None when it is missing or was made by other
    settings or inputs (then says so on stderr: its scores are not used)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        header = json.loads(lines[0]) if lines else {}
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(header, dict) or header.get("config") != made["key"]:
        if path.exists():
            before = header.get("produced_by") if isinstance(header, dict) else None
            print(f"score: not resuming from {path.name} ({what_changed(before, made)}); scoring from scratch",
                  file=sys.stderr)
        return None
    rows = {}
    for line in lines[1:]:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # torn by a kill; a resumed run appends after it
            continue
        rows[row["id"]] = row["score"]
    return rows


def progress_files(out: Path) -> list[Path]:
    """Every progress file of ``out``: ``.OUT.partial`` (one process) and ``.OUT.rankK.partial``."""
    return [out.with_name(f".{out.name}.partial"), *sorted(out.parent.glob(f".{glob.escape(out.name)}.rank*.partial"))]


class _Progress:
    """Scores already computed, appended one JSON line per batch so that an interrupted run
    resumes; a line torn by a kill is ignored (appending starts on a fresh line). Each process
    appends to its own file and reads every process's, so a rerun with another number of
    processes resumes too."""

    def __init__(self, out: Path, rank: int | None, made: dict) -> None:
        self.path = out.with_name(f".{out.name}.partial" if rank is None else f".{out.name}.rank{rank}.partial")
        self.done: dict[str, float] = {}
        own = None
        for path in progress_files(out):
            rows = _read_progress(path, made)
            self.done.update(rows or {})
            own = rows if path == self.path else own
        if own is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            header = {"config": made["key"], "produced_by": made}
            self.path.write_text(json.dumps(header) + "\n", encoding="utf-8")
        elif not self.path.read_bytes().endswith(b"\n"):
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write("\n")

    def add(self, rows: dict[str, float]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            for rid, score in rows.items():
                fh.write(json.dumps({"id": rid, "score": score}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.done.update(rows)


def _batches(scorer, conflict: list[PreferencePair], directions: dict, direction_of) -> list[tuple]:
    """(direction, records, their losses ℓ_i) for every batch of conflict records, in a fixed
    order: per direction, records of similar length together (``Scorer.batches``)."""
    batches = []
    for name in directions:
        members = [r for r in conflict if direction_of(r) == name]
        samples = [conflict_term(r) for r in members]
        batches += [(name, [members[i] for i in idx], [samples[i] for i in idx]) for idx in scorer.batches(samples)]
    return batches


def _score_batch(scorer, samples: list[Term], v, config, measure: str) -> list[float]:
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


def run(config, progress: bool = True) -> dict:
    """Stage 2 on files: read triaged records, build the gold batch, compute the direction v
    (g_J/γ or the CG solve), score every conflict record (fast or exact path), clamp,
    normalise and write the weighted records plus ``<out>.summary.json``. Under ``accelerate
    launch`` the processes share the scoring and only the main one writes (the others return
    an empty dict)."""
    check_output_paths(*paths(config))
    with folder_lock(Path(config.out).parent):
        return _run(config, progress)


def _run(config, progress: bool) -> dict:
    """The stage's work, under the lock of its output folder."""
    from accelerate.utils import gather_object

    start = time.perf_counter()
    state = process_state(config.device)
    made = produced_by(config)
    records, gold_source = _read(config)
    conflict = [r for r in records if r.category in CONFLICT]
    summary: dict = {"stage": "score", "records": len(records), "conflict": len(conflict)}
    if not conflict:
        return _write_unweighted(config, records, summary, made) if state.is_main_process else {}

    variant = VARIANTS[config.variant]
    scorer, params = _build_scorer(config, state, variant)
    gold = build_gold_batch(gold_source, config.gold_size, config.seed, variant.gold_remainder, config.gold_punish)
    directions, direction = _directions(config, scorer, _objectives(variant, gold, conflict), conflict)
    shares = gather_object([_score(config, scorer, conflict, directions, variant, state, made, progress)])
    if not state.is_main_process:  # one share per process above ([share] itself when alone)
        return {}
    scores = {rid: x for s in shares for rid, x in s["scores"].items()}
    weights, notes = _weigh(config, variant, records, conflict, scores)
    for note in notes + gold.notes:
        print(f"warning: {note}", file=sys.stderr)
    out = Path(config.out)
    write_pairs(out, records)
    vmap_failure = next((s["vmap_failure"] for s in shares if s["vmap_failure"]), None)
    if vmap_failure:
        notes.append(f"vmap failed ({vmap_failure}); cosine scores took the per-sample path")
    summary.update(
        variant={"name": variant.name, "description": variant.description, "measure": variant.measure},
        gold={"counts": gold.counts(), "notes": gold.notes},
        direction=direction,
        parameters={"kind": config.params.kind, "tensors": len(params), "count": sum(p.numel() for p in params.values())},
        **_described(conflict, scores, weights),
        notes=notes + gold.notes,
        truncated_sequences=scorer.truncated,
        processes={"count": state.num_processes, "records": [s["records"] for s in shares]},
        timing=_timing(config, variant, shares, vmap_failure),
        wall_s=round(time.perf_counter() - start, 3),
        config=resolved(config),
        produced_by=made,
        provenance=provenance(),
        outputs=output_digests(summary_path(out), [out]),
    )
    write_json(summary_path(out), summary)
    for path in progress_files(out):
        path.unlink(missing_ok=True)
    return summary


def paths(config) -> Paths:
    """What the stage reads and writes: checked before anything is loaded, so that no output
    overwrites an input and every output can be written."""
    return Paths({"--data": config.data, "--gold-data": config.gold_data, "--model": config.model,
                  "--adapter": config.adapter},
                 {"--out": config.out, "the summary of --out": summary_path(config.out)})


def _read(config) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """The triaged records, and those the gold batch is drawn from (``gold_data``, else the same)."""
    loaded = [read_pairs(config.data, require_category=True, skip_invalid=config.skip_invalid,
                         invert_order=config.invert_order)]
    if config.gold_data is not None:
        loaded.append(read_pairs(config.gold_data, require_category=True, invert_order=config.invert_order))
    for result in loaded:
        if result.duplicates_line():
            print(f"score: {result.duplicates_line()}", file=sys.stderr)
    return loaded[0].pairs, loaded[-1].pairs


def _write_unweighted(config, records: list[PreferencePair], summary: dict, made: dict) -> dict:
    """No conflict records: the records written as they are, with a warning and a note."""
    print("warning: no INVERT or PUNISH records; writing the records unweighted", file=sys.stderr)
    write_pairs(config.out, records)
    summary.update(notes=["no conflict records: nothing to score"], config=resolved(config), produced_by=made,
                   provenance=provenance(), outputs=output_digests(summary_path(config.out), [config.out]))
    write_json(summary_path(config.out), summary)
    return summary


def _build_scorer(config, state, variant: Variant):
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


def _objectives(variant: Variant, gold: GoldBatch, conflict: list[PreferencePair]) -> dict[str, list[Term]]:
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


def _directions(config, scorer, objectives: dict[str, list[Term]], conflict: list[PreferencePair]):
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


def _score(config, scorer, conflict: list[PreferencePair], directions: dict, variant: Variant, state, made: dict,
           progress: bool) -> dict:
    """This process's share of the scores (Alg. 1 lines 18-27): the batches dealt round robin to
    the processes, the records already scored in ``<out>.progress`` taken as they are."""
    from tqdm.auto import tqdm

    def direction_of(record: PreferencePair) -> str:
        return record.category if record.category in directions else "all"

    tracker = _Progress(Path(config.out), state.process_index if state.num_processes > 1 else None, made)
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
            values = _score_batch(scorer, [samples[i] for i in todo], directions[name], config, variant.measure)
            tracker.add({batch[i].id: x for i, x in zip(todo, values)})
            bar.update(len(todo))
    bar.close()
    return {
        "scores": {r.id: tracker.done[r.id] for _, batch, _ in mine for r in batch},
        "records": assigned, "resumed": resumed, "forward_sequences": scorer.forward_sequences - forward_before,
        "seconds": time.perf_counter() - t0, "vmap_failure": scorer.vmap_failure,
    }


def _weigh(config, variant: Variant, records: list[PreferencePair], conflict: list[PreferencePair],
           scores: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """Clamp and normalise the scores into weights (Alg. 1 lines 28-31) and put them on the
    records (RETAIN: none); the weights and the notes on groups that got uniform weights."""
    groups = {r.id: (r.category if variant.scope == "category" else "conflict") for r in conflict}
    weights, notes = normalise({r.id: scores[r.id] for r in conflict}, groups, config.normalise, variant.nonpositive)
    for r in records:
        r.impact = weights.get(r.id) if r.category in CONFLICT else None
        if r.category in CONFLICT:
            r.meta = {**r.meta, "impact_score": scores[r.id]}
    return weights, notes


def _described(conflict: list[PreferencePair], scores: dict[str, float], weights: dict[str, float]) -> dict:
    """The summary's account of the scores and weights per category, and the extreme records."""
    ranked = sorted(conflict, key=lambda r: scores[r.id])

    def example(r: PreferencePair) -> dict:
        return {"id": r.id, "category": r.category, "score": scores[r.id], "weight": weights[r.id],
                "prompt": prompt_text(r.prompt)[:160], "chosen": response_text(r.chosen)[:160]}

    return {
        "scores": {c: weight_stats([scores[r.id] for r in conflict if r.category == c]) for c in CONFLICT},
        "weights": {c: weight_stats([weights[r.id] for r in conflict if r.category == c],
                                    total=sum(weights[r.id] for r in conflict)) for c in CONFLICT},
        "histogram": {c: histogram([weights[r.id] for r in conflict if r.category == c]) for c in CONFLICT},
        "highest": [example(r) for r in ranked[::-1][:5]],
        "lowest": [example(r) for r in ranked[:5]],
    }


def _timing(config, variant: Variant, shares: list[dict], vmap_failure: str | None) -> dict:
    """How the scores were computed and how long it took, over all processes."""
    n_resumed = sum(s["resumed"] for s in shares)
    n_done = sum(s["records"] for s in shares) - n_resumed
    return {"path": _scoring_path(config, variant, vmap_failure),
            "scoring_s": round(max(s["seconds"] for s in shares), 3), "scored_now": n_done, "resumed": n_resumed,
            "forward_sequences_per_record": sum(s["forward_sequences"] for s in shares) / max(1, n_done)}
