"""Fixtures of the reliability suite (issue 9): one pre-imported forking `realign` runner and
one tiny saved model for the whole session."""

from __future__ import annotations

import os

import pytest

import yaml

from rel_helpers import (RESULTS, SESSION_FIGURES, TRAIN_YAML, WRITE_RESULTS_ENV, Zygote, triaged_rows, write_jsonl,
                         write_results)


@pytest.fixture(scope="session")
def base_env(tmp_path_factory) -> dict[str, str]:
    """Environment of every `realign` process the suite starts: offline, no user cache, no key."""
    home = tmp_path_factory.mktemp("env")
    env = dict(os.environ)
    for key in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(key, None)
    env.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        REALIGN_CACHE=str(home / "realign-cache"),
        HF_HOME=str(home / "hf"),
        HF_MODULES_CACHE=str(home / "hf-modules"),
        PYTHONHASHSEED="0",
        # One intra-op thread: on a small shared machine two OpenMP threads fighting other
        # processes made tiny-model steps 7-10x slower (and timing-dependent).
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
    )
    return env


@pytest.fixture(scope="session")
def zygote(base_env, tmp_path_factory):
    z = Zygote(base_env, tmp_path_factory.mktemp("zygote-logs"))
    yield z
    z.close()


@pytest.fixture(scope="session")
def tiny_model(zygote, tmp_path_factory):
    """A tiny Llama-style model and tokenizer saved with safetensors (built offline)."""
    path = tmp_path_factory.mktemp("models") / "tiny"
    res = zygote.run(code=f"from realign.testing.tiny import save_tiny\nsave_tiny({str(path)!r}, hidden=64, layers=2, seed=1)\n")
    assert res.code == 0, res.err
    return path


@pytest.fixture(scope="session")
def clean_training(zygote, tiny_model, tmp_path_factory):
    """One uninterrupted `realign train` run (CPU, seed 0), shared by the kill and determinism tests."""
    root = tmp_path_factory.mktemp("train-clean")
    data = write_jsonl(root / "weighted.jsonl", triaged_rows(30))
    (root / "train.yaml").write_text(yaml.safe_dump(TRAIN_YAML))
    res = zygote.run(["train", "--config", root / "train.yaml", "--model", tiny_model, "--data", data,
                      "--out", root / "run", "-q"])
    assert res.code == 0, res.err[-3000:]
    return root, res


def pytest_terminal_summary(terminalreporter):
    """Print the headline figures of this session; with ``$REALIGN_WRITE_RESULTS=1`` also write
    them to benchmarks/results/reliability.json (a plain run leaves the work tree clean)."""
    if not SESSION_FIGURES:
        return
    tr = terminalreporter
    tr.section("reliability figures")
    f = SESSION_FIGURES
    if "judge_faults" in f:
        j = f["judge_faults"]
        tr.write_line(f"judge faults: {j['pairs']} pairs, {j['calls_with_faults']} calls vs minimum {j['minimum_calls']} "
                      f"({j['calls_per_judgement']}x), injected {j['injected']}, verdicts identical to clean run: "
                      f"{j['verdicts_identical_to_clean']}")
    if "kills" in f:
        tr.write_line("kill points: " + ", ".join(f"{k} {v['kill_points']} ({v['runs']} runs)" for k, v in f["kills"].items()))
    if "bad_inputs" in f:
        tr.write_line(f"bad-input cases: {f['bad_inputs']['cases']} {f['bad_inputs']['by_stage']}")
    for name in ("security", "determinism"):
        if name in f:
            tr.write_line(f"{name}: " + ", ".join(sorted(f[name])))
    if write_results():
        tr.write_line(f"written to {RESULTS}")
    else:
        tr.write_line(f"not written ({WRITE_RESULTS_ENV}=1 refreshes {RESULTS.name})")
