"""One output-path guard for every command that writes, and one lock per output folder (issue
27, items 5, 6 and 8-11): an output never is an input (however spelled: ``./``, a trailing
slash, a symlink, a hard link), never replaces a non-regular file, never lies in an input model
folder nor contains one; a second process writing into a locked folder stops with one line
naming the holder, and goes ahead once the holder is gone. Refusals are one ``error:`` line and
exit 2 before any work, the inputs byte-identical afterwards."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cli_run import realign, refused
from realign.errors import RealignError
from realign.runs.files import LOCK_NAME, _HOST, FolderBusy, check_output_paths, folder_lock
from realign.resources import resource_path
from realign.testing.tiny import save_tiny

EXAMPLES = resource_path("examples/pairs.jsonl")


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def model_and_adapter(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny saved model and a LoRA adapter of it (B initialised to nonzero, so merging changes weights)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from realign.modeling.loading import load_causal_lm

    root = tmp_path_factory.mktemp("guard-models")
    model = save_tiny(root / "base", hidden=32, layers=1, seed=3)
    peft = get_peft_model(load_causal_lm(str(model), device="cpu", dtype="float32"), LoraConfig(r=2, target_modules=["q_proj"]))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.fill_(0.1)
    peft.save_pretrained(root / "adapter")
    return model, root / "adapter"


# ------------------------------------------------------------------ item 5 and 8: realign merge


def test_merge_out_an_existing_file_is_refused(model_and_adapter, tmp_path, capsys, monkeypatch):
    model, adapter = model_and_adapter
    existing = tmp_path / "merged"
    existing.write_text("mine\n")
    refused(capsys, monkeypatch, ["merge", "--model", model, "--adapter", adapter, "--out", existing],
            f"--out {existing}", "is not a directory")
    assert existing.read_text() == "mine\n"


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "symlink", "inside", "containing", "adapter"])
def test_merge_never_writes_into_or_over_its_inputs(spelling, model_and_adapter, tmp_path, capsys, monkeypatch):
    model, adapter = model_and_adapter
    before = snapshot(model.parent)
    link = tmp_path / "link"
    link.symlink_to(model, target_is_directory=True)
    monkeypatch.chdir(model.parent)
    out = {"same": model, "dot-slash": f"./{model.name}/", "symlink": link, "inside": model / "merged",
           "containing": model.parent, "adapter": adapter}[spelling]
    err = refused(capsys, monkeypatch, ["merge", "--model", model, "--adapter", adapter, "--out", out], f"--out {Path(out)}")
    assert "writes into" in err or "lies in --model" in err, err
    assert snapshot(model.parent) == before and not (model / "merged").exists()


def test_merge_into_a_new_folder_writes_the_merged_model(model_and_adapter, tmp_path, capsys, monkeypatch):
    model, adapter = model_and_adapter
    code, err = realign(capsys, monkeypatch, "merge", "--model", model, "--adapter", adapter, "--out", tmp_path / "merged")
    assert code == 0, err
    merged = tmp_path / "merged"
    assert (merged / "config.json").is_file() and list(merged.glob("*.safetensors"))
    assert not (merged / LOCK_NAME).exists()
    assert (merged / "model.safetensors").read_bytes() != (model / "model.safetensors").read_bytes()


# ------------------------------------------------------------------ item 9: realign winrate


@pytest.fixture
def generations(tmp_path) -> tuple[Path, Path]:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps({"id": "1", "prompt": "Hi?", "response": "Hello."}) + "\n")
    b.write_text(json.dumps({"id": "1", "prompt": "Hi?", "response": "Go away."}) + "\n")
    return a, b


def winrate(a, b, out):
    return ["winrate", "--a", a, "--b", b, "--policy", "contextual-exceptions", "--out", out, "-q"]


def test_winrate_out_equal_to_an_input_is_refused(generations, tmp_path, capsys, monkeypatch):
    a, b = generations
    before = a.read_bytes(), b.read_bytes()
    refused(capsys, monkeypatch, winrate(a, b, a), f"--out {a}", "same file as --a")
    os.link(b, tmp_path / "hard.json")
    refused(capsys, monkeypatch, winrate(a, b, tmp_path / "hard.json"), "same file as --b")
    log = tmp_path / "w.items.jsonl"  # the per-item judgements of --out w.json go there
    log.write_bytes(b.read_bytes())
    refused(capsys, monkeypatch, winrate(a, log, tmp_path / "w.json"), f"the judgements beside --out {log}",
            "same file as --b")
    assert (a.read_bytes(), b.read_bytes(), log.read_bytes()) == (*before, before[1])


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_winrate_out_a_character_device_is_refused(generations, capsys, monkeypatch):
    refused(capsys, monkeypatch, winrate(*generations, "/dev/null"), "--out /dev/null", "character device")
    assert Path("/dev/null").is_char_device()


# ------------------------------------------------------------------ item 10: realign demo


def test_demo_refuses_a_folder_it_did_not_make(tmp_path, capsys, monkeypatch):
    project = tmp_path / "proj"
    (project / "data").mkdir(parents=True)
    (project / "data" / "pairs.jsonl").write_text('{"mine": true}\n')
    refused(capsys, monkeypatch, ["demo", "--out", project, "-q"], f"--out {project}", "not made by `realign demo`")
    assert snapshot(project) == {"data/pairs.jsonl": b'{"mine": true}\n'}


def test_demo_claims_a_new_or_empty_folder_and_writes_again_into_its_own(tmp_path):
    from realign.synth.demo import DEMO_MARK, _claim

    folder = tmp_path / "demo"
    folder.mkdir()
    _claim(folder)
    assert (folder / DEMO_MARK).is_file()
    (folder / "data").mkdir()
    _claim(folder)  # the demo's own folder, written before: accepted


# ------------------------------------------------------------------ item 11 and the other writers


@pytest.mark.parametrize("spelling", ["same", "dot-slash", "hard-link"])
def test_synth_noise_never_rewrites_its_input(spelling, tmp_path, capsys, monkeypatch):
    data = tmp_path / "pairs.jsonl"
    data.write_bytes(EXAMPLES.read_bytes())
    monkeypatch.chdir(tmp_path)
    if spelling == "hard-link":
        os.link(data, tmp_path / "other.jsonl")
    out = {"same": data, "dot-slash": "./pairs.jsonl", "hard-link": tmp_path / "other.jsonl"}[spelling]
    refused(capsys, monkeypatch, ["synth", "noise", "--in", data, "--out", out, "--fraction", "0.5", "--mode", "swap"],
            "same file as --in")
    assert data.read_bytes() == EXAMPLES.read_bytes()


def test_data_pku_out_equal_to_its_source(tmp_path, capsys, monkeypatch):
    source = tmp_path / "pku.jsonl"
    source.write_text("{}\n")
    refused(capsys, monkeypatch, ["data", "pku", "--source", source, "--out", source], "same file as --source")
    assert source.read_text() == "{}\n"


def test_report_never_replaces_a_result_it_reads(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    metrics = run / "eval" / "metrics.json"
    metrics.write_text(json.dumps({"label": "base", "tpa": {}, "utility": {}}))
    before = metrics.read_bytes()
    os.link(metrics, tmp_path / "report.html")
    refused(capsys, monkeypatch, ["report", run, "--out", tmp_path / "report.html"], "--out", "same file as input 1 of 1")
    assert metrics.read_bytes() == before


def test_synth_export_never_writes_over_a_shift_policy_it_reads(tmp_path, capsys, monkeypatch):
    from realign.synth.policies import policy_path

    out = tmp_path / "world"
    (out / "policies").mkdir(parents=True)
    mine = out / "policies" / "mine.yaml"
    mine.write_text(policy_path("synth-contextual").read_text().replace("name: synth-contextual", "name: mine"))
    refused(capsys, monkeypatch, ["synth", "export", "--out", out, "--shift", mine], f"--shift #1 {mine} lies in --out {out}")
    assert sorted(p.name for p in out.rglob("*")) == ["mine.yaml", "policies"]


def test_synth_bootstrap_never_replaces_a_model_folder_holding_its_config(tmp_path, capsys, monkeypatch):
    from realign.synth.bootstrap import BootstrapConfig, cache_path

    folder = cache_path(BootstrapConfig(), tmp_path)
    folder.mkdir(parents=True)
    config = folder / "bootstrap.yaml"
    config.write_text("seed: 0\n")
    refused(capsys, monkeypatch, ["synth", "bootstrap", "--config", config, "--cache-dir", tmp_path, "--force", "-q"],
            f"--config {config} lies in the model folder")
    assert config.read_text() == "seed: 0\n"


def test_models_prepare_refuses_a_file_where_its_folder_goes(tmp_path, capsys, monkeypatch):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "smollm2").write_text("mine\n")
    refused(capsys, monkeypatch, ["models", "prepare", "smollm2", "--cache-dir", tmp_path], "is not a directory")
    assert (tmp_path / "models" / "smollm2").read_text() == "mine\n"


# ------------------------------------------------------------------ the model folder given to train/score/eval


@pytest.mark.parametrize("where", ["same", "inside", "containing"])
def test_train_out_never_overlaps_the_model_folder(where, model_and_adapter, tmp_path, capsys, monkeypatch):
    model, _ = model_and_adapter
    data = tmp_path / "d.jsonl"
    data.write_bytes(EXAMPLES.read_bytes())
    before = snapshot(model.parent)
    out = {"same": model, "inside": model / "run", "containing": model.parent}[where]
    refused(capsys, monkeypatch, ["train", "--model", f"{model}/", "--data", data, "--out", out, "--device", "cpu", "-q"],
            "--model", str(out))
    assert snapshot(model.parent) == before


def test_train_out_never_holds_its_data(tmp_path, capsys, monkeypatch):
    data = tmp_path / "run" / "d.jsonl"
    data.parent.mkdir()
    data.write_bytes(EXAMPLES.read_bytes())
    refused(capsys, monkeypatch, ["train", "--model", "m", "--data", data, "--out", tmp_path / "run", "-q"],
            f"--data {data} lies in --out")


def test_score_and_eval_never_write_into_the_model_folder(model_and_adapter, tmp_path, capsys, monkeypatch):
    model, adapter = model_and_adapter
    before = snapshot(model.parent)
    refused(capsys, monkeypatch, ["score", "--model", model, "--data", EXAMPLES, "--out", model / "w.jsonl", "-q"],
            f"--out {model / 'w.jsonl'} lies in --model")
    refused(capsys, monkeypatch, ["eval", "--model", model, "--adapter", adapter, "--policy", "contextual-exceptions",
                                  "--prompts", EXAMPLES, "--out", adapter / "metrics.json", "-q"], "lies in --adapter")
    assert snapshot(model.parent) == before


def test_run_refuses_an_eval_prompts_file_a_stage_writes_before_the_first_stage(model_and_adapter, tmp_path):
    from realign.runs.pipeline import load

    model, _ = model_and_adapter
    run = tmp_path / "run"
    prompts = run / "eval" / "base" / "generations.jsonl"
    prompts.parent.mkdir(parents=True)
    prompts.write_bytes(EXAMPLES.read_bytes())
    config = tmp_path / "run.yaml"
    config.write_text(f"out: {run}\nmodel: {model}\ndata: {EXAMPLES}\npolicy: contextual-exceptions\n"
                      f"judge: {{backend: rules}}\nmethods: [naive-oracle-dpo]\neval: {{prompts: {prompts}}}\n")
    with pytest.raises(RealignError, match="problem.* before the first stage: the generations beside --out .* is the "
                                           "same file as --prompts"):
        load(config).execute(progress=False)
    assert not (run / "triage").exists()


# ------------------------------------------------------------------ the function itself


def test_an_output_in_an_input_folder_and_a_folder_holding_an_input(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    with pytest.raises(RealignError, match="lies in --model"):
        check_output_paths({"--model": f"{folder}/"}, {"--out": folder / "sub" / "x.json"})
    with pytest.raises(RealignError, match="--model .* lies in --out"):
        check_output_paths({"--model": folder}, {}, {"--out": tmp_path})
    # a hub id is no file here: a folder of outputs may hold a path of that spelling
    check_output_paths({"--model": "org/name"}, {"--out": tmp_path / "x.json"}, {"--out folder": Path(".")})


# ------------------------------------------------------------------ item 6: one lock per output folder


def triage_argv(tmp_path: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", "from realign.cli import main; main()", "triage", "--data", str(EXAMPLES),
            "--policy", "contextual-exceptions", "--judge", "rules", "--cache", str(tmp_path / "c.sqlite"),
            "--out", str(out), "-q"]


def cli(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=300)


def test_a_second_process_stops_naming_the_holder_then_proceeds_once_it_is_gone(tmp_path):
    out = tmp_path / "triage" / "triaged.jsonl"
    with folder_lock(out.parent):
        busy = cli(triage_argv(tmp_path, out))
        assert busy.returncode == 2, busy.stderr
        lines = busy.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in busy.stderr
        for part in (str(out.parent), "in use", f"pid {os.getpid()}", f"on {_HOST}", "pytest", "since "):
            assert part in lines[0], lines[0]
        assert not out.exists()
    done = cli(triage_argv(tmp_path, out))
    assert done.returncode == 0, done.stderr
    assert out.exists() and not (out.parent / LOCK_NAME).exists()


def test_run_stops_while_its_folder_is_held(model_and_adapter, tmp_path):
    model, _ = model_and_adapter
    run = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(f"out: {run}\nmodel: {model}\ndata: {EXAMPLES}\npolicy: contextual-exceptions\n"
                      f"judge: {{backend: rules}}\neval: {{prompts: {EXAMPLES}}}\n")
    with folder_lock(run):
        busy = cli([sys.executable, "-c", "from realign.cli import main; main()", "run", str(config), "-q"])
    assert busy.returncode == 2 and f"{run} is in use" in busy.stderr and f"pid {os.getpid()}" in busy.stderr, busy.stderr
    assert not run.exists()  # nothing written; the folder made for the lock goes with it


def test_a_killed_holder_leaves_the_folder_free(tmp_path):
    code = (f"from realign.runs.files import folder_lock\nwith folder_lock({str(tmp_path)!r}):\n"
            "    print('held', flush=True)\n    import time; time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(FolderBusy, match=f"pid {proc.pid} on {_HOST}"):
            with folder_lock(tmp_path):
                pass
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    with folder_lock(tmp_path):  # the kernel freed the lock with its holder
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_lock_held_in_the_name_of_a_dead_process_is_taken_over(tmp_path):
    """A lock file still locked (a forked child kept it open) whose recorded holder of this
    host is gone: the next process takes the folder over."""
    import fcntl

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": dead.pid, "host": _HOST, "command": "realign run", "since": "then"}).encode())
        out = tmp_path / "triaged.jsonl"
        taken = cli(triage_argv(tmp_path, out))
        assert taken.returncode == 0, taken.stderr
        assert out.exists()
    finally:
        os.close(fd)


def test_nested_holds_and_helper_processes_of_a_launch(tmp_path, monkeypatch):
    with folder_lock(tmp_path):
        with folder_lock(f"{tmp_path}/./"):  # the same folder, spelled otherwise: this process holds it
            pass
        assert (tmp_path / LOCK_NAME).exists()
    monkeypatch.setenv("RANK", "1")  # a helper process of `accelerate launch`: its main process holds the lock
    with folder_lock(tmp_path / "helper"):
        assert not (tmp_path / "helper").exists()
