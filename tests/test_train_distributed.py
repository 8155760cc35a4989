"""Stage 3 under `accelerate launch` with 2 processes (data parallel, gloo on CPU): both
processes train, only the main one writes the adapter and the summary, and the result equals
a 1-process run with the same global batch.

On CPU, `accelerate launch --cpu --num_processes 2` starts ONE process; `--multi_gpu` starts
the processes with torchrun whatever the device (see tests/test_impact_distributed.py).
"""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest
import torch
import yaml

from realign.train import run as train
from realign.config import TrainConfig
from realign.data import write_pairs
from realign.testing.tiny import save_tiny, tiny_llama, tiny_tokenizer
from test_train import triaged_records

STEPS = 3
GLOBAL_BATCH = 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(args: list[str], processes: int = 2, mode: tuple[str, ...] = ("--multi_gpu",),
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``accelerate launch`` with ``mode``'s flags (data parallel by default); output captured."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "", **(env or {})}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *mode, "--num_processes", str(processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(free_port()), *args]
    # its own process group, so a hung run's workers (torchrun's children) are ended with it
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        # generous: two imports of torch/transformers and a few steps take ~20 s idle, minutes under load
        stdout, stderr = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"launch timed out:\n{stdout[-2000:]}\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    tok = tiny_tokenizer()
    model_dir = save_tiny(root / "tiny", tokenizer=tok, model=tiny_llama(tok, hidden=64, layers=2, seed=1))
    data = root / "weighted.jsonl"
    write_pairs(data, triaged_records(4))  # hand-set impact weights: 4 INVERT, 4 PUNISH, 4 RETAIN terms
    return root, model_dir, data


def run_config(model_dir, data, out, batch_size):
    return dict(model=str(model_dir), data=str(data), out=str(out), method="trace", device="auto",
                max_steps=STEPS, batch_size=batch_size, logging_steps=1, save_steps=100, learning_rate=5e-3,
                warmup_ratio=0.0, lora={"r": 4, "dropout": 0.0}, seed=0)


@pytest.mark.slow
def test_two_processes_train_like_one_with_the_same_global_batch_and_only_the_main_one_writes(setup):
    from peft import PeftModel
    from safetensors.torch import load_file

    from realign.modeling.loading import load_causal_lm

    root, model_dir, data = setup
    out = root / "launched"
    cfg = root / "train.yaml"
    cfg.write_text(yaml.safe_dump(run_config(model_dir, data, out, GLOBAL_BATCH // 2)))  # device auto: cpu here
    proc = launch(["-m", "realign", "train", "--config", str(cfg), "-q"])
    assert proc.returncode == 0, proc.stderr[-4000:]

    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["processes"] == {"count": 2, "per_device_batch": 2, "global_batch": GLOBAL_BATCH}
    assert summary["steps"] == STEPS
    losses = [h["loss"] for h in summary["log_history"] if "loss" in h]
    assert len(losses) == STEPS and all(torch.isfinite(torch.tensor(losses)))
    # the components logged are averaged over both processes, so they still sum to the loss
    for h in summary["log_history"]:
        if "loss" in h:
            assert h["L_I"] + h["L_II"] + h["L_KL"] + h.get("L_R", 0.0) == pytest.approx(h["loss"], rel=1e-3, abs=1e-6)
    assert "find_unused_parameters=True" not in proc.stderr  # every LoRA weight is used: no extra pass
    # one writer: the final adapter, the summary and the reference cache, nothing torn
    assert sorted(p.name for p in out.iterdir()) == [
        ".config_key", "adapter", "checkpoints", "reference_logps.pt", "train_config.yaml", "train_summary.json"]
    assert not [p for p in out.rglob("*") if p.name.endswith((".tmp", ".partial", ".old"))]
    adapter = out / "adapter"
    assert sorted(p.name for p in adapter.glob("adapter_*")) == ["adapter_config.json", "adapter_model.safetensors"]

    # the saved adapter loads and changes the model
    base = load_causal_lm(str(model_dir), device="cpu")
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        after = PeftModel.from_pretrained(base, str(adapter))(input_ids=ids).logits
    assert torch.isfinite(after).all() and not torch.allclose(before, after)

    # data parallel = one process with the same global batch: process p takes per-device batch p of
    # each group of 2 (accelerate's batch-sampler sharding), i.e. the same 4 terms per step; the
    # gradients all-reduced by DDP are the mean of the per-process means = the 1-process mean.
    single = train.run(TrainConfig(**{**run_config(model_dir, data, root / "single", GLOBAL_BATCH), "device": "cpu"}),
                       progress=False)
    single_losses = [h["loss"] for h in single["log_history"] if "loss" in h]
    assert losses == pytest.approx(single_losses, rel=1e-5, abs=1e-6)
    a = load_file(adapter / "adapter_model.safetensors")
    b = load_file(root / "single" / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    # tolerance: same arithmetic up to padding width and reduction order (float32 sums),
    # after 3 Adam steps of lr 5e-3
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"2 processes vs 1: max |Δ| adapter weight {worst:.3g}, max |Δ| loss "
          f"{max(abs(x - y) for x, y in zip(losses, single_losses)):.3g}")
    assert worst < 1e-5, worst


LATE_RANK_SHIM = '''\
"""`realign` with the second process arriving late at the checkpoint clean-up: it waits until the
main process's trainer has made the run's checkpoints/ folder (or 20 s have passed)."""
import os, time
from pathlib import Path

from realign.train import run as train_run

clear = train_run.clear_unresumed


def late(out, resume_from, state):
    if os.environ.get("RANK") == "1":
        until = time.monotonic() + 20
        while not (Path(out) / "checkpoints").exists() and time.monotonic() < until:
            time.sleep(0.2)
    return clear(out, resume_from, state)


train_run.clear_unresumed = late

from realign.cli import main

main()
'''


@pytest.mark.slow
def test_a_late_process_does_not_wait_at_a_barrier_the_main_process_skipped(setup):
    """Whether to clear old checkpoints is decided once, and every process meets at the barrier
    after it: a process that looked at the run folder for itself after the main process's
    trainer had created checkpoints/ waited at a barrier the main one had passed (both hung until
    the process group's timeout; seen under load). Here the second process is made late on purpose."""
    root, model_dir, data = setup
    shim = root / "late_rank_shim.py"
    shim.write_text(LATE_RANK_SHIM)
    out = root / "late"
    cfg = root / "late.yaml"
    cfg.write_text(yaml.safe_dump(run_config(model_dir, data, out, GLOBAL_BATCH // 2)))
    proc = launch([str(shim), "train", "--config", str(cfg), "-q"])
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert json.loads((out / "train_summary.json").read_text())["steps"] == STEPS
