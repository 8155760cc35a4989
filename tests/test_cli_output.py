"""What commands print: results on stdout, nothing else with -q, no third-party banners."""

import os
import re
import subprocess
import sys
from importlib import util

import pytest

from realign.resources import resource_path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1"}


@pytest.mark.skipif(util.find_spec("deepspeed") is None, reason="deepspeed is not installed")
def test_deepspeed_autodetect_notice_is_not_printed():
    """accelerate/transformers import DeepSpeed whenever it is installed; on a machine without
    a GPU it then prints "Setting accelerator to CPU ..." on stdout. Importing realign first
    (every command does) drops that notice and nothing else."""
    code = "import realign, deepspeed, logging; logging.getLogger('DeepSpeed').warning('kept')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    assert "unable to detect it" not in done.stdout + done.stderr
    assert "kept" in done.stdout  # DeepSpeed's own messages still show


def test_quiet_triage_prints_its_result_line_only(tmp_path):
    out = tmp_path / "triaged.jsonl"
    argv = [sys.executable, "-m", "realign", "triage", "--data", str(resource_path("examples/pairs.jsonl")),
            "--policy", "contextual-exceptions", "--out", str(out), "--cache", str(tmp_path / "c.sqlite"), "-q"]
    done = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.count("\n") == 1 and done.stdout.startswith("triaged 36 pairs")
    # no judge configured: the line says which judge decided, and that it is the default (issue 27 item 15)
    assert " by judge rules/v3 (the default: no judge configured) -> " in done.stdout
    named = subprocess.run([*argv, "--judge", "rules"], capture_output=True, text=True, env=ENV)
    assert named.returncode == 0, named.stderr
    assert " by judge rules/v3 -> " in named.stdout


def test_a_hosted_judge_is_named_with_its_endpoint_and_no_secret():
    from realign.cli.stages import _judge_named
    from realign.config import JudgeConfig

    config = JudgeConfig(backend="openai", model="gpt-4o", base_url="https://me:s3cret@llm.example:8443/v1?key=abc")
    named = _judge_named(config, "openai/gpt-4o/v3/endpoint-0123456789")
    assert named == "judge openai/gpt-4o/v3/endpoint-0123456789 at https://llm.example:8443/v1"


#: What the libraries underneath printed on every run (issue 27 item 18), none of it a result
LIBRARY_NOISE = ("is_gradient_checkpointing", "mtime may not be reliable", "Token indices sequence length",
                 "Generating train split", "Warning", "%|")


def test_quiet_run_prints_no_library_noise(tmp_path):
    """`realign run -q` on data read through `datasets` (parquet), with a record longer than the
    model takes (it is truncated), LoRA and rotated checkpoints: stderr holds the stages' own
    lines and nothing from transformers, peft or datasets."""
    import datasets

    from realign.data import read_pairs
    from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer

    tok = tiny_tokenizer()
    model = save_tiny(tmp_path / "tiny", tokenizer=tok, model=tiny_llama(tok, seed=2))
    rows = [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected}
            for p in read_pairs(resource_path("examples/pairs.jsonl")).pairs]
    rows[0]["chosen"] = " ".join(f"word{i} of a long answer." for i in range(3000))  # > the tokenizer's 2048 tokens
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "pairs.parquet"))
    config = tmp_path / "run.yaml"
    config.write_text(f"""
out: {tmp_path / "run"}
model: {model}
data: {tmp_path / "pairs.parquet"}
policy: contextual-exceptions
methods: [trace]
device: cpu
score: {{gold_size: 12, batch_size: 8, params: {{lora_r: 4}}}}
train: {{max_steps: 3, save_steps: 1, batch_size: 4, lora: {{r: 4}}, logging_steps: 1}}
eval: {{prompts: {resource_path("examples/pairs.jsonl")}, max_new_tokens: 4}}
report: false
""")
    env = {**ENV, "HF_DATASETS_CACHE": str(tmp_path / "datasets-cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "realign", "run", str(config), "-q"], capture_output=True, text=True,
                          env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "train" / "trace" / "checkpoints").is_dir()
    assert not [noise for noise in LIBRARY_NOISE if noise in done.stderr], done.stderr
    stage_line = re.compile(r"\[(triage|score|train:[\w-]+|eval:[\w-]+)\] (running|skipped|rerunning)")
    assert all(stage_line.match(line) for line in done.stderr.splitlines()), done.stderr  # the stages' own lines
    # the judge was left out: the triage row says the rules judge decided, as the default (item 15)
    assert "judge rules/v3 (the default: no judge configured)" in done.stdout.splitlines()[0]
