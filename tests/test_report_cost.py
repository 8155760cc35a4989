"""The report's cost columns (issue 30 item 5): what each method's run spent, beside its quality,
read from a real tiny ``realign run`` folder (the synthetic world's packaged model, the rules
judge, a corrective search that samples) and from a summary written before budgets were."""

import json
import shutil
from pathlib import Path

import pytest

from realign.data import read_pairs
from realign.report import build_report, collect
from realign.report.collect import eval_costs, run_cost, triage_of
from realign.resources import __file__ as resources
from realign.train.sampling import triage_judgements

MODEL = str(Path(resources).parent / "demo_model")
SHIFT = "synth-contextual"
HEADER = "| Judge calls | Generated tokens | Training tokens | Train wall (s) |"


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder: triage with a corrective search by sampling, score, dpo-gold (trained on the
    triage) and online-dpo (its own samples), each evaluated, and the base model."""
    from realign.runs.pipeline import Pipeline, RunConfig
    from realign.synth.experiment import prepare_data

    work = tmp_path_factory.mktemp("cost")
    data = prepare_data(work / "data", seed=3, n_pairs=40, eval_per_slice=1, shifts=(SHIFT,))
    config = RunConfig(out=work / "run", model=MODEL, data=str(data / "pairs.jsonl"), policy=SHIFT, device="cpu",
                       methods=["dpo-gold", "online-dpo"], score={"gold_size": 12},
                       triage={"corrective": {"sources": ["samples"], "samples": 2, "max_new_tokens": 8}},
                       eval={"prompts": str(data / "eval_prompts.jsonl"), "max_new_tokens": 4, "batch_size": 64},
                       train={"finetune": "full", "max_steps": 1, "batch_size": 4, "sampling": {"max_new_tokens": 8}},
                       report=False)
    Pipeline(config, "test").execute(progress=False)
    return work / "run"


def _summary(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_a_methods_cost_is_its_budget_and_on_the_triage_the_corrective_search_too(run):
    found = collect([run])
    costs = eval_costs(found)
    assert run / "eval" / "base" / "metrics.json" not in costs  # nothing trained it
    triage = _summary(run / "triage" / "triaged.summary.json")
    searched = triage["corrective"]["sources"]["samples"]
    assert searched["judged"] > 0 and searched["generated_tokens"] > 0
    gold = _summary(run / "train" / "dpo-gold" / "train_summary.json")["budget"]
    assert costs[run / "eval" / "dpo-gold" / "metrics.json"] == {
        "judge_calls": triage_judgements(read_pairs(str(run / "triage" / "triaged.jsonl")).pairs) + searched["judged"],
        "generated_tokens": searched["generated_tokens"], "training_tokens": gold["training_tokens"],
        "wall_s": gold["wall_s"]}
    online = _summary(run / "train" / "online-dpo" / "train_summary.json")["budget"]
    assert costs[run / "eval" / "online-dpo" / "metrics.json"] == {k: online[k] for k in (
        "judge_calls", "generated_tokens", "training_tokens", "wall_s")}  # its own samples, not the triage's
    trained = next(t for t in found.train if t.path.parent.name == "dpo-gold")
    assert triage_of(trained, found).path == run / "triage" / "triaged.summary.json"  # through the score stage

    text = build_report([run], run.parent / "r.md").read_text(encoding="utf-8")
    glance = text.split("### Policy")[1].split("###")[0]
    assert HEADER in glance
    row = next(line for line in glance.splitlines() if line.startswith("| online-dpo |"))
    assert row.endswith(f"| {online['judge_calls']:,} | {online['generated_tokens']:,} | "
                        f"{online['training_tokens']:,} | {online['wall_s']:.1f} |")
    assert "the triage and Stage 2 scoring not included" in glance
    page = build_report([run], run.parent / "r.html").read_text(encoding="utf-8")
    assert '<th class="num">Judge calls</th><th class="num">Generated tokens</th>' in page


def test_a_summary_written_before_budgets_shows_no_cost_not_zero(run, tmp_path):
    old = tmp_path / "run"
    shutil.copytree(run, old, ignore=shutil.ignore_patterns("*.safetensors", "checkpoints", "*.sqlite"))
    path = old / "train" / "online-dpo" / "train_summary.json"
    summary = _summary(path)
    del summary["budget"]
    path.write_text(json.dumps(summary), encoding="utf-8")
    assert run_cost(summary) is None
    text = build_report([old], tmp_path / "r.md").read_text(encoding="utf-8")
    row = next(line for line in text.splitlines() if line.startswith("| online-dpo |"))
    assert row.endswith("| — | — | — | — |")  # the recorded paths still name the moved folder's files
    assert next(line for line in text.splitlines() if line.startswith("| dpo-gold |")).split(" | ")[-4] != "—"


def test_a_corrective_search_recorded_before_its_candidates_judged_were_leaves_judge_calls_unknown():
    budget = {"judge_calls": 80, "judge_calls_from": "the triage of its records", "generated_tokens": 0,
              "training_tokens": 400, "wall_s": 1.5}
    old_search = {"corrective": {"sources": {"samples": {"judge_calls": 3, "generated_tokens": 40}}}}
    assert run_cost({"budget": budget}, old_search) == {"judge_calls": None, "generated_tokens": 40,
                                                        "training_tokens": 400, "wall_s": 1.5}
    assert run_cost({"budget": budget}) == {"judge_calls": 80, "generated_tokens": 0, "training_tokens": 400,
                                            "wall_s": 1.5}  # no triage summary read: the budget's own
    own = {**budget, "judge_calls_from": "this method's samples", "judge_calls": 12}
    assert run_cost({"budget": own}, {"corrective": {"sources": {"samples": {"judged": 9, "generated_tokens": 40}}}})[
        "judge_calls"] == 12  # a sampling method never pays the triage's search
