"""No output may overwrite an input or another output (issue 17, item 2): an output path that is
the same file as an input or another output (same real path, a symlink, a hard link), or an
existing output that is a symlink or not a regular file, is one ``error:`` line and exit 2
before any work; the inputs are byte-identical afterwards."""

import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from realign.score import run as score  # imported here: importing torch is not part of a test
from realign.train import run as train
from cli_run import realign, refused
from realign.evaluate import run as evaluate
from realign.errors import RealignError
from realign.runs.files import check_output_paths
from realign.resources import resource_path

EXAMPLES = resource_path("examples/pairs.jsonl")


@pytest.fixture
def data(tmp_path) -> Path:
    path = tmp_path / "same.jsonl"
    path.write_bytes(EXAMPLES.read_bytes())
    return path


def triage(tmp_path, data, *extra):
    return ["triage", "--data", data, "--judge", "rules", "--policy", "contextual-exceptions",
            "--cache", tmp_path / "c.sqlite", "-q", *extra]


def test_out_equal_to_data_is_refused_and_data_kept(tmp_path, data, capsys, monkeypatch):
    before = data.read_bytes()
    for _ in range(2):  # the issue ran it twice: the second run read the first's output
        refused(capsys, monkeypatch, triage(tmp_path, data, "--out", data), f"--out {data}", f"--data {data}")
    assert data.read_bytes() == before
    assert not (tmp_path / "same.summary.json").exists() and not (tmp_path / "c.sqlite").exists()


def test_out_spelled_differently_is_the_same_file(tmp_path, data, capsys, monkeypatch):
    other = tmp_path / "sub"
    other.mkdir()
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", other / ".." / data.name), "--data")
    assert data.read_bytes() == EXAMPLES.read_bytes()


def test_naive_out_equal_to_data(tmp_path, data, capsys, monkeypatch):
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", tmp_path / "t.jsonl", "--naive-out", data),
            "--naive-out", "--data")
    assert data.read_bytes() == EXAMPLES.read_bytes() and not (tmp_path / "t.jsonl").exists()


def test_gold_out_equal_to_out(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "t.jsonl"
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", out, "--gold-out", out), "--gold-out", "--out")
    assert not out.exists()


def test_gold_out_equal_to_the_summary(tmp_path, data, capsys, monkeypatch):
    out = tmp_path / "t.jsonl"
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", out, "--gold-out", tmp_path / "t.summary.json"),
            "--gold-out", "the summary of --out")
    assert not out.exists()


def test_symlinked_out_pointing_at_the_data(tmp_path, data, capsys, monkeypatch):
    link = tmp_path / "link.jsonl"
    link.symlink_to(data)
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", link), f"--out {link}", "--data")
    assert link.is_symlink() and data.read_bytes() == EXAMPLES.read_bytes()


def test_symlinked_out_pointing_elsewhere(tmp_path, data, capsys, monkeypatch):
    target = tmp_path / "elsewhere.jsonl"
    target.write_text("kept\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", link), "symbolic link", str(target))
    assert link.is_symlink() and target.read_text() == "kept\n"


def test_hard_link_to_the_data(tmp_path, data, capsys, monkeypatch):
    hard = tmp_path / "hard.jsonl"
    os.link(data, hard)
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", hard), "same file", "--data")


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_character_device_as_out(tmp_path, data, capsys, monkeypatch):
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", "/dev/null"), "--out /dev/null", "character device")
    assert Path("/dev/null").is_char_device()


def test_directory_as_out(tmp_path, data, capsys, monkeypatch):
    folder = tmp_path / "folder"
    folder.mkdir()
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", folder), f"--out {folder}", "is a directory")
    assert folder.is_dir() and not any(folder.iterdir())


def test_out_equal_to_the_cache(tmp_path, data, capsys, monkeypatch):
    refused(capsys, monkeypatch, triage(tmp_path, data, "--out", tmp_path / "c.sqlite"), "--out", "--cache")


def test_distinct_paths_still_run(tmp_path, data, capsys, monkeypatch):
    code, err = realign(capsys, monkeypatch, *triage(
        tmp_path, data, "--out", tmp_path / "t.jsonl", "--gold-out", tmp_path / "g.jsonl",
        "--naive-out", tmp_path / "n.jsonl"))
    assert code == 0, err
    assert (tmp_path / "t.summary.json").exists() and data.read_bytes() == EXAMPLES.read_bytes()


# ---- the other stages (the check is the first thing their run() does: no model is loaded)


def test_score_out_equal_to_data_or_gold_data(tmp_path, data):
    def config(**kw):
        return SimpleNamespace(**{"model": "m", "adapter": None, **kw})

    with pytest.raises(RealignError, match="--out .* is the same file as --data"):
        score.run(config(data=str(data), gold_data=None, out=data))
    gold = tmp_path / "gold.jsonl"
    gold.write_bytes(data.read_bytes())
    with pytest.raises(RealignError, match="--out .* is the same file as --gold-data"):
        score.run(config(data=str(data), gold_data=str(gold), out=gold))
    with pytest.raises(RealignError, match="the summary of --out .* is the same file as --gold-data"):
        score.run(config(data=str(data), gold_data=str(tmp_path / "w.summary.json"), out=tmp_path / "w.jsonl"))
    assert data.read_bytes() == EXAMPLES.read_bytes()


def test_train_refuses_data_the_run_writes(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    data = run / "train_config.yaml"
    data.write_text("{}")
    config = SimpleNamespace(data=str(data), model="sshleifer/tiny-gpt2", adapter=None, out=run)
    with pytest.raises(RealignError, match="the run's train_config.yaml .* is the same file as --data"):
        train.run(config)
    (run / "adapter").mkdir()
    config = SimpleNamespace(data=str(tmp_path / "d.jsonl"), model="m", adapter=str(run / "adapter"), out=run)
    with pytest.raises(RealignError, match="--adapter .* lies in --out"):
        train.run(config)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(RealignError, match="is not a directory"):
        train.run(SimpleNamespace(data=str(tmp_path / "d.jsonl"), model="m", adapter=None, out=afile))


def test_eval_out_equal_to_prompts_or_generations(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "hi"}\n')

    def config(**kw):
        base = dict(prompts=str(prompts), attacks=None, attack_templates=None, text=None, model="m", adapter=None,
                    reference=None, judge=SimpleNamespace(backend="rules", model=None),
                    policy=Path("p.yaml"), cache=tmp_path / "c.sqlite", out=tmp_path / "metrics.json")
        base.update(kw)
        ns = SimpleNamespace(**base)
        ns.cache_path = lambda: ns.cache
        return ns

    with pytest.raises(RealignError, match="--out .* is the same file as --prompts"):
        evaluate.run(config(out=prompts))
    with pytest.raises(RealignError, match="the generations beside --out .* is the same file as --prompts"):
        evaluate.run(config(prompts=str(tmp_path / "generations.jsonl")))
    assert prompts.read_text() == '{"prompt": "hi"}\n'


# ---- the function itself


def test_check_output_paths_accepts_new_and_regular_files(tmp_path):
    existing = tmp_path / "old.jsonl"
    existing.write_text("old\n")
    check_output_paths({"--data": EXAMPLES, "--gold-data": None},
                       {"--out": existing, "--new": tmp_path / "new" / "x.jsonl", "--none": None},
                       {"the run's adapter/": tmp_path / "adapter"})


def test_parent_that_is_a_file(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    with pytest.raises(RealignError, match=f"{blocker} is not a directory"):
        check_output_paths({}, {"--out": blocker / "t.jsonl"})
