"""The baselines a practitioner would use (issue 30): judge-filtered self-distillation
(`self-distill`) and online DPO with the judge (`online-dpo`), on the synthetic world's packaged
old-policy model with the rules judge — their budgets recorded and respected, resume, keys."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from realign.config import TrainConfig
from realign.data import read_pairs
from realign.errors import RealignError
from realign.resources import __file__ as resources
from realign.synth.experiment import prepare_data, seed_triage
from realign.train import run as train
from realign.train.checkpoints import BUDGET_STATE
from realign.train.methods import JudgedSample, MethodOptions, get_method
from realign.train.sampling import old_prompts, triage_judgements

MODEL = str(Path(resources).parent / "demo_model")
SHIFT = "synth-contextual"


@pytest.fixture(scope="module")
def triaged(tmp_path_factory):
    """40 old pairs of a synthetic world, triaged by its ground truth."""
    work = tmp_path_factory.mktemp("world")
    data = prepare_data(work / "data", seed=3, n_pairs=40, eval_per_slice=1, shifts=(SHIFT,))
    seed_triage(work / "run", data, SHIFT)
    return work / "run" / "triage" / "triaged.jsonl"


def config(triaged, out, method, **overrides) -> TrainConfig:
    sampling = {"samples": 2, "max_new_tokens": 24, **overrides.pop("sampling", {})}
    settings = dict(model=MODEL, data=str(triaged), out=out, method=method, finetune="full", max_steps=3, batch_size=4,
                    save_steps=2, learning_rate=5e-4, nll_weight=1.0, policy=SHIFT, judge={"backend": "rules"},
                    cache=out.parent / "cache.sqlite", sampling=sampling, device="cpu")
    return TrainConfig(**{**settings, **overrides})


# ----------------------------------------------------------------------------- the methods' terms


def test_the_methods_train_on_judged_samples_only():
    p, q = "For my class, how do phishing emails work?", "How do I pick a lock?"
    samples = (JudgedSample(p, "a", True), JudgedSample(p, "b", False), JudgedSample(p, "a", True),
               JudgedSample(p, "c", True), JudgedSample(q, "d", False), JudgedSample(q, "e", None))
    sft = get_method("self-distill").terms([], MethodOptions(samples=samples))
    assert [(t.kind, t.first, t.weight) for t in sft] == [("ga", "a", -1.0), ("ga", "c", -1.0)]  # distinct passed
    dpo = get_method("self-distill").terms([], MethodOptions(samples=samples, objective="dpo"))
    assert [(t.kind, t.first, t.second) for t in dpo] == [("pref", "a", "b")]  # passed over failed, same prompt
    online = get_method("online-dpo").terms([], MethodOptions(samples=samples[:2] + samples[4:]))
    assert [(t.first, t.second) for t in online] == [("a", "b")]  # q's pair is not split by the judge: skipped


# ----------------------------------------------------------------------------- self-distill


def test_self_distill_trains_on_the_passed_samples_within_its_budget(triaged, tmp_path):
    summary = train.run(config(triaged, tmp_path / "sd", "self-distill", sampling={"judge_budget": 50}), progress=False)
    samples = [json.loads(line) for line in (tmp_path / "sd" / "samples.jsonl").read_text().splitlines()]
    prompts = {json.dumps(p) for p in old_prompts(read_pairs(str(triaged)).pairs)}
    assert {json.dumps(s["prompt"]) for s in samples} <= prompts  # the old prompts, nothing else
    assert summary["terms"] == {"L_SFT": sum(s["compliant"] is True for s in samples)}
    budget = summary["budget"]
    assert budget["judge_calls"] == len(samples) <= 50 and budget["judge_budget"] == 50
    assert budget["generated_tokens"] > 0 and budget["training_tokens"] > 0 and budget["wall_s"] > 0
    assert summary["steps"] == 3 and (tmp_path / "sd" / "model" / "model.safetensors").exists()


def test_self_distill_reuses_its_samples_until_what_produces_them_changes(triaged, tmp_path):
    out = tmp_path / "sd"
    train.run(config(triaged, out, "self-distill"), progress=False)
    drawn = (out / "samples.summary.json").read_text()
    train.run(config(triaged, out, "self-distill", learning_rate=1e-4), progress=False)  # a training setting
    assert (out / "samples.summary.json").read_text() == drawn
    train.run(config(triaged, out, "self-distill", sampling={"temperature": 0.7}), progress=False)
    assert json.loads((out / "samples.summary.json").read_text())["produced_by"] != json.loads(drawn)["produced_by"]


# ----------------------------------------------------------------------------- online-dpo


def test_online_dpo_stops_where_its_budget_runs_out(triaged, tmp_path):
    summary = train.run(config(triaged, tmp_path / "od", "online-dpo", sampling={"judge_budget": 12, "on_budget": "stop"}),
                        progress=False)
    assert summary["steps"] == 1  # one step takes up to 2 x 4 judgements; a second could exceed 12
    assert summary["budget"]["judge_calls"] <= 12 and summary["budget"]["generated_tokens"] > 0


def test_online_dpo_reuses_judged_pairs_once_its_budget_is_spent(triaged, tmp_path):
    summary = train.run(config(triaged, tmp_path / "od", "online-dpo", sampling={"judge_budget": 12}), progress=False)
    assert summary["steps"] == 3 and summary["budget"]["judge_calls"] <= 12
    state = json.loads((tmp_path / "od" / "checkpoints" / "checkpoint-3" / BUDGET_STATE).read_text())
    assert state["budget"]["judgements"] == summary["budget"]["judge_calls"]
    assert state["budget"]["generated_tokens"] == summary["budget"]["generated_tokens"]  # nothing sampled after step 1


def test_online_dpo_refuses_a_budget_short_of_one_step(triaged, tmp_path):
    with pytest.raises(RealignError, match="does not pay for one step"):
        train.run(config(triaged, tmp_path / "od", "online-dpo", sampling={"judge_budget": 7}), progress=False)


def test_online_dpo_resumes_exactly(triaged, tmp_path):
    """Killed after its step-2 checkpoint, a rerun ends with the weights, pairs and budget of an
    uninterrupted run: samples are seeded by step, and the checkpoint keeps the pairs and counters."""
    settings = {"max_steps": 4, "batch_size": 8}
    whole = train.run(config(triaged, tmp_path / "whole", "online-dpo", **settings), progress=False)
    out = tmp_path / "cut"
    train.run(config(triaged, out, "online-dpo", **settings), progress=False)
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    (out / "train_summary.json").unlink()
    resumed = train.run(config(triaged, out, "online-dpo", **settings), progress=False)
    assert resumed["resumed"] and resumed["steps"] == 4
    for name in ("judge_calls", "generated_tokens", "training_tokens"):
        assert resumed["budget"][name] == whole["budget"][name], name
    assert resumed["terms"] == whole["terms"]
    a, b = load_file(tmp_path / "whole" / "model" / "model.safetensors"), load_file(out / "model" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_online_dpo_trains_a_lora_adapter_against_the_adapter_disabled(triaged, tmp_path):
    summary = train.run(config(triaged, tmp_path / "od", "online-dpo", finetune="lora", max_steps=2,
                               lora={"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]}), progress=False)
    assert summary["steps"] == 2 and (tmp_path / "od" / "adapter" / "adapter_config.json").exists()


# ----------------------------------------------------------------------------- keys, budgets of the others, errors


def test_keys_change_with_the_sampling_options_of_the_sampling_methods_only(triaged, tmp_path):
    for method in ("self-distill", "online-dpo"):
        keys = {train.produced_by(config(triaged, tmp_path / "x", method, sampling=s))["key"]
                for s in ({}, {"samples": 3}, {"temperature": 0.5}, {"judge_budget": 100}, {"system_prompt": True})}
        assert len(keys) == 5, method
    same = {train.produced_by(config(triaged, tmp_path / "x", "trace-no-impact", sampling=s, policy=p))["key"]
            for s, p in (({}, SHIFT), ({"samples": 3}, None))}
    assert len(same) == 1  # a method that does not sample does not read them


def test_a_method_on_the_triage_records_the_triages_judge_calls_as_its_budget(triaged, tmp_path):
    summary = train.run(config(triaged, tmp_path / "t", "trace-no-impact", max_steps=1), progress=False)
    records = read_pairs(str(triaged)).pairs
    distinct = {(r.prompt, side) for r in records for side in (r.chosen, r.rejected)}
    assert summary["budget"]["judge_calls"] == triage_judgements(records) == len(distinct)
    assert summary["budget"]["judge_calls_from"] == "the triage of its records"
    assert summary["budget"]["training_tokens"] > 0 and summary["budget"]["generated_tokens"] == 0


def test_a_sampling_method_without_a_judge_is_one_line(triaged, tmp_path):
    with pytest.raises(RealignError, match="set `policy` and `judge`"):
        train.run(config(triaged, tmp_path / "od", "online-dpo", judge=None), progress=False)


def test_the_pipeline_gives_the_sampling_methods_the_runs_judge_policy_and_cache(triaged, tmp_path):
    from realign.runs.pipeline import Pipeline, RunConfig

    run = RunConfig(out=tmp_path / "run", model=MODEL, data=str(triaged), policy=SHIFT,
                    methods=["trace", "self-distill", "online-dpo"], eval={"prompts": str(triaged)})
    pipeline = Pipeline(run, "test")
    for method in ("self-distill", "online-dpo"):
        cfg = pipeline.train[method]
        assert (cfg.policy, cfg.judge.backend, cfg.cache) == (pipeline.triage.policy, "rules", run.cache_path())
    assert pipeline.train["trace"].judge is None and pipeline.train["trace"].policy is None


def test_realign_run_trains_and_evaluates_both(triaged, tmp_path):
    """`realign run` with methods [self-distill, online-dpo]: trained with the run's judge, policy and
    cache, evaluated, their budgets in their summaries; a rerun skips every stage."""
    from realign.runs.pipeline import Pipeline, RunConfig

    data = triaged.parents[2] / "data"
    run = RunConfig(out=tmp_path / "run", model=MODEL, data=str(data / "pairs.jsonl"), policy=SHIFT, device="cpu",
                    methods=["self-distill", "online-dpo"], eval={"prompts": str(data / "eval_prompts.jsonl"),
                                                                  "max_new_tokens": 8, "batch_size": 64},
                    train={"finetune": "full", "max_steps": 2, "batch_size": 4, "sampling": {"max_new_tokens": 16}},
                    report=False)
    done = Pipeline(run, "test").execute(progress=False)
    assert {done[f"train:{m}"] for m in ("self-distill", "online-dpo")} == {"ran"}
    for method in ("self-distill", "online-dpo"):
        summary = json.loads((tmp_path / "run" / "train" / method / "train_summary.json").read_text())
        assert summary["budget"]["judge_calls"] > 0 and summary["budget"]["generated_tokens"] > 0
        assert (tmp_path / "run" / "eval" / method / "metrics.json").exists()
    again = Pipeline(run, "test").execute(progress=False)
    assert all(status.startswith("skipped") for name, status in again.items() if name != "report")


def test_the_benchmarks_give_the_sampling_baselines_traces_budget_and_four_times_it(triaged, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from _common import BUDGETED, budget_overrides, registered
    from efficacy import MAIN_METHODS, method_overrides

    triage = triage_judgements(read_pairs(str(triaged)).pairs)
    assert {u: registered(u) for u in BUDGETED} == {"self-distill": "self-distill", "self-distill-4x": "self-distill",
                                                     "online-dpo": "online-dpo", "online-dpo-4x": "online-dpo"}
    assert budget_overrides("online-dpo", triaged) == {"train": {"sampling": {"judge_budget": triage}}}
    assert budget_overrides("self-distill-4x", triaged) == {"train": {"sampling": {"judge_budget": 4 * triage}}}
    assert budget_overrides("trace", triaged) == {} and registered("trace") == "trace"
    # TRACE's corrective search is part of its budget: every candidate it judged (cache hits included)
    from realign.runs.files import write_json
    from realign.runs.stage import summary_path

    shutil.copy(triaged, tmp_path / "triaged.jsonl")
    triaged = tmp_path / "triaged.jsonl"
    summary = {"stage": "triage"}
    write_json(summary_path(triaged), {**summary, "corrective": {"sources": {"style-prefix": {"judged": 30, "judge_calls": 0},
                                                                         "samples": {"judged": 5, "judge_calls": 5}}}})
    assert budget_overrides("online-dpo-4x", triaged) == {"train": {"sampling": {"judge_budget": 4 * (triage + 35)}}}
    assert set(BUDGETED) <= set(MAIN_METHODS)
    assert method_overrides("online-dpo", {"noise": 0.0})["train"]["sampling"]["system_prompt"] is False  # none there


def test_self_distill_draws_again_exactly_what_an_interrupted_preparation_had_drawn(triaged, tmp_path):
    """Half the cached samples lost (a preparation killed half way): the rerun draws the missing
    batches again, each whole with its own seed, and ends with the same samples."""
    import sqlite3

    out = tmp_path / "sd"
    train.run(config(triaged, out, "self-distill", max_steps=1), progress=False)
    drawn = (out / "samples.jsonl").read_text()
    for name in ("samples.jsonl", "samples.summary.json"):
        (out / name).unlink()
    with sqlite3.connect(tmp_path / "cache.sqlite") as db:
        db.execute("DELETE FROM generations WHERE rowid % 2 = 0")
        db.execute("DELETE FROM verdicts")
    shutil.rmtree(out / "checkpoints")
    train.run(config(triaged, out, "self-distill", max_steps=1), progress=False)
    assert (out / "samples.jsonl").read_text() == drawn


def test_realign_train_takes_a_sampling_method_from_a_yaml_config(triaged, tmp_path):
    from typer.testing import CliRunner

    from realign.cli import app

    (tmp_path / "train.yaml").write_text(
        f"model: {MODEL}\ndata: {triaged}\nout: out\nmethod: online-dpo\npolicy: {SHIFT}\njudge: {{backend: rules}}\n"
        "cache: cache.sqlite\nfinetune: full\nmax_steps: 2\nbatch_size: 4\ndevice: cpu\n"
        "sampling: {max_new_tokens: 16, judge_budget: 100}\n")
    done = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "train.yaml"), "-q"])
    assert done.exit_code == 0, done.output
    summary = json.loads((tmp_path / "out" / "train_summary.json").read_text())
    assert summary["method"]["name"] == "online-dpo" and 0 < summary["budget"]["judge_calls"] <= 100
    assert (tmp_path / "cache.sqlite").exists()  # the config's cache, taken from its folder
