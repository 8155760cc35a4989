"""What commands print: results on stdout, nothing else with -q, no third-party banners."""

import os
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
    assert " by judge rules/v2 (the default: no judge configured) -> " in done.stdout
    named = subprocess.run([*argv, "--judge", "rules"], capture_output=True, text=True, env=ENV)
    assert named.returncode == 0, named.stderr
    assert " by judge rules/v2 -> " in named.stdout


def test_a_hosted_judge_is_named_with_its_endpoint_and_no_secret():
    from realign.cli import _judge_named
    from realign.config import JudgeConfig

    config = JudgeConfig(backend="openai", model="gpt-4o", base_url="https://me:s3cret@llm.example:8443/v1?key=abc")
    named = _judge_named(config, "openai/gpt-4o/v3/endpoint-0123456789")
    assert named == "judge openai/gpt-4o/v3/endpoint-0123456789 at https://llm.example:8443/v1"
