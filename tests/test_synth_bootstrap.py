"""The tiny-model bootstrap: a seconds-long micro run that measurably learns, the cache, and
the input format later stages must use."""

import json

import pytest

from realign.synth import World
from realign.synth.bootstrap import BootstrapConfig, bootstrap, cache_path, encode_example, load, sft_texts

MICRO = BootstrapConfig(  # ~15 s on 2 cores: enough to write recognisable refusals
    hidden=48, layers=2, heads=2, intermediate=96,
    # lr 6e-3: the responses' openings (world version 2) take a micro model more updates at 3e-3
    sft_prompts=100, sft_old_weight=5, benign_repeats=2, sft_steps=250, sft_batch=16, sft_lr=6e-3,
    n_pairs=60, dpo_steps=5, dpo_batch=8, eval_per_slice=1, max_new_tokens=24,
)


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    return root, bootstrap(MICRO, cache_dir=root, progress=False)


def test_micro_bootstrap_learns(micro):
    import torch

    from realign.synth.evaluate import generate, score
    from realign.synth.export import eval_prompts
    from realign.synth.bootstrap import world_tokenizer
    from realign.testing.tiny import tiny_llama

    _, result = micro
    m = result.metrics
    assert not result.cached
    assert m["sft_loss"]["last"] < 0.5 * m["sft_loss"]["first"]
    assert m["dpo"] is not None and m["dpo"]["dpo"] > 0
    # an untrained model of the same shape writes nothing recognisable
    world = World(0)
    tok = world_tokenizer(world, MICRO.vocab_size)
    untrained = tiny_llama(tok, hidden=MICRO.hidden, layers=MICRO.layers, heads=MICRO.heads, intermediate=MICRO.intermediate)
    rows = eval_prompts(world, 1)
    with torch.no_grad():
        base = score(rows, generate(untrained, tok, [r["prompt"] for r in rows], max_new_tokens=24), ["synth-old"])
    trained = m["policies"]["synth-old"]
    assert trained["agreement"] >= base["policies"]["synth-old"]["agreement"] + 0.3, (trained, base)
    assert m["degenerate_rate"] < base["degenerate_rate"]


def test_the_model_is_cached_and_reused(micro):
    root, result = micro
    assert result.path == cache_path(MICRO, root)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "bootstrap.json"):
        assert (result.path / name).is_file(), name
    meta = json.loads((result.path / "bootstrap.json").read_text())
    assert meta["config"] == MICRO.model_dump(mode="json") and meta["world"]["hash"] == World(0).hash
    again = bootstrap(MICRO, cache_dir=root, progress=False)
    assert again.cached and again.path == result.path and again.metrics == result.metrics
    # another world or config is another entry
    assert cache_path(MICRO.model_copy(update={"world_seed": 1}), root) != result.path
    assert cache_path(MICRO.model_copy(update={"sft_steps": 41}), root) != result.path


def test_the_cached_model_loads_and_uses_the_chat_format(micro):
    _, result = micro
    model, tok = load(result.path)
    assert model.config.vocab_size == len(tok)
    ids, n_prompt = encode_example(tok, "How do I build a keylogger?", "I cannot help with keyloggers.")
    text = tok.decode(ids)
    assert text.startswith("<s><|user|>\nHow do I build a keylogger?</s>\n<|assistant|>\n")
    assert tok.decode(ids[n_prompt:]).startswith("I cannot help with keyloggers.</s>")
    from realign.modeling.sequences import encode

    assert list(encode(tok, "How do I build a keylogger?", "I cannot help with keyloggers.", 256).ids) == ids


def test_sft_texts_cover_every_style_and_benign_questions():
    texts = sft_texts(World(0), 33, seed=0, benign_repeats=2)
    world = World(0)
    n_benign = len(world.benign_items("train"))
    assert len(texts) == 33 * 5 + 2 * n_benign
    assert texts == sft_texts(World(0), 33, seed=0, benign_repeats=2)


def test_default_cache_location_follows_the_realign_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("REALIGN_CACHE", str(tmp_path))
    assert cache_path(BootstrapConfig()).parent == tmp_path / "synth"


def test_cli_bootstrap_reuses_the_cache_and_reads_a_config(micro, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from realign.errors import RealignError
    from realign.synth.cli import synth_app

    root, result = micro
    config = tmp_path / "micro.yaml"
    config.write_text(yaml.safe_dump(MICRO.model_dump(mode="json")))
    out = CliRunner().invoke(synth_app, ["bootstrap", "--config", str(config), "--cache-dir", str(root), "--quiet"])
    assert out.exit_code == 0, out.output
    assert "cached" in out.output and str(result.path) in out.output and "synth-contextual" in out.output
    config.write_text(yaml.safe_dump({"hidden": 0}))
    bad = CliRunner().invoke(synth_app, ["bootstrap", "--config", str(config), "--cache-dir", str(root)])
    assert isinstance(bad.exception, RealignError) and "hidden" in str(bad.exception)
