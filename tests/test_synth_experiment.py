"""The synthetic-world experiment shared by `realign demo` and benchmarks/efficacy.py: data,
noisy ground-truth triage, the run config, and the outcome table read back from a real run."""

import copy
import json

import pytest

from realign.runs.pipeline import Pipeline
from realign.synth import World
from realign.synth.experiment import (
    EVAL_FILE,
    adopt_seeded_triage,
    RUN_DEFAULTS,
    merge_settings,
    outcomes,
    prepare_data,
    run_config,
    seed_triage,
    shift_changes,
)
from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer

SHIFT = "synth-contextual"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return prepare_data(tmp_path_factory.mktemp("world") / "data", seed=3, n_pairs=120, eval_per_slice=1, shifts=(SHIFT,))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    tok = tiny_tokenizer(World(3).corpus(), vocab_size=600)
    return save_tiny(tmp_path_factory.mktemp("tiny"), tokenizer=tok, model=tiny_llama(tok, seed=1))


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_prepare_data_writes_eval_prompts_with_benign_rows_once(data):
    rows = _rows(data / EVAL_FILE)
    benign = [r for r in rows if r["slice"] == "benign"]
    assert benign and all("answer" in r for r in benign)
    assert len(rows) - len(benign) == len(_rows(data / "eval_prompts.jsonl"))
    stamp = (data / EVAL_FILE).stat().st_mtime_ns
    prepare_data(data, seed=3, n_pairs=120, eval_per_slice=1, shifts=(SHIFT,))
    assert (data / EVAL_FILE).stat().st_mtime_ns == stamp


def test_shift_changes_are_the_contextual_exceptions(data):
    changed = shift_changes(data, SHIFT)
    assert changed and all(s.split("/")[1] in ("educational", "research", "therapeutic") for s in changed)
    assert shift_changes(data, "synth-old") == set()


def test_seed_triage_flips_the_asked_share_and_drops_oracles(data, tmp_path):
    seed_triage(tmp_path / "clean", data, SHIFT)
    seed_triage(tmp_path / "noisy", data, SHIFT, noise=0.2, seed=3)
    clean = _rows(tmp_path / "clean" / "triage" / "triaged.jsonl")
    noisy = _rows(tmp_path / "noisy" / "triage" / "triaged.jsonl")
    assert len(clean) == len(noisy) == 120
    assert all(r.get("oracle") is None for r in clean + noisy)
    flipped = [r for r in noisy if r.get("meta", {}).get("noise") == "flipped"]
    assert len(flipped) == 24
    assert sum(a["category"] != b["category"] for a, b in zip(clean, noisy)) == 24
    summary = json.loads((tmp_path / "noisy" / "triage" / "triaged.summary.json").read_text())
    assert summary["noise"]["records"] == 24 and sum(summary["counts"].values()) == 120
    seed_triage(tmp_path / "gold", data, SHIFT, oracle=True)
    gold = _rows(tmp_path / "gold" / "triage" / "triaged.jsonl")
    punish = [r for r in gold if r["category"] == "PUNISH" and r["meta"].get("kind") == "sensitive"]
    assert punish and all(r.get("oracle") for r in punish)


def test_seeded_triage_is_kept_only_when_seeded_the_same_way(data, tmp_path):
    """A run directory seeded once without the oracle responses and then asked for them (the
    ceiling's and DPO-Gold's runs) must get them: the earlier records are not silently kept."""
    path = tmp_path / "run" / "triage" / "triaged.jsonl"
    seed_triage(tmp_path / "run", data, SHIFT)
    assert not any(r.get("oracle") for r in _rows(path))
    stamp = path.stat().st_mtime_ns
    seed_triage(tmp_path / "run", data, SHIFT)  # the same settings: kept as they are
    assert path.stat().st_mtime_ns == stamp
    seed_triage(tmp_path / "run", data, SHIFT, oracle=True)
    assert any(r.get("oracle") for r in _rows(path))
    seed_triage(tmp_path / "run", data, SHIFT, oracle=True, noise=0.2, seed=3)
    assert sum(r.get("meta", {}).get("noise") == "flipped" for r in _rows(path)) == 24


