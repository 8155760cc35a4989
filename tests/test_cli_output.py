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
