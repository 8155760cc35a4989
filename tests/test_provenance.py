"""Every stage's ``produced_by`` key changes with one setting or one byte of any input, and not
with what cannot change the result (output paths, device, logging)."""

import json

import pytest

from realign.triage import run as triage
from realign.score import run as score
from realign.train import run as train
from realign.config import EvalConfig, ScoreConfig, TrainConfig, TriageConfig
from realign.evaluate import run as evaluate
from realign.policy import resolve_policy
from realign.runs.provenance import what_changed
from realign.resources import resource_path


@pytest.fixture()
def files(tmp_path):
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(resource_path("examples/pairs.jsonl").read_bytes())
    policy = tmp_path / "policy.yaml"
    policy.write_bytes(resolve_policy("contextual-exceptions").read_bytes())
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model / "model.safetensors").write_bytes(b"weights")
    return {"data": data, "policy": policy, "model": model, "tmp": tmp_path}


def stage_configs(f, **changes):
    common = {"model": str(f["model"]), "device": "cpu"}
    made = {
        "triage": (triage.produced_by, TriageConfig(data=str(f["data"]), policy=f["policy"], judge={"backend": "rules"},
                                                    out=f["tmp"] / "t.jsonl", cache=f["tmp"] / "c.sqlite")),
        "score": (score.produced_by, ScoreConfig(data=str(f["data"]), out=f["tmp"] / "w.jsonl", **common)),
        "train": (train.produced_by, TrainConfig(data=str(f["data"]), out=f["tmp"] / "run", **common)),
        "eval": (evaluate.produced_by, EvalConfig(prompts=str(f["data"]), policy=f["policy"], judge={"backend": "rules"},
                                                  out=f["tmp"] / "m.json", **common)),
    }
    out = {}
    for stage, (fn, cfg) in made.items():
        out[stage] = fn(cfg.model_copy(update=changes.get(stage, {})))
    return out


@pytest.mark.parametrize("stage,setting", [("triage", {"skip_invalid": True}), ("score", {"gold_size": 13}),
                                           ("train", {"max_steps": 11}), ("eval", {"max_new_tokens": 7})])
def test_one_setting_changes_the_key(files, stage, setting):
    before = stage_configs(files)[stage]
    after = stage_configs(files, **{stage: setting})[stage]
    assert before["key"] != after["key"]
    assert what_changed(before, after) == f"changed: setting {next(iter(setting))}"


@pytest.mark.parametrize("stage,volatile", [("triage", {"out": "elsewhere.jsonl"}), ("score", {"batch_size": 3}),
                                            ("train", {"logging_steps": 3, "out": "x"}), ("eval", {"device": "auto"})])
def test_what_cannot_change_the_result_does_not(files, stage, volatile):
    assert stage_configs(files)[stage]["key"] == stage_configs(files, **{stage: volatile})[stage]["key"]


@pytest.mark.parametrize("name", ["data", "policy", "model"])
def test_one_input_byte_changes_every_stage_that_reads_it(files, name):
    before = stage_configs(files)
    path = files[name] / "model.safetensors" if name == "model" else files[name]
    content = path.read_bytes()
    if name == "policy":  # still a valid policy: one letter of its text
        changed = content.replace(b"violation", b"Violation", 1)
    else:  # the last byte before the final newline (data) or of the weights
        changed = content[:-2] + bytes([content[-2] ^ 1]) + content[-1:]
    assert changed != content
    path.write_bytes(changed)
    after = stage_configs(files)
    readers = {"data": ("triage", "score", "train", "eval"), "policy": ("triage", "eval"),
               "model": ("score", "train", "eval")}[name]
    for stage in before:
        assert (before[stage]["key"] != after[stage]["key"]) == (stage in readers), stage
    for stage in readers:
        key = "prompts" if stage == "eval" and name == "data" else name
        assert what_changed(before[stage], after[stage]) == f"changed: input {key}"


def test_a_judge_endpoint_is_an_input(files, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    judges = [{"backend": "openai", "model": "m", "base_url": url} for url in ("http://a:1/v1", "http://b:1/v1")]
    a, b = (stage_configs(files, triage={"judge": TriageConfig.model_fields["judge"].annotation(**j)})["triage"]
            for j in judges)
    assert a["key"] != b["key"] and "input judge" in what_changed(a, b)


def test_a_hub_id_is_keyed_by_the_snapshot_its_refs_main_names(files, hub_cache, tmp_path):
    """Issue 27.1: a model or adapter given as a hub id is digested as the cached snapshot its
    ``refs/main`` names (like a local folder), so moving ``refs/main`` reruns every stage that
    loads it; a hub id not in the cache stays its name."""
    from realign.runs.provenance import input_digest, model_digest
    from realign.testing.tiny import cache_snapshot, save_tiny, tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    snapshots = {c: cache_snapshot(save_tiny(tmp_path / c, tokenizer=tok, model=tiny_llama(tok, seed=s)), "org/tiny",
                                   c * 40, hub_cache) for c, s in (("a", 1), ("b", 2))}
    refs = hub_cache / "models--org--tiny" / "refs" / "main"
    refs.write_text("a" * 40)
    before = stage_configs({**files, "model": "org/tiny"})
    assert before["eval"]["inputs"]["model"] == input_digest(snapshots["a"])
    refs.write_text("b" * 40)
    after = stage_configs({**files, "model": "org/tiny"})
    for stage in ("score", "train", "eval"):
        assert what_changed(before[stage], after[stage]) == "changed: input model", stage
    assert before["triage"]["key"] == after["triage"]["key"]  # the rules judge loads no model

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    for commit, weights in (("c" * 40, b"old"), ("d" * 40, b"new")):
        (adapter / "adapter_model.safetensors").write_bytes(weights)
        cache_snapshot(adapter, "org/adapter", commit, hub_cache)
    moved = model_digest("org/adapter")
    (hub_cache / "models--org--adapter" / "refs" / "main").write_text("c" * 40)
    assert model_digest("org/adapter") != moved and moved.startswith("files:")
    assert model_digest("org/not-downloaded") == "name:org/not-downloaded"
