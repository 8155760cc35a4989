"""Stage 2 shared across processes: `realign score` under `accelerate launch` gives the
single-process result, written once; progress files of any process resume a rerun.

On CPU, `accelerate launch --cpu --num_processes 2` starts ONE process (accelerate's CPU
launcher spreads work only through mpirun and a hostfile); `--multi_gpu` starts the processes
with torchrun whatever the device, and with device cpu (here: auto with no visible GPU) they
join a gloo process group.
"""

import json
import os
import socket
import subprocess
import sys

import pytest
import yaml

from realign.score import scoring
from test_impact import run_scores, tiny_model, triaged  # noqa: F401 (fixtures)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_score_like_one_and_only_the_main_one_writes(tiny_model, triaged, tmp_path):
    single, _, _ = run_scores(tiny_model, triaged, tmp_path, "single")
    config = tmp_path / "score.yaml"  # as run_scores, with device auto: cpu here, as no GPU is visible
    config.write_text(yaml.safe_dump({"model": str(tiny_model), "data": str(triaged), "gold_size": 12,
                                      "params": {"lora_r": 4}}))
    out = tmp_path / "launched" / "weighted.jsonl"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(free_port())]
    proc = subprocess.run([*launch, "-m", "realign", "score", "--config", str(config), "--out", str(out), "-q"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]

    summary = json.loads((out.parent / "weighted.summary.json").read_text())
    assert summary["processes"] == {"count": 2, "records": [10, 8]}  # 3 and 2 batches of <= 8
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    launched = {r["id"]: r["meta"]["impact_score"] for r in rows if "impact" in r}
    assert sorted(launched) == sorted(single)
    assert launched == pytest.approx(single, rel=1e-6, abs=1e-12)
    # the CLI line comes from the main process only; no progress or temporary file is left
    assert proc.stdout.count("scored 18 conflict records") == 1, proc.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["weighted.jsonl", "weighted.summary.json"]


def test_a_rerun_resumes_from_every_process_file_and_removes_them(tiny_model, triaged, tmp_path, monkeypatch):
    full, _, _ = run_scores(tiny_model, triaged, tmp_path, "full", batch_size=4)
    original = scoring.score_batch  # every variant's batch scoring goes through it

    def dies_on_call(n):
        calls = {"n": 0}

        def scores(*a, **k):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return original(*a, **k)

        return scores

    monkeypatch.setattr(scoring, "score_batch", dies_on_call(3))  # 2 batches (8 records) saved
    with pytest.raises(KeyboardInterrupt):
        run_scores(tiny_model, triaged, tmp_path, "resumed", batch_size=4)
    own = tmp_path / ".resumed.jsonl.partial"
    with own.open("a") as fh:
        fh.write('{"id": "ex-0')  # a line torn by a kill
    monkeypatch.setattr(scoring, "score_batch", dies_on_call(2))  # 1 more batch, appended after the torn line
    with pytest.raises(KeyboardInterrupt):
        run_scores(tiny_model, triaged, tmp_path, "resumed", batch_size=4)
    # as if a 2-process run had written it, plus a stale file of another config
    own.rename(tmp_path / ".resumed.jsonl.rank1.partial")
    (tmp_path / ".resumed.jsonl.rank3.partial").write_text('{"config": "other"}\n{"id": "ex-000", "score": 9.0}\n')
    monkeypatch.setattr(scoring, "score_batch", original)
    resumed, _, summary = run_scores(tiny_model, triaged, tmp_path, "resumed", batch_size=4)
    assert summary["timing"]["resumed"] == 12 and summary["timing"]["scored_now"] == 6
    assert resumed == full  # the same batches: the same bits
    assert not list(tmp_path.glob(".resumed.jsonl*.partial"))
