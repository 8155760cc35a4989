"""``realign demo``: the whole pipeline on the synthetic world, contextual-exceptions shift,
with the bootstrapped tiny old-policy model — on a laptop CPU, in minutes — then a
before/after table and the report's path."""

from __future__ import annotations

import json
from pathlib import Path

from .files import write_jsonl

#: Settings of the demo run (the tiny world's model is full fine-tuned: LoRA on a 128-wide
#: model would be most of the model anyway).
DEMO_SHIFT = "synth-contextual"
DEMO_RUN = {
    "methods": ["trace"],
    "judge": {"backend": "rules"},
    "score": {"gold_size": 64, "params": {"kind": "modules", "last_k_blocks": 2}, "batch_size": 32},
    "train": {"finetune": "full", "learning_rate": 5e-4, "max_steps": 150, "batch_size": 16, "nll_weight": 1.0,
              "alpha_kl": 0.1, "logging_steps": 10, "save_steps": 50, "warmup_ratio": 0.05},
    "eval": {"max_new_tokens": 48, "batch_size": 64},
}


def changed_slices(rows: list[dict], old: str, new: str) -> set[str]:
    """Slices whose required behaviour differs between the old and the new policy."""
    return {r["slice"] for r in rows if (r.get("expected") or {}).get(old) != (r.get("expected") or {}).get(new)}


def _rate_on(generations: list[dict], slices: set[str], state: str) -> tuple[float | None, int]:
    picked = [g for g in generations if g.get("model_state") == state and g["set"] == "policy" and g["slice"] in slices]
    ok = [g["compliant"] is True for g in picked]
    return (sum(ok) / len(ok) if ok else None), len(ok)


def run_demo(out: Path, progress: bool = True) -> dict:
    from .pipeline import Pipeline, RunConfig
    from .synth.bootstrap import bootstrap
    from .synth.export import SynthConfig, export
    from .synth.policies import OLD

    boot = bootstrap(progress=progress)
    data = out / "data"
    if not (data / "manifest.json").exists():
        export(data, SynthConfig(seed=0, eval_per_slice=8), shifts=(DEMO_SHIFT,))
    eval_all = data / "eval_all.jsonl"
    rows = [json.loads(line) for line in (data / "eval_prompts.jsonl").read_text().splitlines()]
    benign = [json.loads(line) for line in (data / "benign.jsonl").read_text().splitlines()]
    if not eval_all.exists():
        write_jsonl(eval_all, rows + [{**b, "slice": "benign"} for b in benign])
    run = RunConfig(
        out=out, model=str(boot.path), data=str(data / "pairs.jsonl"), policy=DEMO_SHIFT, device="cpu",
        methods=DEMO_RUN["methods"], judge=DEMO_RUN["judge"], score=DEMO_RUN["score"], train=DEMO_RUN["train"],
        eval={**DEMO_RUN["eval"], "prompts": str(eval_all)},
    )
    Pipeline(run, "demo").execute(progress=progress)
    changed = changed_slices(rows, OLD, DEMO_SHIFT)
    table = {}
    for name in ("base", *run.methods):
        metrics = json.loads((out / "eval" / name / "metrics.json").read_text())
        gens = [json.loads(line) for line in (out / "eval" / name / "generations.jsonl").read_text().splitlines()]
        rate, n = _rate_on(gens, changed, "after")
        tpa = metrics["tpa"]
        table[name] = {
            "agreement": tpa["overall"]["rate"],
            "balanced": tpa.get("balanced"),
            "changed_slices": rate,
            "changed_n": n,
            "harmful": (metrics.get("harmful_rate") or {}).get("rate"),
            "degenerate": (metrics.get("degenerate_rate") or {}).get("rate"),
            "benign_accuracy": (metrics["utility"]["benign_accuracy"] or {}).get("rate"),
        }
    return {"table": table, "changed_slices": sorted(changed), "report": str(out / "report.html"), "model": str(boot.path)}
