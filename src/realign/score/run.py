"""Stage 2 — alignment impact scores (Alg. 1 lines 9-31; gold batch: Alg. 2).

For each conflict record i (INVERT or PUNISH) the score is the influence of up-weighting ℓ_i
on the policy-agreement objective J, w_i = g_Jᵀ H⁻¹ ∇ℓ_i at θ_ref:

* ``hessian="identity"`` (the paper): H ≈ γI, so w_i = ⟨g_J, ∇ℓ_i⟩ / γ;
* ``hessian="cg"``: v = (H + γI)⁻¹ g_J solved once by conjugate gradient (exact or
  Gauss-Newton Hessian-vector products), then w_i = ⟨v, ∇ℓ_i⟩.

Then w ← max(0, w) and the weights are normalised over D_conflict: ``sum`` (to 1, the
reference code) or ``mean`` (to average 1, so the loss scale does not depend on the dataset
size). RETAIN records carry no weight. Variants (:data:`.weights.VARIANTS`) say which part of the gold
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

Here the stage on files (its provenance key, inputs and outputs, the summary); its parts: the gold
batch (:mod:`.gold`), scoring on the model (:mod:`.scoring`), resume (:mod:`.progress`) and
scores to weights (:mod:`.weights`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from ..config import resolved
from ..data import CONFLICT, PreferencePair, read_pairs, write_pairs
from ..runs.files import check_output_paths, folder_lock, write_json
from ..runs.provenance import input_digest, model_digest, provenance
from ..runs.provenance import produced_by as record
from ..runs.stage import Paths, output_digests, process_state, summary_path
from .gold import build_gold_batch
from .progress import progress_files
from .scoring import build_scorer, find_directions, gold_objectives, score_share, timing_summary
from .weights import VARIANTS, describe, weigh


def produced_by(config) -> dict:
    """What produces the weighted records: the resolved settings and the content of the
    triaged records, the gold records and the model (:func:`realign.runs.provenance.produced_by`).
    Partial scores are resumed, and ``realign run`` skips the stage, only on an exact match."""
    inputs = {name: input_digest(getattr(config, name)) for name in ("data", "gold_data")}
    inputs.update({name: model_digest(getattr(config, name)) for name in ("model", "adapter")})
    return record(config, inputs, ignore=("out", "batch_size", "device", "skip_invalid"))


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
    scorer, params = build_scorer(config, state, variant)
    gold = build_gold_batch(gold_source, config.gold_size, config.seed, variant.gold_remainder, config.gold_punish)
    directions, direction = find_directions(config, scorer, gold_objectives(variant, gold, conflict), conflict)
    shares = gather_object([score_share(config, scorer, conflict, directions, variant, state, made, progress)])
    if not state.is_main_process:  # one share per process above ([share] itself when alone)
        return {}
    scores = {rid: x for s in shares for rid, x in s["scores"].items()}
    weights, notes = weigh(config, variant, records, conflict, scores)
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
        **describe(conflict, scores, weights),
        notes=notes + gold.notes,
        truncated_sequences=scorer.truncated,
        processes={"count": state.num_processes, "records": [s["records"] for s in shares]},
        timing=timing_summary(config, variant, shares, vmap_failure),
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
