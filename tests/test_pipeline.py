"""`realign run`: one YAML, all stages, skipping what exists, resuming what was interrupted."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from realign.cli import app
from realign.errors import RealignError
from realign.resources import resource_path
from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = tiny_tokenizer()
    return save_tiny(tmp_path_factory.mktemp("tiny"), tokenizer=tok, model=tiny_llama(tok, seed=2))


def write_config(path, model_dir, out, **extra):
    pairs = resource_path("examples/pairs.jsonl")
    text = f"""
out: {out}
model: {model_dir}
data: {pairs}
policy: contextual-exceptions
judge: {{backend: rules}}
methods: [trace, naive-oracle-dpo]
device: cpu
score: {{gold_size: 12, params: {{lora_r: 4}}}}
train: {{max_steps: 3, batch_size: 4, lora: {{r: 4}}, logging_steps: 1}}
eval: {{prompts: {pairs}, max_new_tokens: 6}}
report: false
"""
    for k, v in extra.items():
        if f"\n{k}: " in text:  # replace the default: a key given twice is refused (StrictLoader)
            text = "\n".join(f"{k}: {v}" if line.startswith(f"{k}: ") else line for line in text.split("\n"))
        else:
            text += f"{k}: {v}\n"
    path.write_text(text)
    return path


def test_run_does_every_stage_then_skips_them(model_dir, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run")
    res = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert res.exit_code == 0, res.output
    for stage in ("triage", "score", "train:trace", "train:naive-oracle-dpo", "eval:base", "eval:trace"):
        assert f"{stage}" in res.output
    run = tmp_path / "run"
    assert (run / "run_config.yaml").exists() and (run / "triage" / "gold.jsonl").exists()
    assert json.loads((run / "score" / "weighted.summary.json").read_text())["conflict"] == 18
    assert (run / "train" / "trace" / "adapter" / "adapter_model.safetensors").exists()
    for name in ("base", "trace", "naive-oracle-dpo"):
        metrics = json.loads((run / "eval" / name / "metrics.json").read_text())
        assert metrics["label"] == name and metrics["tpa"]["overall"]["n"] == 36
    again = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert again.exit_code == 0 and again.output.count("skipped (up to date)") == 7
    # it ends with the before/after table: one column per evaluation, base first
    header = next(line for line in again.stdout.splitlines() if "naive-oracle-dpo" in line and "base" in line)
    assert header.split() == ["base", "trace", "naive-oracle-dpo"]
    assert any(line.startswith("new-policy agreement (TPA)") for line in again.stdout.splitlines())

    # one setting changed: the stages it reaches rerun, saying why; the others are skipped
    (tmp_path / "run.yaml").write_text(cfg.read_text().replace("max_steps: 3", "max_steps: 4"))
    changed = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert changed.exit_code == 0, changed.output
    lines = {line.split()[0]: line for line in changed.stderr.splitlines() if line.startswith("[")}
    for name in ("[triage]", "[score]", "[eval:base]"):
        assert "skipped" in lines[name], lines
    for name in ("[train:trace]", "[train:naive-oracle-dpo]"):
        assert "rerunning: changed: setting max_steps" in lines[name], lines
    for name in ("[eval:trace]", "[eval:naive-oracle-dpo]"):
        assert "rerunning: changed: input adapter" in lines[name], lines
    summary = json.loads((run / "train" / "trace" / "train_summary.json").read_text())
    assert summary["steps"] == 4 and summary["config"]["max_steps"] == 4
    assert "max_steps: 4" in (run / "run_config.yaml").read_text()


def test_changed_input_content_at_the_same_path_reruns_everything_after_it(model_dir, tmp_path):
    """The data file rewritten in place (same path, one pair's responses swapped): triage and
    everything downstream rerun; nothing is silently reused."""
    data = tmp_path / "pairs.jsonl"
    rows = resource_path("examples/pairs.jsonl").read_text().splitlines()
    data.write_text("\n".join(rows) + "\n")
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run")
    cfg.write_text(cfg.read_text().replace(f"data: {resource_path('examples/pairs.jsonl')}", f"data: {data}")
                   .replace("methods: [trace, naive-oracle-dpo]", "methods: [naive-oracle-dpo]"))
    first = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert first.exit_code == 0, first.output
    row = json.loads(rows[0])
    row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
    data.write_text("\n".join([json.dumps(row), *rows[1:]]) + "\n")
    second = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert second.exit_code == 0, second.output
    lines = {line.split()[0]: line for line in second.stderr.splitlines() if line.startswith("[")}
    assert "rerunning: changed: input data" in lines["[triage]"]
    assert "rerunning: changed: input data" in lines["[train:naive-oracle-dpo]"]
    assert "skipped" in lines["[eval:base]"]  # the base model and the prompts did not change
    assert "rerunning" in lines["[eval:naive-oracle-dpo]"]



def test_the_report_shows_only_what_the_current_config_made(model_dir, tmp_path):
    """Issue 27.3: a method dropped from ``methods`` after a policy change keeps its folders
    (trained and evaluated under the old policy); the run's report leaves them out and says so."""
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run", methods="[naive-oracle-dpo, trace-no-impact]")
    first = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert first.exit_code == 0, first.output
    cfg.write_text(cfg.read_text().replace("policy: contextual-exceptions", "policy: safety-first")
                   .replace("methods: [naive-oracle-dpo, trace-no-impact]", "methods: [naive-oracle-dpo]")
                   .replace("report: false", "report: true"))
    second = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert second.exit_code == 0, second.output
    run = tmp_path / "run"
    assert (run / "eval" / "trace-no-impact" / "metrics.json").exists()  # left where it is
    report = (run / "report.md").read_text()
    body, sources = report.split("## Sources")
    assert "naive-oracle-dpo" in body and "trace-no-impact" not in body
    assert "eval/trace-no-impact/metrics.json: left out, not an output of this run's current config" in sources
    assert "trace-no-impact" not in (run / "report.html").read_text().split("Files read")[0]


def test_preflight_lists_every_problem_before_any_stage(model_dir, tmp_path, monkeypatch):
    monkeypatch.delenv("REALIGN_TEST_NO_KEY", raising=False)
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run")
    text = cfg.read_text().replace(f"model: {model_dir}", f"model: {tmp_path / 'no-model'}")
    text = text.replace("eval: {prompts: ", f"eval: {{prompts: {tmp_path / 'missing.jsonl'}, attacks: ")
    text = text.replace("judge: {backend: rules}", "judge: {backend: openai, model: gpt-x, "
                        "base_url: 'https://judge.example/v1', api_key_env: REALIGN_TEST_NO_KEY}")
    cfg.write_text(text)
    res = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    message = str(res.exception)
    assert isinstance(res.exception, RealignError) and "3 problem(s) before the first stage" in message
    assert "no-model" in message and "missing.jsonl" in message and "REALIGN_TEST_NO_KEY" in message
    assert "\n" not in message
    assert not (tmp_path / "run" / "triage").exists()


def test_old_policy_is_taken_from_the_config_folder_and_checked_before_any_stage(model_dir, tmp_path):
    """Issue 33: ``old_policy`` (what the report compares the eval prompts' `expected` with) is
    an input path like ``policy``, and one that is not a policy stops the run before triage."""
    from realign.runs.pipeline import load

    (tmp_path / "old.yaml").write_text(resource_path("policies/safety_first.yaml").read_text())
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run", old_policy="old.yaml")
    assert load(cfg).run.old_policy == str(tmp_path / "old.yaml")
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run", old_policy="no-such-policy.yaml")
    res = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    message = str(res.exception)
    assert isinstance(res.exception, RealignError) and "1 problem(s) before the first stage" in message, message
    assert "no-such-policy.yaml: policy file not found" in message
    assert not (tmp_path / "run").exists()


def test_config_errors_surface_before_anything_runs(model_dir, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run", methods="[trace, best-method]")
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert isinstance(res.exception, RealignError) and "unknown method 'best-method'" in str(res.exception)
    assert not (tmp_path / "run").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(write_config(tmp_path / "x.yaml", model_dir, tmp_path / "r").read_text().replace("max_steps: 3", "max_steps: 3, beta: -1"))
    res = CliRunner().invoke(app, ["run", str(bad)])
    assert "field 'beta'" in str(res.exception) and "train" in str(res.exception)


def test_preflight_finds_devices_empty_prompts_rules_that_cannot_decide_and_a_cache_that_is_not_one(
        model_dir, tmp_path, monkeypatch):
    """Issue 27, items 13 and 19: each was found only after triage (or not at all); the
    pre-flight check lists them all, naming the file and field, before any stage."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    (tmp_path / "empty.jsonl").write_text("")
    (tmp_path / "policy.yaml").write_text("name: empty-rules\ntext: Be kind.\nrules: {}\n")
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run", device="cuda",
                       cache=resource_path("examples/pairs.jsonl"))
    text = cfg.read_text().replace("policy: contextual-exceptions", f"policy: {tmp_path / 'policy.yaml'}")
    cfg.write_text(text.replace("eval: {prompts: ", f"eval: {{device: 'cuda:1', prompts: {tmp_path / 'empty.jsonl'}, text: "))
    res = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    message = str(res.exception)
    assert isinstance(res.exception, RealignError) and "6 problem(s) before the first stage" in message, message
    assert f"{cfg}: field 'device': device 'cuda': CUDA is not available" in message
    # the corrective search, on by default in realign run, samples the run's model on the run's device
    assert f"{cfg}: field 'triage.corrective.device': device 'cuda': CUDA is not available" in message
    assert f"{cfg}: field 'eval.device': device 'cuda:1': CUDA is not available" in message
    assert f"{tmp_path / 'empty.jsonl'}: no records (nothing to evaluate on)" in message
    assert "policy 'empty-rules': its 'rules' section has no requirements" in message
    assert f"{resource_path('examples/pairs.jsonl')} is not a verdict cache" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("train,expected", [
    ("trainer_args: {eval_strategy: steps}", "field 'trainer_args': 'eval_strategy': 'steps' needs an evaluation set"),
    ("trainer_args: {load_best_model_at_end: true}", "field 'trainer_args': 'load_best_model_at_end': True needs an evaluation set"),
    ("max_steps: 0", "field 'max_steps': must be at least 1 (optimizer steps), or -1 to train for `epochs`; 0 would train 1 step"),
    ("max_steps: -5", "field 'max_steps': must be at least 1 (optimizer steps), or -1 to train for `epochs`; -5 would train for `epochs`"),
])
def test_training_settings_transformers_would_refuse_or_misread_are_config_errors(model_dir, tmp_path, train, expected):
    """Issue 27, items 12 and 13: transformers' ValueError traceback (an evaluation set it is
    never given), one step for max_steps 0 and epochs for -5 become one error naming the
    config file and field before anything runs."""
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run")
    cfg.write_text(cfg.read_text().replace("train: {max_steps: 3, ", f"train: {{{train}, "))
    res = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert isinstance(res.exception, RealignError), res.output
    assert str(res.exception).startswith(f"{cfg}: train: {expected}"), str(res.exception)
    assert not (tmp_path / "run").exists()


def test_a_stage_whose_outputs_changed_since_it_wrote_them_is_not_skipped(model_dir, tmp_path):
    """Issue 27, item 13: a deleted trained `model/` folder and a `triaged.jsonl` cut by hand
    were reused (train skipped, then eval failed; the cut file trained on). The outputs each
    summary records are checked before a skip: the stage reruns and says why."""
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run", methods="[naive-oracle-dpo]")
    cfg.write_text(cfg.read_text().replace("train: {", "train: {finetune: full, "))
    assert CliRunner().invoke(app, ["run", str(cfg), "-q"]).exit_code == 0
    run = tmp_path / "run"
    model = run / "train" / "naive-oracle-dpo" / "model"
    triaged = run / "triage" / "triaged.jsonl"
    written = triaged.read_bytes()
    import shutil

    shutil.rmtree(model)
    res = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line for line in res.stderr.splitlines() if line.startswith("[")}
    assert lines["[train:naive-oracle-dpo]"] == f"[train:naive-oracle-dpo] rerunning: output {model} is missing"
    assert "skipped" in lines["[triage]"] and (model / "config.json").exists()

    triaged.write_bytes(b"".join(written.splitlines(keepends=True)[:5]))
    res = CliRunner().invoke(app, ["run", str(cfg), "-q"])
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line for line in res.stderr.splitlines() if line.startswith("[")}
    assert lines["[triage]"] == f"[triage] rerunning: output {triaged} changed since the stage wrote it"
    assert triaged.read_bytes() == written  # rewritten whole: the stages after it see their input unchanged
    assert all("skipped" in line for name, line in lines.items() if name != "[triage]"), lines


def test_configuration_reference_is_current():
    from pathlib import Path

    from realign.config.reference import reference

    docs = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert docs.read_text(encoding="utf-8") == reference(), "regenerate: python -m realign.config.reference > docs/configuration.md"


@pytest.mark.parametrize("name", ["config.yaml"])
def test_example_run_configs_validate(name, monkeypatch):
    """The SmolLM2 example's run config stays valid as the config schema changes."""
    from realign.runs.pipeline import load

    monkeypatch.chdir(Path(__file__).resolve().parents[1] / "examples" / "smollm2")  # it runs from there
    pipeline = load(name)
    assert pipeline.score.variant == "cosine"  # the library default (benchmarks/real_smollm2.py runs config.yaml)


def test_run_is_a_loop_over_stages_that_each_build_their_judge_and_policy_once(model_dir, tmp_path, monkeypatch):
    """Issue 32, item 2: `realign run` drives each stage through the Stage protocol (pre-flight,
    key, run) instead of reaching into stage internals. The pre-flight check, the skip check and
    the run of a stage share one policy and one judge (the policy was parsed up to four times per
    stage and the judge built up to three times), and trainer_args are checked once, when the
    config is validated (they were checked again by the pre-flight and by the training run)."""
    import realign.judges
    from realign.runs.pipeline import load
    from realign.policy import Policy
    from realign.runs.stage import Stage
    from realign.train.trainer_args import trainer_args_problem

    calls = {"policy": 0, "judge": 0, "trainer_args": 0}

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(Policy, "load", counted("policy", Policy.load))
    monkeypatch.setattr(realign.judges, "build", counted("judge", realign.judges.build))  # what make_judge calls
    checked = counted("trainer_args", trainer_args_problem)
    monkeypatch.setattr("realign.config.train.trainer_args_problem", checked)
    monkeypatch.setattr("realign.train.trainer_args.trainer_args_problem", checked)
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run", methods="[naive-oracle-dpo]")
    cfg.write_text(cfg.read_text().replace("train: {", "train: {trainer_args: {dataloader_pin_memory: false}, "))
    pipeline = load(cfg)
    assert [s.name for s in pipeline.stages] == ["triage", "train:naive-oracle-dpo", "eval:base", "eval:naive-oracle-dpo"]
    assert all(isinstance(s, Stage) for s in pipeline.stages) and pipeline.report is None
    done = pipeline.execute(progress=False)
    assert list(done.values()) == ["ran"] * 4
    # one policy and one judge per stage that judges: triage and the two evaluations
    assert calls == {"policy": 3, "judge": 3, "trainer_args": 1}, calls

