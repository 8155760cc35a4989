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
    assert again.exit_code == 0 and again.output.count("skipped (output exists)") == 7


def test_config_errors_surface_before_anything_runs(model_dir, tmp_path):
    cfg = write_config(tmp_path / "run.yaml", model_dir, tmp_path / "run", methods="[trace, best-method]")
    res = CliRunner().invoke(app, ["run", str(cfg)])
    assert isinstance(res.exception, RealignError) and "unknown method 'best-method'" in str(res.exception)
    assert not (tmp_path / "run").exists()
    bad = tmp_path / "bad.yaml"
    bad.write_text(write_config(tmp_path / "x.yaml", model_dir, tmp_path / "r").read_text().replace("max_steps: 3", "max_steps: 3, beta: -1"))
    res = CliRunner().invoke(app, ["run", str(bad)])
    assert "field 'beta'" in str(res.exception) and "train" in str(res.exception)


def test_configuration_reference_is_current():
    from pathlib import Path

    from realign.config_reference import reference

    docs = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert docs.read_text(encoding="utf-8") == reference(), "regenerate: python -m realign.config_reference > docs/configuration.md"


@pytest.mark.parametrize("name", ["config.yaml", "config_kl1.yaml", "config_retain_pref.yaml"])
def test_example_run_configs_validate(name, monkeypatch):
    """The SmolLM2 example's run configs stay valid as the config schema changes."""
    from realign.pipeline import load

    monkeypatch.chdir(Path(__file__).resolve().parents[1] / "examples" / "smollm2")  # it runs from there
    pipeline = load(name)
    assert pipeline.score.variant == "paper"  # the variant its README numbers were measured with