def test_merge_settings_is_nested_and_leaves_defaults_alone():
    before = copy.deepcopy(RUN_DEFAULTS)
    merged = merge_settings(RUN_DEFAULTS, {"train": {"alpha_kl": 2.0}, "score": {"params": {"last_k_blocks": 1}}})
    assert merged["train"]["alpha_kl"] == 2.0 and merged["train"]["max_steps"] == RUN_DEFAULTS["train"]["max_steps"]
    assert merged["score"]["params"] == {"kind": "modules", "last_k_blocks": 1}
    assert RUN_DEFAULTS == before


def test_a_small_run_yields_the_outcome_table(data, model_dir, tmp_path):
    run_dir = tmp_path / "run"
    seed_triage(run_dir, data, SHIFT, noise=0.1, seed=3, oracle=True)
    seeded = (run_dir / "triage" / "triaged.jsonl").read_text()
    run = run_config(run_dir, data, str(model_dir), SHIFT, ["trace", "naive-oracle-dpo"], seed=3, overrides={
        "triage": {"corrective": None},  # the seeded records as they are (the next test covers the corrective search)
        "score": {"gold_size": 12},
        "train": {"max_steps": 2, "batch_size": 4, "save_steps": 2},
        "eval": {"max_new_tokens": 4},
    })
    pipeline = Pipeline(run, "test")
    adopt_seeded_triage(pipeline)
    pipeline.execute(progress=False)
    # the pipeline took the seeded triage (oracle responses, flipped labels) instead of re-triaging
    assert (run_dir / "triage" / "triaged.jsonl").read_text() == seeded
    assert '"oracle": "' in seeded and '"noise": "flipped"' in seeded
    table = outcomes(run_dir, data, SHIFT, ["base", "trace", "naive-oracle-dpo"])
    changed = shift_changes(data, SHIFT)
    for row in table.values():
        for key in ("agreement", "changed_slices", "unchanged_slices", "harmful", "degenerate", "benign_accuracy"):
            assert row[key] is None or 0.0 <= row[key] <= 1.0
        assert set(row["by_slice"]) >= changed and "benign" not in row["by_slice"]
    # the base model's pooled changed-slice rate is the mean of its per-slice rates (1 prompt each)
    base = table["base"]
    assert base["changed_slices"] == pytest.approx(sum(base["by_slice"][s] for s in changed) / len(changed))


def test_seeded_triage_gets_the_corrective_responses_its_settings_ask_for(data, model_dir, tmp_path):
    """In the benchmark the triage is seeded from the truth: with ``triage.corrective`` the
    adopted records get the stage's corrective responses (keyed like the stage), once; with it
    turned off, none are left over."""
    run_dir = tmp_path / "run"
    path, summary = run_dir / "triage" / "triaged.jsonl", run_dir / "triage" / "triaged.summary.json"
    seed_triage(run_dir, data, SHIFT)
    corrective = {"sources": ["old-responses", "samples"], "samples": 2, "max_new_tokens": 4}

    def adopt(triage):
        run = run_config(run_dir, data, str(model_dir), SHIFT, ["trace"], seed=3, overrides={"triage": triage})
        pipeline = Pipeline(run, "test")
        adopt_seeded_triage(pipeline)
        return pipeline

    pipeline = adopt({"corrective": corrective})
    made = json.loads(summary.read_text())
    from realign.triage.run import produced_by

    assert made["produced_by"] == produced_by(pipeline.triage) and "corrective_model" in made["produced_by"]["inputs"]
    found = made["corrective"]
    assert found["punish_pairs"] == sum(r["category"] == "PUNISH" for r in _rows(path)) > 0
    assert set(found["sources"]) == {"old-responses", "samples"} and found["sources"]["samples"]["generated_tokens"] > 0
    assert sum("corrective" in r for r in _rows(path)) == found["pairs_with_y_c"]
    stamp = path.stat().st_mtime_ns
    adopt({"corrective": corrective})  # the same settings: nothing found again
    assert path.stat().st_mtime_ns == stamp
    adopt({"corrective": None})  # off (the synthetic world's defaults have it on)
    assert "corrective" not in json.loads(summary.read_text()) and not any("corrective" in r for r in _rows(path))


def test_an_export_without_a_shift_asked_for_is_written_again(tmp_path):
    out = prepare_data(tmp_path / "d", seed=3, n_pairs=20, eval_per_slice=1, shifts=(SHIFT,))
    assert not (out / "truth" / "synth-research-referral.jsonl").exists()
    prepare_data(out, seed=3, n_pairs=20, eval_per_slice=1, shifts=(SHIFT, "synth-research-referral"))
    assert (out / "truth" / "synth-research-referral.jsonl").exists()
