"""Accuracy of the fast impact-score paths on the tiny test model: ``central`` and ``jvp`` against
exact per-sample autograd (``method: exact``), for the impact variants ``paper`` (the dot product
⟨v, ∇ℓ_i⟩) and ``cosine`` (the default: ⟨v, ∇ℓ_i⟩/‖∇ℓ_i‖, per-sample gradients by vmap).

The setup is ``tests/test_impact.py``'s, whose test requires Spearman ≥ 0.99 and relative error
≤ 1e-3 on it: a tiny Llama (hidden 64, 2 layers, torch seed 0) with the tiny tokenizer, the
packaged example pairs triaged by the rules judge under ``contextual-exceptions``, gold batch 12,
a LoRA space of rank 4, CPU, fp32. Relative error = ‖fast − exact‖ / ‖exact‖ over the conflict
records' raw scores (before clamping). Speed is measured by ``impact_speed.py``, not here.

Usage::

    python benchmarks/impact_accuracy.py      # under a minute on one CPU core: results/impact_accuracy.{json,md}
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, relative_error, spearman, write_results  # noqa: E402

VARIANTS = ["paper", "cosine"]
FAST = ["central", "jvp"]
SETTINGS = {"gold_size": 12, "params": {"lora_r": 4}, "device": "cpu"}


def triaged_examples(work: Path) -> Path:
    """The packaged example pairs, triaged by the rules judge under contextual-exceptions."""
    from realign.config import TriageConfig
    from realign.reading import validate
    from realign.policy import resolve_policy
    from realign.resources import resource_path
    from realign.triage.run import run

    out = work / "triaged.jsonl"
    run(validate(TriageConfig, {"data": str(resource_path("examples/pairs.jsonl")), "policy": resolve_policy("contextual-exceptions"),
                                "out": out, "cache": work / "verdicts.sqlite"}, "impact_accuracy"), progress=False)
    return out


def tiny_model(work: Path) -> Path:
    import torch

    from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    return save_tiny(work / "tiny", tokenizer=tok, model=tiny_llama(tok, hidden=64, layers=2))


def raw_scores(model: Path, data: Path, out: Path, variant: str, method: str) -> dict[str, float]:
    """Every conflict record's raw impact score (``meta.impact_score``) by record id."""
    from realign.config import ScoreConfig
    from realign.score.run import run

    run(ScoreConfig(model=str(model), data=str(data), out=out, variant=variant, method=method, **SETTINGS),
        progress=False)
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    return {r["id"]: r["meta"]["impact_score"] for r in rows if "impact" in r}


def measure() -> dict:
    import torch
    from transformers.utils import logging

    torch.set_num_threads(1)
    logging.disable_progress_bar()  # one weight-loading bar per scoring run otherwise
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model, data = tiny_model(work), triaged_examples(work)
        for variant in VARIANTS:
            exact = raw_scores(model, data, work / f"{variant}-exact.jsonl", variant, "exact")
            ids = sorted(exact)
            for method in FAST:
                fast = raw_scores(model, data, work / f"{variant}-{method}.jsonl", variant, method)
                a, b = [exact[i] for i in ids], [fast[i] for i in ids]
                rows.append({"variant": variant, "method": method, "records": len(ids),
                             "spearman": spearman(a, b), "relative_error": relative_error(a, b)})
    return {"benchmark": "impact_accuracy", "settings": SETTINGS, "rows": rows}


def markdown(result: dict) -> list[str]:
    lines = ["# Fast impact scores against exact per-sample autograd (tiny test model)", "",
             f"Command: `{result['command']}`  ",
             f"Machine: {result['machine']['cpus']} CPUs, 1 torch thread; "
             f"torch {result['provenance']['versions'].get('torch', '?')}. Setup: tests/test_impact.py's "
             f"(tiny Llama hidden 64 × 2 layers, example pairs under contextual-exceptions, {json.dumps(result['settings'])}); "
             "the test requires Spearman ≥ 0.99 and relative error ≤ 1e-3.", "",
             "| variant | path | records | Spearman | relative error |", "|---|---|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['variant']} | {r['method']} | {r['records']} | {r['spearman']:.6f} | {r['relative_error']:.1e} |")
    return lines


def main(argv: list[str]) -> None:
    from realign.runs.provenance import provenance

    result = measure()
    result.update(command="python benchmarks/impact_accuracy.py", machine=machine(1), provenance=provenance())
    write_results("impact_accuracy", result, markdown(result))
    print("\n".join(markdown(result)[-len(result["rows"]):]))


if __name__ == "__main__":
    main(sys.argv[1:])
