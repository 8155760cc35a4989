"""One re-alignment experiment on the synthetic world, shared by ``realign demo`` and
``benchmarks/efficacy.py``: the data of a world seed, a :class:`~realign.runs.pipeline.RunConfig`
with the project's default settings for the tiny world, optional triage label noise, and the
outcome table read back from the run directory.

The defaults in :data:`RUN_DEFAULTS` are the ones ``benchmarks/efficacy.py`` chose on its
validation split (see ``benchmarks/results/efficacy.md``).
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import CorrectiveConfig, EvalConfig, JudgeConfig, ScoreConfig, TrainConfig, resolved
from ..data import read_pairs, write_pairs
from ..judges import make_judge
from ..judges.cache import VerdictCache
from ..metrics.prompts import changed_slices
from ..metrics.stats import pool
from ..runs.files import write_json, write_jsonl
from ..runs.pipeline import RunConfig
from ..policy import Policy
from ..runs.provenance import input_digest
from ..runs.stage import output_digests, summary_path
from .export import TRIAGE, SynthConfig, export, flip_noise
from .policies import OLD, SHIFTS
from .world import World

#: Pipeline settings for the tiny world's model (full fine-tuning: LoRA on a 128-wide model
#: would be most of the model anyway). Chosen on the validation split of the efficacy benchmark
#: (world version 2: α_KL 0.3 rather than the reference's 0.1 keeps the slices a context shift
#: leaves unchanged, benchmarks/results/efficacy_validation_kl.md; beside corrective responses, the library's retain_pref
#: 0.1 keeps them, benchmarks/results/efficacy_validation.md).
RUN_DEFAULTS: dict[str, Any] = {
    "judge": {"backend": "rules"},
    # every response of the world opens with a restatement of its request in parentheses: the part of a compliant
    # response that is about its own prompt, which the corrective search lets the model write for each prompt
    "triage": {"corrective": {"opening": r"^\([^)]*\)\s*"}},
    "score": {"gold_size": 64, "params": {"kind": "modules", "last_k_blocks": 2}, "batch_size": 32,
              "variant": "cosine"},
    "train": {"finetune": "full", "learning_rate": 5e-4, "max_steps": 300, "batch_size": 16, "nll_weight": 1.0,
              "alpha_kl": 0.3, "logging_steps": 10, "save_steps": 50, "warmup_ratio": 0.05},
    "eval": {"max_new_tokens": 48, "batch_size": 64},
}

EVAL_FILE = "eval_all.jsonl"


def prepare_data(out: Path, seed: int, n_pairs: int = 1000, eval_per_slice: int = 8,
                 shifts: tuple[str, ...] = SHIFTS) -> Path:
    """Export the world of ``seed`` into ``out`` (pairs, eval prompts, truth triage per shift)
    and write ``eval_all.jsonl``: the sensitive eval prompts plus the benign questions (slice
    ``benign``), the prompt file of ``realign eval``. An export already there is reused only if
    its manifest names this world (version and hash) and this config, and holds the truth of
    every shift in ``shifts``; otherwise it is written again, saying so."""
    config = SynthConfig(seed=seed, n_pairs=n_pairs, eval_per_slice=eval_per_slice)
    manifest = out / "manifest.json"
    if manifest.exists():
        made = json.loads(manifest.read_text(encoding="utf-8"))
        world = World(seed)
        wanted = {"world": {"version": world.version, "hash": world.hash}, "config": config.model_dump(mode="json")}
        stale = [key for key in wanted if made.get(key) != wanted[key]]
        if not set(shifts) <= set(made.get("triage", {})):
            stale.append("shifts")
        if stale:
            print(f"{out}: exporting again (its {' and '.join(stale)} differ)", flush=True)
            manifest.unlink()
            (out / EVAL_FILE).unlink(missing_ok=True)
    if not manifest.exists():
        export(out, config, shifts=shifts)
    if not (out / EVAL_FILE).exists():
        write_jsonl(out / EVAL_FILE, _rows(out / "eval_prompts.jsonl") + [{**b, "slice": "benign"} for b in _rows(out / "benign.jsonl")])
    return out


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def merge_settings(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in, nested dictionaries key by key."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_settings(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


#: Stage fields each run sets itself (paths, the method, seed, device, and eval's judge: the run's judge section),
#: not settings of the experiment.
PER_RUN = frozenset({"model", "adapter", "reference", "label", "data", "gold_data", "prompts", "policy", "out", "method",
                     "seed", "device", "cache", "invert_order", "judge"})


def stage_settings(overrides: dict | None = None) -> dict[str, dict]:
    """Every setting of the judge, triage (its corrective search), score, train and eval stages an experiment runs with:
    :data:`RUN_DEFAULTS` with ``overrides`` merged in, every other field at the library's
    default, less the fields each run sets itself (:data:`PER_RUN`). What a results file
    records, so that a changed default, here or in the library, shows against it."""
    settings = merge_settings(RUN_DEFAULTS, overrides or {})
    out = {"judge": resolved(JudgeConfig(**settings["judge"]))}
    corrective = settings.get("triage", {}).get("corrective")
    out["triage"] = {"corrective": None if corrective is None else {
        k: v for k, v in resolved(CorrectiveConfig(**corrective)).items() if k not in PER_RUN}}
    for section, model in (("score", ScoreConfig), ("train", TrainConfig), ("eval", EvalConfig)):
        required = {name: "-" for name, field in model.model_fields.items() if field.is_required()}
        config = resolved(model(**{**required, **settings.get(section, {})}))
        out[section] = {k: v for k, v in config.items() if k not in PER_RUN}
    return out


def run_config(out: Path, data: Path, model: str, shift: str, methods: list[str], *, seed: int = 0,
               overrides: dict | None = None, cache: Path | None = None, device: str = "cpu"):
    """The pipeline config of one experiment: the defaults, then ``overrides`` (same sections
    as the YAML of ``realign run``: judge, triage, score, train, eval)."""
    settings = merge_settings(RUN_DEFAULTS, overrides or {})
    return RunConfig(
        out=out, model=model, data=str(data / "pairs.jsonl"), policy=shift, old_policy=OLD, device=device, seed=seed,
        methods=methods, cache=cache, judge=settings["judge"], triage=settings.get("triage", {}),
        score=settings["score"], train=settings["train"],
        eval={**settings["eval"], "prompts": str(data / EVAL_FILE)},
    )


def seed_triage(run_dir: Path, data: Path, shift: str, noise: float = 0.0, seed: int = 0,
                oracle: bool = False) -> None:
    """Write ``RUN/triage/triaged.jsonl`` from the world's ground-truth triage of ``shift``
    (what the rules judge decides) with ``noise`` of the categories flipped (the label-noise
    experiment), so that the pipeline skips its triage stage. The world's corrective response
    y_c of PUNISH pairs is kept only with ``oracle`` (DPO-Gold's oracle relabelling). Records
    already seeded are kept only if they were seeded from the same truth file with the same
    shift, noise, seed and ``oracle`` (the summary's ``seeded`` record); otherwise they are
    written again, and the pipeline's stages after triage rerun since their input changed."""
    out = run_dir / "triage" / "triaged.jsonl"
    truth = data / "truth" / f"{shift}.jsonl"
    seeded = {"truth": input_digest(truth), "shift": shift, "noise": noise, "seed": seed, "oracle": oracle}
    if summary_path(out).exists():
        if json.loads(summary_path(out).read_text(encoding="utf-8")).get("seeded") == seeded:
            return
        print(f"{out}: seeding again (seeded from other truth or settings)", flush=True)
    records = read_pairs(truth).pairs
    if not oracle:
        records = [replace(r, oracle=None) for r in records]
    flipped = 0
    if noise:
        records, flipped = flip_noise(records, noise, seed)
    write_pairs(out, records)
    write_json(summary_path(out), {
        "stage": "triage", "source": "synthetic-world ground truth", "policy": {"name": shift},
        "counts": {c: sum(r.category == c for r in records) for c in TRIAGE},
        "noise": {"fraction": noise, "mode": "flip", "records": flipped},
        "oracle": sum(r.oracle is not None for r in records), "seeded": seeded,
    })


def adopt_seeded_triage(pipeline, progress: bool = False) -> None:
    """Make ``pipeline`` (a :class:`~realign.runs.pipeline.Pipeline` of a run directory
    :func:`seed_triage` wrote into) take the seeded records as its triage stage's output: the
    summary gets the ``produced_by`` record of the pipeline's triage stage and the digest of the
    records as its ``outputs``, without which the stage reruns the rules judge over them (same
    categories, but no oracle responses y_c and no label noise). With ``triage.corrective``
    configured, the stage's corrective responses are found for the seeded records here, as the
    stage would (:mod:`realign.triage.corrective`). Call it after :func:`seed_triage` and before
    ``pipeline.execute()``."""
    from ..triage.run import produced_by

    path = summary_path(pipeline.triage.out)
    summary = json.loads(path.read_text(encoding="utf-8"))
    made = produced_by(pipeline.triage)
    if (summary.get("produced_by") or {}).get("key") == made["key"]:
        return
    summary.pop("corrective", None)
    if pipeline.triage.corrective is not None or _has_corrective(pipeline.triage.out):
        summary.update(_seeded_corrective(pipeline.triage, progress))
    summary["produced_by"] = made
    summary["outputs"] = output_digests(path, [pipeline.triage.out])
    write_json(path, summary)


def _has_corrective(path: Path) -> bool:
    return any(r.corrective is not None for r in read_pairs(path).pairs)


def _seeded_corrective(config, progress: bool) -> dict:
    """Rewrite the seeded records of triage ``config.out`` with the corrective responses its
    ``corrective`` settings find (none when unset); the summary entry ``corrective``, if any."""
    from ..triage.corrective import attach_corrective
    from ..triage.judging import TriageStats

    records = [replace(r, corrective=None) for r in read_pairs(config.out).pairs]
    added = {}
    if config.corrective is not None:
        with VerdictCache(config.cache_path(), commit_every=1) as cache:
            added["corrective"] = attach_corrective(records, config.corrective, Policy.load(config.policy),
                                                    make_judge(config.judge), cache, TriageStats(), progress)
    write_pairs(config.out, records)
    return added


def shift_changes(data: Path, shift: str) -> set[str]:
    """The slices of ``data``'s eval prompts that ``shift`` changed from the old policy."""
    return changed_slices(_rows(data / "eval_prompts.jsonl"), OLD, shift)


def _pooled(by_slice: dict, slices: set[str]) -> float | None:
    pooled = pool(by_slice[s] for s in slices if s in by_slice)
    return None if pooled is None else pooled["rate"]


def outcomes(run_dir: Path, data: Path, shift: str, names: list[str]) -> dict[str, dict]:
    """Per evaluated model (``base`` and each method): overall, per-slice and pooled
    agreement with the new policy, the changed slices, harmful and degenerate rates, benign
    accuracy — read from ``RUN/eval/<name>/metrics.json``."""
    changed = shift_changes(data, shift)
    table = {}
    for name in names:
        metrics = json.loads((run_dir / "eval" / name / "metrics.json").read_text(encoding="utf-8"))
        tpa = metrics["tpa"]
        by_slice = {s: v for s, v in tpa["by_slice"].items() if s != "benign"}
        table[name] = {
            "agreement": tpa["overall"]["rate"],
            "balanced": tpa.get("balanced"),
            "must_help": (tpa.get("must_help") or {}).get("rate"),
            "must_refuse": (tpa.get("must_refuse") or {}).get("rate"),
            "changed_slices": _pooled(by_slice, changed),
            "unchanged_slices": _pooled(by_slice, set(by_slice) - changed),
            "harmful": (metrics.get("harmful_rate") or {}).get("rate"),
            "degenerate": (metrics.get("degenerate_rate") or {}).get("rate"),
            "benign_accuracy": (metrics["utility"].get("benign_accuracy") or {}).get("rate"),
            "by_slice": {s: v["rate"] for s, v in by_slice.items()},
        }
    return table
