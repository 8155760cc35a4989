"""`realign demo` (what `make demo` runs), end to end through the CLI: the synthetic world's
data, the whole pipeline, the before/after table and the report — with a tiny untrained model
in place of the bootstrapped one and a few training steps, so it runs in seconds."""

from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from realign.cli import app
from realign.synth import World
from realign.synth.experiment import RUN_DEFAULTS
from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer


@pytest.fixture()
def quick_demo(tmp_path, monkeypatch):
    """The demo's own code path, with the old-policy model replaced by a tiny one for world
    seed 0 (the demo's world) and short training / generation."""
    tok = tiny_tokenizer(World(0).corpus(), vocab_size=600)
    model_dir = save_tiny(tmp_path / "tiny", tokenizer=tok, model=tiny_llama(tok, seed=1))
    monkeypatch.setattr("realign.synth.demo.demo_model", lambda progress=True: model_dir)
    monkeypatch.setitem(RUN_DEFAULTS, "score", {**RUN_DEFAULTS["score"], "gold_size": 12})
    monkeypatch.setitem(RUN_DEFAULTS, "train", {**RUN_DEFAULTS["train"], "max_steps": 2, "save_steps": 2})
    monkeypatch.setitem(RUN_DEFAULTS, "eval", {**RUN_DEFAULTS["eval"], "max_new_tokens": 4})
    return tmp_path / "demo"


def test_demo_prints_the_before_after_table_and_resumes(quick_demo):
    result = CliRunner().invoke(app, ["demo", "--out", str(quick_demo), "-q"])
    assert result.exit_code == 0, result.output
    out = result.output
    header = next(line for line in out.splitlines() if line.split() == ["base", "trace"])
    assert header
    for label in ("new-policy agreement, all sensitive prompts", "agreement on the slices the shift changed",
                  "agreement on the slices it left unchanged", "harmful responses", "degenerate responses", "benign accuracy"):
        row = next(line for line in out.splitlines() if line.startswith(label))
        assert len(row[len(label):].split()) == 2 and all(cell.endswith("%") for cell in row[len(label):].split())
    changed = next(line for line in out.splitlines() if line.startswith("changed slices: "))
    assert "cyber/educational" in changed and "bio/" not in changed  # bio stays zero tolerance
    assert f"report: {quick_demo / 'report.html'}" in out and (quick_demo / "report.html").is_file()
    assert (quick_demo / "run_config.yaml").is_file() and (quick_demo / "train" / "trace").is_dir()
    # the report of a real run says what its numbers are: the base model is the (before) row, and
    # balanced agreement is there, as the synthetic prompts state the expected behaviour, beside the slice mean
    report = (quick_demo / "report.md").read_text()
    assert "| *base (before)* |" in report and "Rows marked (before) are the model before re-alignment" in report
    header = next(line for line in report.splitlines() if line.startswith("| Run | TPA"))
    assert "Balanced (help/refuse)" in header and "Slice mean" in header
    assert "## Responses" in report and "### Response styles" in report
    # it opens with the summary: the run config names the old policy, so the slices the shift changed are known
    assert report.split("\n## ")[1].startswith("Summary") and "· old policy synth-old (" in report.splitlines()[2]
    assert "trace: on the 8 slices the policy changed, agreement went from " in report
    assert "### Slices the policy changed" in report and "| all changed slices (pooled) |" in report
    # a second run finds every stage's output and redoes nothing
    again = CliRunner().invoke(app, ["demo", "--out", str(quick_demo), "-q"])
    assert again.exit_code == 0, again.output
    assert "[train:trace] running" not in again.output and "[train:trace] skipped" in again.output


def test_the_shipped_demo_model_is_what_the_bootstrap_builds_today():
    """The demo starts from the shipped weights only while they are what `realign synth
    bootstrap` builds (same world, recipe, config). This fails when the world or the recipe
    changes: rebuild with `realign synth bootstrap --force` and copy the folder it prints over
    src/realign/resources/demo_model (keep bootstrap.json)."""
    from realign.synth.demo import SHIPPED_MODEL, demo_model
    from realign.synth.bootstrap import BootstrapConfig, built_key

    assert built_key(SHIPPED_MODEL) == BootstrapConfig().key(World(0))
    assert demo_model(progress=False) == SHIPPED_MODEL
    assert (SHIPPED_MODEL / "model.safetensors").stat().st_size < 4_000_000  # fp32, 0.7M parameters


def test_a_stale_shipped_model_is_not_used(tmp_path, monkeypatch, capsys):
    """Shipped weights from another world or recipe: the demo bootstraps instead, and says so."""
    import json
    import shutil

    from realign.synth import demo

    stale = tmp_path / "demo_model"
    shutil.copytree(demo.SHIPPED_MODEL, stale)
    meta = json.loads((stale / "bootstrap.json").read_text())
    (stale / "bootstrap.json").write_text(json.dumps({**meta, "key": "0" * 16}))
    monkeypatch.setattr(demo, "SHIPPED_MODEL", stale)
    built = tmp_path / "bootstrapped"
    monkeypatch.setattr(demo, "bootstrap", lambda cfg, progress=True: SimpleNamespace(path=built))
    assert demo.demo_model(progress=False) == built
    assert "was built from another world or bootstrap recipe" in capsys.readouterr().err
